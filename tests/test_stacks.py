"""Application stacks using the resource as README shows it, run through a real CloudFormation engine
(ministack, with the differences local/cfn_engine.py makes up): the function deployed from
template.yaml answers the engine's requests, and after every stack operation the test checks the
stack's status, its events (the function's Reason on a failure), its Outputs, every response body
(CloudFormation's checks), the requests the function got, and what IAM (moto) holds.
"""

from __future__ import annotations

import json

from helpers import S3_READ, TAG_LOGICAL_ID, TAG_STACK_ID, WEB, WORKER, aws_policy
from local import sam
from local.stack import Step, profile_outputs, profile_resource
from stack_fixtures import FUNCTION_STACK, engine, stacks  # noqa: F401 (fixtures)

# Matched by the function stack's AllowedPolicyArns (arn:aws:iam::aws:policy/AmazonS3*), unknown to
# IAM: AttachRolePolicy answers NoSuchEntity.
MISSING_POLICY = aws_policy("AmazonS3NoSuchPolicy")
TAG_ROLE_NAME = "eb-instance-profile:role-name"
TAG_REQUEST_ID = "eb-instance-profile:request-id"
# What iam_state shows for a request-id tag: which request made an entity is not compared, only
# that one did.
A_REQUEST = "<a request id>"


def _tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: (A_REQUEST if k == TAG_REQUEST_ID and v else v) for k, v in tags.items()}


# What the tests compare

def iam_state(moto) -> dict:
    """IAM as an application sees it: instance profile name -> its role, the role's policies and
    both entities' ownership tags. A role outside any profile shows under its own name."""
    snapshot = moto.iam_snapshot()
    state = {}
    in_profiles = set()
    for name, profile in snapshot["instance_profiles"].items():
        roles = profile["roles"]
        role = snapshot["roles"].get(roles[0]) if roles else None
        in_profiles.update(roles)
        state[name] = {"roles": roles, "profile_tags": _tags(profile["tags"]),
                       "policies": role["managed_policies"] if role else None,
                       "role_tags": _tags(role["tags"]) if role else None}
    for name, role in snapshot["roles"].items():
        if name not in in_profiles:
            state[f"role without profile: {name}"] = {"policies": role["managed_policies"]}
    return state


def owned(stack_id: str, logical_id: str, role: str, policies: list[str], **user_tags) -> dict:
    """The iam_state entry of a profile made by resource `logical_id` of `stack_id`."""
    own = {TAG_STACK_ID: stack_id, TAG_LOGICAL_ID: logical_id, TAG_REQUEST_ID: A_REQUEST}
    return {"roles": [role], "profile_tags": {**own, TAG_ROLE_NAME: role, **user_tags},
            "policies": sorted(policies), "role_tags": {**own, **user_tags}}


def events(step: Step) -> list[tuple[str, str]]:
    """(LogicalResourceId, ResourceStatus) of the step's events, in order."""
    return [(e["LogicalResourceId"], e["ResourceStatus"]) for e in step.events]


def reason(step: Step, logical_id: str, status: str) -> str:
    found = [r for s, r in step.resource_events(logical_id) if s == status]
    assert found, f"no {status} event of {logical_id}: {step.events}"
    return found[0]


def requests(step: Step) -> list[tuple]:
    """(RequestType, LogicalResourceId, PhysicalResourceId or None, Attempt) of each invocation."""
    return [(r["RequestType"], r["LogicalResourceId"], r.get("PhysicalResourceId"), r["Attempt"])
            for r in step.requests()]


def answered(step: Step) -> list[dict]:
    """Every response body the function PUT in this step; each must pass CloudFormation's checks."""
    responses = step.responses()
    bad = [r for r in responses if r["verdict"] != "valid"]
    assert not bad, f"responses CloudFormation would refuse: {json.dumps(bad, indent=1)}"
    return [r["body"] for r in responses]


def app_template(resources: dict, outputs: dict | None = None) -> dict:
    return {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources,
            "Outputs": outputs if outputs is not None else profile_outputs()}


