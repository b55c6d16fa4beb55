"""The resource lifecycle event by event against a local moto: `scripts/demo --events`.

Sends the requests in events/ in the order CloudFormation would (create, in-place
update, replacing update, cleanup Delete of the replaced profile, final Delete) to the
real function binary over the local Lambda Runtime API (as `cargo lambda invoke` would), and
shows each answer and the IAM state after it. Exits non-zero unless every request got a SUCCESS
response.
"""

from __future__ import annotations

import json
import sys

from .events import load_event_file
from .moto import MotoServer
from .runtime_api import FunctionProcess, RuntimeApi

LIFECYCLE = ["create", "update", "update-replace", "delete-old", "delete"]
ALLOWED_POLICY_ARNS = ("arn:*:iam::aws:policy/AWSElasticBeanstalk*,"
                       "arn:*:iam::aws:policy/AmazonS3ReadOnlyAccess")
BUCKET = "cfn-responses"


def describe_iam(snapshot: dict) -> str:
    lines = []
    for name, role in sorted(snapshot["roles"].items()):
        tags = ", ".join(f"{k}={v}" for k, v in sorted(role["tags"].items())) or "-"
        lines.append(f"  role {role['path']}{name}  max-session={role['max_session_duration']}s  tags: {tags}")
        for arn in role["managed_policies"]:
            lines.append(f"    policy {arn}")
        for policy in role["inline_policies"]:
            lines.append(f"    inline {policy}")
    for name, profile in sorted(snapshot["instance_profiles"].items()):
        tags = ", ".join(f"{k}={v}" for k, v in sorted(profile["tags"].items())) or "-"
        roles = ", ".join(profile["roles"]) or "(no role)"
        lines.append(f"  instance profile {profile['path']}{name} -> {roles}  tags: {tags}")
    return "\n".join(lines) or "  (no roles, no instance profiles)"


def main() -> int:
    failures = []
    with MotoServer() as moto, RuntimeApi() as api, \
            FunctionProcess(api, moto.url, {"ALLOWED_POLICY_ARNS": ALLOWED_POLICY_ARNS}) as function:
        print(f"moto at {moto.url}, runtime API at {api.address}, function pid {function.pid}\n")
        for step, name in enumerate(LIFECYCLE, 1):
            key = f"{step:02d}-{name}"
            event = load_event_file(name, moto.response_url(BUCKET, key))
            target = event.get("PhysicalResourceId", event["ResourceProperties"].get("InstanceProfileName"))
            print(f"=== {step}. {name}: {event['RequestType']} {target}")
            result = api.invoke(event, timeout_s=60)
            print(f"invocation: {result.kind} in {result.elapsed_s:.2f}s"
                  + (f" ({result.error_type})" if result.error_type else ""))
            if result.body:
                print(f"  returned: {result.body.decode(errors='replace')[:500]}")
            response = moto.read_response(BUCKET, key)
            if response is None:
                print("response: none was PUT to the ResponseURL")
                failures.append(f"{name}: no response")
            else:
                print("response:")
                print(json.dumps(response, indent=2))
                if response.get("Status") != "SUCCESS":
                    failures.append(f"{name}: {response.get('Status')} {response.get('Reason', '')}")
            print("IAM:")
            print(describe_iam(moto.iam_snapshot()))
            print()
        if failures:
            print("function log:\n" + function.logs(), file=sys.stderr)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("all requests answered SUCCESS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
