"""The resource as its users meet it, on this machine: `scripts/demo` (`python -m local.demo`).

Deploys template.yaml into the local CloudFormation engine (ministack, local/cfn_engine.py) as
`sam deploy` would, then takes an application stack that uses the resource as README shows it
through create, an in-place update, an update the function refuses (and its rollback), a
replacement (and the cleanup Delete of the old profile) and deletion, and deletes the function's
stack. After each step it prints what the step changes, the stack events, the function's answers,
the Outputs and IAM (moto). Exits non-zero unless every step ends as expected and IAM is empty at
the end. `scripts/demo --events` runs the older event-by-event demo (local/demo_events.py).
"""

from __future__ import annotations

import sys
import time

from . import show
from .ministack import Ministack
from .moto import MotoServer
from .runtime_api import resolve_binary
from .stack import FUNCTION_STACK, Stacks, deploy_function_stack, profile_outputs, profile_resource

APP_STACK = "my-app"
ALLOWED_POLICY_ARNS = ("arn:aws:iam::aws:policy/AWSElasticBeanstalk*,"
                       "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")


def app_template(**properties) -> dict:
    return {"AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {"Profile": profile_resource(**properties)},
            "Outputs": profile_outputs()}


README_PROFILE = {"Tiers": ["WebTier", "WorkerTier"],
                  "ManagedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
                  "Tags": [{"Key": "team", "Value": "web"}]}


def steps():
    """(title, what it changes, operation on Stacks, expected stack status)."""
    in_place = {**README_PROFILE, "Tiers": ["WebTier", "WorkerTier", "MulticontainerDocker"]}
    refused = {**in_place, "ManagedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}
    renamed = {**in_place, "InstanceProfileName": "my-app-web"}
    return [
        (f"Create stack {APP_STACK}",
         "a Custom::EbInstanceProfile as README shows it: ServiceToken "
         f"!ImportValue {FUNCTION_STACK}-ServiceToken, Tiers WebTier and WorkerTier, "
         "AmazonS3ReadOnlyAccess, tag team=web; Outputs from !Ref and !GetAtt",
         lambda s: s.create(APP_STACK, app_template(**README_PROFILE)), "CREATE_COMPLETE"),
        ("Update in place",
         "Tiers gains MulticontainerDocker: the same profile and role, one more policy",
         lambda s: s.update(APP_STACK, app_template(**in_place)), "UPDATE_COMPLETE"),
        ("Update the function refuses",
         "ManagedPolicyArns asks for AdministratorAccess, outside AllowedPolicyArns: the "
         "function answers FAILED with its Reason, CloudFormation sends the previous "
         "properties back (the swapped Update), nothing changes in IAM",
         lambda s: s.update(APP_STACK, app_template(**refused)), "UPDATE_ROLLBACK_COMPLETE"),
        ("Update with replacement",
         "InstanceProfileName my-app-web: a new profile and role are made, then "
         "CloudFormation's cleanup Delete removes the old ones",
         lambda s: s.update(APP_STACK, app_template(**renamed)), "UPDATE_COMPLETE"),
        (f"Delete stack {APP_STACK}",
         "the Delete removes the profile and its role",
         lambda s: s.delete(APP_STACK), "DELETE_COMPLETE"),
        (f"Delete stack {FUNCTION_STACK}",
         "the function, its execution role (in the engine's IAM, not moto's) and its log group",
         lambda s: s.delete(FUNCTION_STACK), "DELETE_COMPLETE"),
    ]


def heading(number: int, title: str, changes: str) -> None:
    print(f"\n=== {number}. {title}")
    print("\n".join(show.item("changes:", changes, indent=0)))


def main() -> int:
    binary = resolve_binary()
    failures = []
    started = time.monotonic()
    with MotoServer() as moto, Ministack({"AWS_ENDPOINT_URL_IAM": moto.url}) as engine:
        print(f"moto (IAM) at {moto.url}; CloudFormation engine ministack at {engine.url}")
        print(f"binary {binary}; logs in {engine.log_path.parent}")
        print("Shortened below: stack ARNs to stack/<name>/<id prefix>, arn:aws:iam::aws:policy/ to "
              "aws/,\nthe ownership tags eb-instance-profile:* to 'owner <stack>/<logical id>'.")
        stacks = Stacks(engine)
        heading(1, f"Deploy stack {FUNCTION_STACK} from template.yaml",
                "the SAM template, translated offline, with the function's zip in the engine's "
                f"S3; AllowedPolicyArns {ALLOWED_POLICY_ARNS}; exports the ServiceToken")
        step = deploy_function_stack(stacks, binary, {"AllowedPolicyArns": ALLOWED_POLICY_ARNS})
        report(step, moto, "CREATE_COMPLETE", failures)
        if not failures:
            for number, (title, changes, operation, expected) in enumerate(steps(), 2):
                heading(number, title, changes)
                report(operation(stacks), moto, expected, failures)
        snapshot = moto.iam_snapshot()
        if snapshot["roles"] or snapshot["instance_profiles"]:
            failures.append("IAM is not empty at the end")
        if failures:
            print(f"\nengine log: {engine.log_path}", file=sys.stderr)
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"\nevery step ended as expected, IAM is empty ({time.monotonic() - started:.0f} s)")
    return 0


def report(step, moto, expected: str, failures: list[str]) -> None:
    print("\n".join(show.step_lines(step)))
    print("\n".join(show.iam_lines(moto.iam_snapshot())))
    refused = [r for r in step.journal if r["kind"] == "response" and r["verdict"] != "valid"]
    if step.status != expected:
        failures.append(f"{step.operation} {step.stack_name}: {step.status}, expected {expected}")
    if refused:
        failures.append(f"{step.operation} {step.stack_name}: responses CloudFormation would refuse")


if __name__ == "__main__":
    sys.exit(main())