def expected_outputs(state_entry_name: str, role: str, policies: list[str], prefix: str = "") -> dict:
    account = "123456789012"
    # What the function creates lives under its path, /eb-instance-profile/.
    return {f"{prefix}InstanceProfileName": state_entry_name,
            f"{prefix}InstanceProfileArn":
                f"arn:aws:iam::{account}:instance-profile/eb-instance-profile/{state_entry_name}",
            f"{prefix}RoleName": role,
            f"{prefix}RoleArn": f"arn:aws:iam::{account}:role/eb-instance-profile/{role}",
            f"{prefix}ManagedPolicyArns": ",".join(sorted(policies))}


# The function's own stack

def test_function_stack_is_template_yaml_deployed(engine):
    step = engine.function_stack
    assert step.status == "CREATE_COMPLETE"
    created = [lid for lid, status in events(step) if status == "CREATE_COMPLETE"]
    assert created == ["LogGroup", "ExecutionRole", "InstanceProfileFunction",
                       "InstanceProfileFunctionEventInvokeConfig", FUNCTION_STACK]
    lam = engine.ministack.client("lambda")
    function = lam.get_function(FunctionName=step.outputs["ServiceToken"])["Configuration"]
    assert step.outputs["ServiceToken"] == function["FunctionArn"]
    assert (function["Runtime"], function["Handler"], function["Timeout"]) == ("provided.al2023", "bootstrap", 300)
    assert function["Environment"]["Variables"]["ALLOWED_POLICY_ARNS"].startswith(
        "arn:aws:iam::aws:policy/AWSElasticBeanstalk*")
    exports = engine.ministack.client("cloudformation").list_exports()["Exports"]
    assert {e["Name"]: e["Value"] for e in exports}[f"{FUNCTION_STACK}-ServiceToken"] == function["FunctionArn"]
    # The execution role is the template's, policy for policy (with the parameters filled in).
    role_name = function["Role"].rsplit("/", 1)[1]
    iam = engine.ministack.client("iam")
    written = {p["PolicyName"] for p in
               sam.translate(sam.TEMPLATE, "b", "k")["Resources"]["ExecutionRole"]["Properties"]["Policies"]}
    assert set(iam.list_role_policies(RoleName=role_name)["PolicyNames"]) == written == {"logs", "iam"}
    iam_policy = iam.get_role_policy(RoleName=role_name, PolicyName="iam")["PolicyDocument"]
    if isinstance(iam_policy, str):
        iam_policy = json.loads(iam_policy)
    sids = [s.get("Sid") for s in iam_policy["Statement"]]
    assert "CreateOwnedRoles" in sids and "DenyRetaggingOwnedEntities" in sids
    # AllowAdoption and RepairableRoleArns are off: their statements are left out.
    assert "AdoptUnownedEntities" not in sids and "RepairListedRoles" not in sids


# Application stacks

def test_create_update_in_place_and_delete(stacks, clean_moto):
    template = app_template({"Profile": profile_resource(Tiers=["WebTier"])})
    step = stacks.create("app-lifecycle", template)
    stack_id = step.stack_id
    assert step.status == "CREATE_COMPLETE", step.events
    assert events(step) == [("app-lifecycle", "CREATE_IN_PROGRESS"), ("Profile", "CREATE_IN_PROGRESS"),
                            ("Profile", "CREATE_COMPLETE"), ("app-lifecycle", "CREATE_COMPLETE")]
    assert requests(step) == [("Create", "Profile", None, 1)]
    [body] = answered(step)
    name = body["PhysicalResourceId"]
    assert name.startswith("app-lifecycle-Profile-")
    assert step.outputs == expected_outputs(name, name, [WEB])
    assert iam_state(clean_moto) == {name: owned(stack_id, "Profile", name, [WEB])}

    template["Resources"]["Profile"] = profile_resource(
        Tiers=["WebTier", "WorkerTier"], ManagedPolicyArns=[S3_READ],
        Tags=[{"Key": "team", "Value": "web"}])
    step = stacks.update("app-lifecycle", template)
    assert step.status == "UPDATE_COMPLETE", step.events
    assert ("Profile", "UPDATE_COMPLETE") in events(step)
    assert requests(step) == [("Update", "Profile", name, 1)]
    [update] = step.requests()
    assert update["OldResourceProperties"]["Tiers"] == ["WebTier"]
    assert update["ResourceProperties"]["Tiers"] == ["WebTier", "WorkerTier"]
    [body] = answered(step)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", name)
    assert step.outputs == expected_outputs(name, name, [WEB, WORKER, S3_READ])
    assert iam_state(clean_moto) == {name: owned(stack_id, "Profile", name, [WEB, WORKER, S3_READ], team="web")}

    step = stacks.delete("app-lifecycle")
    assert step.status == "DELETE_COMPLETE", step.events
    assert events(step) == [("app-lifecycle", "DELETE_IN_PROGRESS"), ("Profile", "DELETE_IN_PROGRESS"),
                            ("Profile", "DELETE_COMPLETE"), ("app-lifecycle", "DELETE_COMPLETE")]
    assert requests(step) == [("Delete", "Profile", name, 1)]
    assert [b["Status"] for b in answered(step)] == ["SUCCESS"]
    assert iam_state(clean_moto) == {}


