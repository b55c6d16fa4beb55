"""Stacks in the local CloudFormation engine: the function's stack deployed from template.yaml as
`sam deploy` would, the organization template's stack in an account as a StackSet would create it,
and application stacks driven one operation at a time.

    stacks = Stacks(engine)
    deploy_function_stack(stacks, binary)                 # eb-instance-profile, exports ServiceToken
    step = stacks.create("app", app_template(...))        # waits for the operation to end
    step.status, step.events, step.outputs, step.journal  # what that operation did

    in_account = Stacks(engine, account="111111111111")   # that account's stacks
    deploy_organization_stack(in_account, code, "StackSet-org-1")   # deploy/organization.yaml

Each operation waits until the stack leaves *_IN_PROGRESS and returns a Step with only what that
operation added: its stack events in order, the custom-resource invocations and responses the
harness saw (local/cfn_engine.py), and the Outputs after it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import sam
from .ministack import REGION, Ministack

FUNCTION_STACK = "eb-instance-profile"
ORGANIZATION = sam.REPO_ROOT / "deploy" / "organization.yaml"
ARTIFACT_BUCKET = "eb-instance-profile-artifacts"
ARTIFACT_KEY = "eb-instance-profile/bootstrap.zip"
# What template.yaml needs to be created (it makes an IAM role with a name of CloudFormation's).
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


@dataclass
class Step:
    """One stack operation and what it changed."""

    operation: str
    stack_name: str
    stack_id: str
    status: str
    status_reason: str
    events: list[dict] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    journal: list[dict] = field(default_factory=list)

    def resource_events(self, logical_id: str) -> list[tuple[str, str]]:
        """(ResourceStatus, ResourceStatusReason) of one resource's events, in order."""
        return [(e["ResourceStatus"], e.get("ResourceStatusReason") or "")
                for e in self.events if e["LogicalResourceId"] == logical_id]

    def requests(self, logical_id: str | None = None) -> list[dict]:
        """The custom-resource requests the function was invoked with (retries included), in
        order, with 'Attempt' added."""
        return [{**e["request"], "Attempt": e["attempt"]} for e in self.journal
                if e["kind"] == "invoke"
                and (logical_id is None or e["request"]["LogicalResourceId"] == logical_id)]

    def responses(self, logical_id: str | None = None) -> list[dict]:
        """The journal's response entries (verdict, problems, body, request), in order."""
        return [e for e in self.journal if e["kind"] == "response"
                and (logical_id is None or e.get("request", {}).get("LogicalResourceId") == logical_id)]


class Stacks:
    """CloudFormation operations on one engine, each waited for."""

    def __init__(self, engine: Ministack, *, timeout_s: float = 180.0, account: str | None = None,
                 region: str | None = None):
        """Stacks of one account and region of the engine (Ministack.client): by default its
        own account, in us-east-1."""
        self.engine = engine
        self.account = account
        self.region = region or REGION
        self.cfn = engine.client("cloudformation", account=account, region=self.region)
        self.timeout_s = timeout_s
        self._ids: dict[str, str] = {}
        self._seen_events: dict[str, set[str]] = {}
        self._journal_seen = 0

    def create(self, name: str, template: dict, parameters: dict | None = None) -> Step:
        self._take_journal()
        answer = self.cfn.create_stack(StackName=name, TemplateBody=json.dumps(template),
                                       Parameters=_parameters(parameters),
                                       Capabilities=CAPABILITIES)
        self._ids[name] = answer["StackId"]
        self._seen_events[answer["StackId"]] = set()
        return self._finish("create", name)

    def update(self, name: str, template: dict, parameters: dict | None = None) -> Step:
        self._take_journal()
        self.cfn.update_stack(StackName=self._ids[name], TemplateBody=json.dumps(template),
                              Parameters=_parameters(parameters), Capabilities=CAPABILITIES)
        return self._finish("update", name)

    def delete(self, name: str) -> Step:
        self._take_journal()
        self.cfn.delete_stack(StackName=self._ids[name])
        return self._finish("delete", name)

    def stack_id(self, name: str) -> str:
        return self._ids[name]

    def _finish(self, operation: str, name: str) -> Step:
        stack = self._wait(self._ids[name])
        return Step(operation, name, stack["StackId"], stack["StackStatus"],
                    stack.get("StackStatusReason") or "", self._new_events(stack["StackId"]),
                    {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []},
                    self._take_journal())

    def _wait(self, stack_id: str) -> dict:
        limit = time.monotonic() + self.timeout_s
        while True:
            stack = self.cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
            if not stack["StackStatus"].endswith("_IN_PROGRESS"):
                return stack
            if time.monotonic() > limit:
                raise TimeoutError(f"stack {stack['StackName']} still {stack['StackStatus']} after "
                                   f"{self.timeout_s:.0f}s; events:\n"
                                   + "\n".join(map(str, self._new_events(stack_id))))
            time.sleep(0.1)

    def _new_events(self, stack_id: str) -> list[dict]:
        events = []
        for page in self.cfn.get_paginator("describe_stack_events").paginate(StackName=stack_id):
            events.extend(page["StackEvents"])
        seen = self._seen_events.setdefault(stack_id, set())
        # Newest first from the API; ministack's timestamps can tie, so the listing order is kept.
        fresh = [e for e in reversed(events) if e["EventId"] not in seen]
        seen.update(e["EventId"] for e in fresh)
        return fresh

    def _take_journal(self) -> list[dict]:
        entries = self.engine.journal()
        fresh, self._journal_seen = entries[self._journal_seen:], len(entries)
        return fresh