def test_failing_update_rolls_back_to_the_previous_properties(stacks, clean_moto):
    template = app_template({"Profile": profile_resource(Tiers=["WebTier"])})
    step = stacks.create("app-bad-update", template)
    assert step.status == "CREATE_COMPLETE", step.events
    stack_id, name = step.stack_id, step.outputs["InstanceProfileName"]
    before = iam_state(clean_moto)
    assert before == {name: owned(stack_id, "Profile", name, [WEB])}

    template["Resources"]["Profile"] = profile_resource(Tiers=["WebTier"], ManagedPolicyArns=[MISSING_POLICY])
    step = stacks.update("app-bad-update", template)
    assert step.status == "UPDATE_ROLLBACK_COMPLETE", step.events
    failure = reason(step, "Profile", "UPDATE_FAILED")
    assert "iam:AttachRolePolicy failed with NoSuchEntity" in failure and MISSING_POLICY in failure
    assert events(step) == [
        ("app-bad-update", "UPDATE_IN_PROGRESS"), ("Profile", "UPDATE_IN_PROGRESS"),
        ("Profile", "UPDATE_FAILED"), ("app-bad-update", "UPDATE_ROLLBACK_IN_PROGRESS"),
        ("Profile", "UPDATE_IN_PROGRESS"), ("Profile", "UPDATE_COMPLETE"),
        ("app-bad-update", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"),
        ("app-bad-update", "UPDATE_ROLLBACK_COMPLETE")]
    # The rollback is the swapped Update: back from the failed properties to the previous ones.
    assert requests(step) == [("Update", "Profile", name, 1), ("Update", "Profile", name, 1)]
    forward, back = step.requests()
    assert forward["ResourceProperties"]["ManagedPolicyArns"] == [MISSING_POLICY]
    assert back["OldResourceProperties"]["ManagedPolicyArns"] == [MISSING_POLICY]
    assert "ManagedPolicyArns" not in back["ResourceProperties"]
    assert [(b["Status"], b["PhysicalResourceId"]) for b in answered(step)] == [
        ("FAILED", name), ("SUCCESS", name)]
    assert step.outputs == expected_outputs(name, name, [WEB])
    assert iam_state(clean_moto) == before

    assert stacks.delete("app-bad-update").status == "DELETE_COMPLETE"
    assert iam_state(clean_moto) == {}


def test_replacement_then_cleanup_delete_of_the_old_profile(stacks, clean_moto):
    template = app_template({"Profile": profile_resource(InstanceProfileName="app-web-1", Tiers=["WebTier"])})
    step = stacks.create("app-replace", template)
    assert step.status == "CREATE_COMPLETE", step.events
    stack_id = step.stack_id
    assert step.outputs == expected_outputs("app-web-1", "app-web-1", [WEB])
    assert iam_state(clean_moto) == {"app-web-1": owned(stack_id, "Profile", "app-web-1", [WEB])}

    template["Resources"]["Profile"] = profile_resource(InstanceProfileName="app-web-2", Tiers=["WebTier"])
    step = stacks.update("app-replace", template)
    assert step.status == "UPDATE_COMPLETE", step.events
    # The Update answers with the new name; CloudFormation then deletes the old profile in cleanup.
    assert requests(step) == [("Update", "Profile", "app-web-1", 1), ("Delete", "Profile", "app-web-1", 1)]
    assert [(b["Status"], b["PhysicalResourceId"]) for b in answered(step)] == [
        ("SUCCESS", "app-web-2"), ("SUCCESS", "app-web-1")]
    # ministack records no events for the cleanup phase (CloudFormation shows
    # UPDATE_COMPLETE_CLEANUP_IN_PROGRESS and the old profile's DELETE_*): the requests above are
    # what shows the cleanup Delete.
    assert events(step) == [("app-replace", "UPDATE_IN_PROGRESS"), ("Profile", "UPDATE_IN_PROGRESS"),
                            ("Profile", "UPDATE_COMPLETE"), ("app-replace", "UPDATE_COMPLETE")]
    assert step.outputs == expected_outputs("app-web-2", "app-web-2", [WEB])
    assert iam_state(clean_moto) == {"app-web-2": owned(stack_id, "Profile", "app-web-2", [WEB])}

    step = stacks.delete("app-replace")
    assert step.status == "DELETE_COMPLETE"
    assert requests(step) == [("Delete", "Profile", "app-web-2", 1)]
    answered(step)
    assert iam_state(clean_moto) == {}


def test_failing_create_rolls_back_with_a_delete_of_the_failed_id(stacks, clean_moto):
    template = app_template({"Profile": profile_resource(
        InstanceProfileName="app-broken", Tiers=["WebTier"], ManagedPolicyArns=[MISSING_POLICY])})
    step = stacks.create("app-bad-create", template)
    assert step.status == "ROLLBACK_COMPLETE", step.events
    failure = reason(step, "Profile", "CREATE_FAILED")
    assert "iam:AttachRolePolicy failed with NoSuchEntity" in failure and MISSING_POLICY in failure
    assert events(step) == [
        ("app-bad-create", "CREATE_IN_PROGRESS"), ("Profile", "CREATE_IN_PROGRESS"),
        ("Profile", "CREATE_FAILED"), ("app-bad-create", "ROLLBACK_IN_PROGRESS"),
        ("Profile", "DELETE_IN_PROGRESS"), ("Profile", "DELETE_COMPLETE"),
        ("app-bad-create", "ROLLBACK_COMPLETE")]
    # The rollback's Delete names the PhysicalResourceId of the FAILED response (the harness sends
    # it: ministack would not).
    created, deleted = answered(step)
    assert created["Status"] == "FAILED" and created["PhysicalResourceId"]
    assert requests(step) == [("Create", "Profile", None, 1),
                              ("Delete", "Profile", created["PhysicalResourceId"], 1)]
    assert (deleted["Status"], deleted["PhysicalResourceId"]) == ("SUCCESS", created["PhysicalResourceId"])
    assert step.outputs == {}
    # What the failed Create made, it removed: nothing is left for the Delete, nothing in IAM.
    assert iam_state(clean_moto) == {}

    assert stacks.delete("app-bad-create").status == "DELETE_COMPLETE"


def test_other_resource_failing_after_the_profile_rolls_the_profile_back(stacks, clean_moto):
    # The application publishes the role's ARN in SSM, under a name that is already taken.
    ssm = stacks.engine.client("ssm")
    ssm.put_parameter(Name="/app-ssm/role-arn", Value="taken", Type="String", Overwrite=True)
    template = app_template({
        "Profile": profile_resource(Tiers=["WorkerTier"]),
        "RoleArnParameter": {"Type": "AWS::SSM::Parameter", "Properties": {
            "Name": "/app-ssm/role-arn", "Type": "String",
            "Value": {"Fn::GetAtt": ["Profile", "RoleArn"]}}},
    })
    step = stacks.create("app-ssm", template)
    assert step.status == "ROLLBACK_COMPLETE", step.events
    assert "ParameterAlreadyExists" in reason(step, "RoleArnParameter", "CREATE_FAILED")
    assert events(step) == [
        ("app-ssm", "CREATE_IN_PROGRESS"), ("Profile", "CREATE_IN_PROGRESS"), ("Profile", "CREATE_COMPLETE"),
        ("RoleArnParameter", "CREATE_IN_PROGRESS"), ("RoleArnParameter", "CREATE_FAILED"),
        ("app-ssm", "ROLLBACK_IN_PROGRESS"), ("Profile", "DELETE_IN_PROGRESS"),
        ("Profile", "DELETE_COMPLETE"), ("app-ssm", "ROLLBACK_COMPLETE")]
    created, deleted = answered(step)
    name = created["PhysicalResourceId"]
    assert created["Status"] == "SUCCESS"
    assert requests(step) == [("Create", "Profile", None, 1), ("Delete", "Profile", name, 1)]
    assert (deleted["Status"], deleted["PhysicalResourceId"]) == ("SUCCESS", name)
    # The profile existed in between (the Create answered with its role); the rollback removed it.
    assert created["Data"]["RoleName"] == name
    assert iam_state(clean_moto) == {}
    assert ssm.get_parameter(Name="/app-ssm/role-arn")["Parameter"]["Value"] == "taken"
    assert stacks.delete("app-ssm").status == "DELETE_COMPLETE"


def test_two_profiles_in_one_stack(stacks, clean_moto):
    template = app_template(
        {"WebProfile": profile_resource(Tiers=["WebTier"]),
         "WorkerProfile": profile_resource(Tiers=["WorkerTier"], ManagedPolicyArns=[S3_READ])},
        {**profile_outputs("WebProfile", "Web"), **profile_outputs("WorkerProfile", "Worker")})
    step = stacks.create("app-two", template)
    assert step.status == "CREATE_COMPLETE", step.events
    stack_id = step.stack_id
    web, worker = step.outputs["WebInstanceProfileName"], step.outputs["WorkerInstanceProfileName"]
    assert web.startswith("app-two-WebProfile-") and worker.startswith("app-two-WorkerProfile-")
    assert sorted(requests(step)) == [("Create", "WebProfile", None, 1), ("Create", "WorkerProfile", None, 1)]
    assert [b["Status"] for b in answered(step)] == ["SUCCESS", "SUCCESS"]
    assert step.outputs == {**expected_outputs(web, web, [WEB], "Web"),
                            **expected_outputs(worker, worker, [WORKER, S3_READ], "Worker")}
    assert iam_state(clean_moto) == {web: owned(stack_id, "WebProfile", web, [WEB]),
                                     worker: owned(stack_id, "WorkerProfile", worker, [WORKER, S3_READ])}

    step = stacks.delete("app-two")
    assert step.status == "DELETE_COMPLETE", step.events
    assert sorted(requests(step)) == [("Delete", "WebProfile", web, 1), ("Delete", "WorkerProfile", worker, 1)]
    assert [b["Status"] for b in answered(step)] == ["SUCCESS", "SUCCESS"]
    assert {lid for lid, status in events(step) if status == "DELETE_COMPLETE"} == {
        "WebProfile", "WorkerProfile", "app-two"}
    assert iam_state(clean_moto) == {}


def test_failed_invocation_is_retried_as_lambda_retries_async_invokes(stacks, clean_moto):
    # The ResponseURL refuses the first PUT of the Create with a final 403: the function cannot
    # deliver, returns an error, and Lambda invokes it again with the same request.
    stacks.engine.inject_response_faults([{"id": "retry-1", "logical_id": "Profile",
                                           "request_type": "Create", "status": 403, "times": 1}])
    step = stacks.create("app-retry", app_template({"Profile": profile_resource(Tiers=["WebTier"])}))
    assert step.status == "CREATE_COMPLETE", step.events
    assert requests(step) == [("Create", "Profile", None, 1), ("Create", "Profile", None, 2)]
    first, second = step.requests()
    assert first["RequestId"] == second["RequestId"]
    invocations = [e for e in step.journal if e["kind"] == "invoke"]
    assert [e["error"] for e in invocations] == [True, False]
    verdicts = [r["verdict"] for r in step.responses()]
    assert verdicts == ["fault 403", "valid"]
    name = step.outputs["InstanceProfileName"]
    # The second delivery converged on the entities of the first: one profile, one role.
    assert iam_state(clean_moto) == {name: owned(step.stack_id, "Profile", name, [WEB])}
    assert stacks.delete("app-retry").status == "DELETE_COMPLETE"
    assert iam_state(clean_moto) == {}


def test_function_iam_calls_go_to_moto_through_the_proxy(engine, stacks, clean_moto):
    step = stacks.create("app-proxy", app_template({"Profile": profile_resource(Tiers=["WebTier"])}))
    assert step.status == "CREATE_COMPLETE"
    actions = {r.action for r in engine.proxy.take_records()}
    assert {"CreateRole", "CreateInstanceProfile", "AttachRolePolicy", "AddRoleToInstanceProfile"} <= actions
    assert stacks.delete("app-proxy").status == "DELETE_COMPLETE"
    assert {"DeleteRole", "DeleteInstanceProfile"} <= {r.action for r in engine.proxy.take_records()}