def _parameters(values: dict | None) -> list[dict]:
    return [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in (values or {}).items()]


def deploy_function_stack(stacks: Stacks, binary: str | Path, parameters: dict | None = None,
                          name: str = FUNCTION_STACK) -> Step:
    """`sam build && sam deploy` of template.yaml into the engine: the zip into the engine's S3,
    the translated template created as stack `name` with `parameters`."""
    s3 = stacks.engine.client("s3")
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=ARTIFACT_KEY, Body=sam.package_bootstrap(binary))
    template = sam.translate(sam.TEMPLATE, ARTIFACT_BUCKET, ARTIFACT_KEY)
    return stacks.create(name, template, parameters)


def deploy_organization_stack(stacks: Stacks, code: bytes, name: str, parameters: dict | None = None,
                              *, key: str = ARTIFACT_KEY) -> Step:
    """One stack instance of deploy/organization.yaml, as a StackSet creates it in an account:
    the zip `code` put into a bucket of the stack's account, the template created as a plain
    stack with CodeBucket and CodeKey naming it and `parameters`.

    In AWS the organization's accounts read one bucket (its policy grants them); ministack's
    Lambda reads code only from the function's own account, and bucket names are global there
    too, so each account gets its own bucket, named after it."""
    bucket = f"{ARTIFACT_BUCKET}-{stacks.account}" if stacks.account else ARTIFACT_BUCKET
    s3 = stacks.engine.client("s3", account=stacks.account, region=stacks.region)
    location = {} if stacks.region == REGION else {
        "CreateBucketConfiguration": {"LocationConstraint": stacks.region}}
    s3.create_bucket(Bucket=bucket, **location)
    s3.put_object(Bucket=bucket, Key=key, Body=code)
    return stacks.create(name, organization_template(),
                         {"CodeBucket": bucket, "CodeKey": key, **(parameters or {})})


def organization_template() -> dict:
    """deploy/organization.yaml as plain data, short-form intrinsics as their long form."""
    from .authz import load_template
    return load_template(ORGANIZATION)


def profile_resource(service_stack: str = FUNCTION_STACK, **properties) -> dict:
    """A Custom::EbInstanceProfile resource as README shows it."""
    return {"Type": "Custom::EbInstanceProfile",
            "Properties": {"ServiceToken": {"Fn::ImportValue": f"{service_stack}-ServiceToken"},
                           **properties}}


def profile_outputs(logical_id: str = "Profile", prefix: str = "") -> dict:
    """Outputs of a profile resource: its name (!Ref) and the attributes an application uses."""
    return {
        f"{prefix}InstanceProfileName": {"Value": {"Ref": logical_id}},
        f"{prefix}InstanceProfileArn": {"Value": {"Fn::GetAtt": [logical_id, "Arn"]}},
        f"{prefix}RoleName": {"Value": {"Fn::GetAtt": [logical_id, "RoleName"]}},
        f"{prefix}RoleArn": {"Value": {"Fn::GetAtt": [logical_id, "RoleArn"]}},
        f"{prefix}ManagedPolicyArns": {"Value": {"Fn::GetAtt": [logical_id, "ManagedPolicyArns"]}},
    }
