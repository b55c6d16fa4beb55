"""Self-healing: EventBridge delivers CloudTrail's record of an IAM call ("AWS API Call via
CloudTrail", source aws.iam); when the call changed a role or instance profile the function owns and
the caller was not the function itself, the function undoes it. Every other event is ignored, and
every event, healed or not, is answered with success.

The out-of-band change is made in moto first, as its caller would, and the event describing it is
built from the samples in events/ (the shape CloudTrail documents)."""

from __future__ import annotations

import concurrent.futures
import copy
import json
from pathlib import Path

import pytest

from helpers import (ACCOUNT, DOCKER, EC2_TRUST, LAMBDA_TRUST, S3_READ, TAG_ADOPTED, WEB, WORKER,
                     make_profile, make_role, succeeded, trusted_services)
from local.runtime_api import FUNCTION_NAME

EVENTS = Path(__file__).resolve().parent.parent / "events"
DEFAULT = "aws-elasticbeanstalk-ec2-role"
EXECUTION_ROLE = "eb-instance-profile-ExecutionRole-1A2B3C4D5E6F"
HEALING_ENV = {"EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{EXECUTION_ROLE}"}
# The function's own calls, as CloudTrail records them: Lambda's session of the execution role,
# named after the function.
OWN_IDENTITY = {
    "type": "AssumedRole",
    "principalId": "AROA3EXAMPLEFUNCTION:" + FUNCTION_NAME,
    "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{EXECUTION_ROLE}/{FUNCTION_NAME}",
    "accountId": ACCOUNT,
    "accessKeyId": "ASIA3EXAMPLEFUNCTION",
    "sessionContext": {
        "sessionIssuer": {"type": "Role", "principalId": "AROA3EXAMPLEFUNCTION",
                          "arn": f"arn:aws:iam::{ACCOUNT}:role/{EXECUTION_ROLE}",
                          "accountId": ACCOUNT, "userName": EXECUTION_ROLE},
        "webIdFederationData": {},
        "attributes": {"creationDate": "2026-12-01T10:15:01Z", "mfaAuthenticated": "false"},
    },
}
SAMPLES = {
    "DetachRolePolicy": "cloudtrail-detach-role-policy.json",
    "RemoveRoleFromInstanceProfile": "cloudtrail-remove-role-from-instance-profile.json",
    "UpdateAssumeRolePolicy": "cloudtrail-update-assume-role-policy.json",
    "DeleteRolePolicy": "cloudtrail-delete-role-policy.json",
}
RESULT_KEYS = {"Result", "EventName", "EventId", "Detail"}


def sample(event_name: str) -> dict:
    return json.loads((EVENTS / SAMPLES[event_name]).read_text())


def cloudtrail_event(event_name: str, identity: dict | None = None, **parameters) -> dict:
    """The sample event of `event_name` with these requestParameters (merged over the sample's)
    and, if given, another userIdentity."""
    event = sample(event_name)
    event["detail"]["requestParameters"].update(parameters)
    if identity is not None:
        event["detail"]["userIdentity"] = copy.deepcopy(identity)
    return event


def deliver(runtime, event) -> dict:
    """Invokes the function with an EventBridge event; the invocation must succeed."""
    result = runtime.invoke(event, timeout_s=30)
    assert result.kind == "response", (result, result.body)
    answer = result.json()
    assert set(answer) == RESULT_KEYS, answer
    return answer


@pytest.fixture
def healing(start_function):
    """A function process configured as template.yaml configures it for self-healing."""
    return start_function(HEALING_ENV)


def create(cfn, logical_id: str = "Profile", **properties) -> str:
    result, response = cfn.send("Create", {"InstanceProfileName": DEFAULT, **properties},
                                logical_id=logical_id)
    return succeeded(response, result)["PhysicalResourceId"]


# --- each change is undone ----------------------------------------------------------------------

def test_the_samples_are_cloudtrail_records_of_the_four_calls():
    """The samples carry what EventBridge and CloudTrail document: envelope, record, parameters."""
    for event_name, _ in SAMPLES.items():
        event = sample(event_name)
        assert event["source"] == "aws.iam"
        assert event["detail-type"] == "AWS API Call via CloudTrail"
        detail = event["detail"]
        assert detail["eventSource"] == "iam.amazonaws.com"
        assert detail["eventName"] == event_name
        assert detail["userIdentity"]["type"] == "AssumedRole"
        assert detail["requestParameters"]["roleName"] == DEFAULT
        assert "errorCode" not in detail


def test_a_detached_policy_is_attached_again(healing, cfn, runtime, moto, iam):
    name = create(cfn)
    healthy = moto.iam_snapshot()
    iam.detach_role_policy(RoleName=name, PolicyArn=WORKER)

    answer = deliver(runtime, cloudtrail_event("DetachRolePolicy", roleName=name, policyArn=WORKER))

    assert answer["Result"] == "Restored", answer
    assert answer["EventName"] == "DetachRolePolicy"
    assert WORKER in answer["Detail"]
    assert moto.iam_snapshot() == healthy


def test_a_role_removed_from_its_profile_is_put_back(healing, cfn, runtime, moto, iam):
    name = create(cfn)
    healthy = moto.iam_snapshot()
    iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name)

    answer = deliver(runtime, cloudtrail_event("RemoveRoleFromInstanceProfile",
                                               instanceProfileName=name, roleName=name))

    assert answer["Result"] == "Restored", answer
    assert moto.iam_snapshot() == healthy


def test_a_trust_policy_without_ec2_gets_the_ec2_statement_back(healing, cfn, runtime, moto, iam):
    """The new trust policy's other principals stay; EC2 may assume the role again."""
    name = create(cfn)
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(LAMBDA_TRUST))
    assert trusted_services(moto.iam_snapshot()["roles"][name]) == {"lambda.amazonaws.com"}

    answer = deliver(runtime, cloudtrail_event("UpdateAssumeRolePolicy", roleName=name,
                                               policyDocument=json.dumps(LAMBDA_TRUST)))

    assert answer["Result"] == "Restored", answer
    role = moto.iam_snapshot()["roles"][name]
    assert trusted_services(role) == {"lambda.amazonaws.com", "ec2.amazonaws.com"}
    # Nothing else changed on the role.
    assert role["managed_policies"] == sorted([WEB, WORKER, DOCKER])
    assert deliver(runtime, cloudtrail_event("UpdateAssumeRolePolicy", roleName=name))["Result"] == "Ignored"


def test_an_adopted_profile_is_healed_only_with_heal_adopted(start_function, cfn, runtime, moto, iam):
    """Adopted entities are someone else's that the function only adds to: left alone by
    default, healed with HEAL_ADOPTED=true."""
    make_role(iam, DEFAULT, trust=EC2_TRUST, policies=[WEB])
    make_profile(iam, DEFAULT, role=DEFAULT)
    start_function(HEALING_ENV, deployment={"AllowAdoption": "true"})
    create(cfn, AdoptExisting=True)
    assert moto.iam_snapshot()["roles"][DEFAULT]["tags"][TAG_ADOPTED] == "true"
    iam.detach_role_policy(RoleName=DEFAULT, PolicyArn=WORKER)
    detached = moto.iam_snapshot()
    event = cloudtrail_event("DetachRolePolicy", roleName=DEFAULT, policyArn=WORKER)

    answer = deliver(runtime, event)
    assert answer["Result"] == "Ignored" and "HEAL_ADOPTED" in answer["Detail"], answer
    assert moto.iam_snapshot() == detached

    for process in start_function.running():
        process.stop()
    start_function({**HEALING_ENV, "HEAL_ADOPTED": "true"}, deployment={"AllowAdoption": "true"})
    assert deliver(runtime, event)["Result"] == "Restored"
    assert WORKER in moto.iam_snapshot()["roles"][DEFAULT]["managed_policies"]


# --- DeleteRolePolicy: reported, not undone -----------------------------------------------------

def test_a_deleted_inline_policy_is_reported_and_nothing_changes(healing, cfn, runtime, moto, iam):
    """CloudTrail does not record the deleted document: the answer says so and names the stack."""
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::config/*"}]}
    name = create(cfn, InlinePolicies={"read-config": document})
    iam.delete_role_policy(RoleName=name, PolicyName="read-config")
    deleted = moto.iam_snapshot()

    answer = deliver(runtime, cloudtrail_event("DeleteRolePolicy", roleName=name, policyName="read-config"))

    assert answer["Result"] == "Ignored", answer
    assert "read-config" in answer["Detail"] and "cannot be put back" in answer["Detail"], answer
    assert cfn.last_event["StackId"] in answer["Detail"], answer
    assert moto.iam_snapshot() == deleted


# --- everything else is ignored, changes nothing, and succeeds ----------------------------------

def _detached_owned(cfn, iam, policy=WORKER):
    name = create(cfn)
    iam.detach_role_policy(RoleName=name, PolicyArn=policy)
    return name


def _foreign_role(cfn, iam):
    make_role(iam, "someone-elses", trust=EC2_TRUST, policies=[WEB])
    make_profile(iam, "someone-elses", role="someone-elses")
    iam.detach_role_policy(RoleName="someone-elses", PolicyArn=WEB)
    return cloudtrail_event("DetachRolePolicy", roleName="someone-elses", policyArn=WEB)


def _foreign_profile(cfn, iam):
    make_role(iam, "someone-elses", trust=EC2_TRUST)
    make_profile(iam, "someone-elses")
    return cloudtrail_event("RemoveRoleFromInstanceProfile", instanceProfileName="someone-elses",
                            roleName="someone-elses")


def _own_detach(cfn, iam):
    name = _detached_owned(cfn, iam)
    return cloudtrail_event("DetachRolePolicy", OWN_IDENTITY, roleName=name, policyArn=WORKER)


def _own_removal(cfn, iam):
    name = create(cfn)
    iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name)
    return cloudtrail_event("RemoveRoleFromInstanceProfile", OWN_IDENTITY,
                            instanceProfileName=name, roleName=name)


def _own_trust_update(cfn, iam):
    name = create(cfn)
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(LAMBDA_TRUST))
    return cloudtrail_event("UpdateAssumeRolePolicy", OWN_IDENTITY, roleName=name)


def _policy_no_longer_allowed(cfn, iam):
    name = create(cfn, ManagedPolicyArns=[S3_READ])
    iam.detach_role_policy(RoleName=name, PolicyArn=S3_READ)
    return cloudtrail_event("DetachRolePolicy", roleName=name, policyArn=S3_READ)


def _policy_never_allowed(cfn, iam):
    name = create(cfn)
    return cloudtrail_event("DetachRolePolicy", roleName=name,
                            policyArn="arn:aws:iam::aws:policy/AdministratorAccess")


def _failed_call(cfn, iam):
    name = _detached_owned(cfn, iam)
    event = cloudtrail_event("DetachRolePolicy", roleName=name, policyArn=WORKER)
    event["detail"]["errorCode"] = "AccessDenied"
    event["detail"]["errorMessage"] = "User is not authorized to perform: iam:DetachRolePolicy"
    return event


def _unknown_event(cfn, iam):
    name = _detached_owned(cfn, iam)
    event = cloudtrail_event("DetachRolePolicy", roleName=name, policyArn=WORKER)
    event["detail"]["eventName"] = "AttachRolePolicy"
    return event


def _role_gone(cfn, iam):
    return cloudtrail_event("DetachRolePolicy", roleName="no-such-role", policyArn=WORKER)


def _profile_holds_another_role(cfn, iam):
    name = create(cfn)
    iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name)
    make_role(iam, "replacement", trust=EC2_TRUST)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName="replacement")
    return cloudtrail_event("RemoveRoleFromInstanceProfile", instanceProfileName=name, roleName=name)


def _not_the_profiles_role(cfn, iam):
    """An event naming another owned role as the one removed: that role never goes into this profile."""
    first = create(cfn)
    create(cfn, InstanceProfileName="second", logical_id="Second")
    iam.remove_role_from_instance_profile(InstanceProfileName=first, RoleName=first)
    return cloudtrail_event("RemoveRoleFromInstanceProfile", instanceProfileName=first, roleName="second")


def _another_source(cfn, iam):
    _detached_owned(cfn, iam)
    event = sample("DetachRolePolicy")
    event["source"] = "aws.s3"
    event["detail"]["eventSource"] = "s3.amazonaws.com"
    event["detail"]["eventName"] = "DeleteBucket"
    event["detail"]["requestParameters"] = {"bucketName": "b"}
    return event


def _scheduled_event(cfn, iam):
    _detached_owned(cfn, iam)
    return {"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT, "time": "2026-12-01T10:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/heal"], "detail": {}}


# S3ReadOnlyAccess was allowed when the profile was made, and is no longer.
NARROWED = {"ALLOWED_POLICY_ARNS": "arn:*:iam::aws:policy/AWSElasticBeanstalk*"}
# case: (makes the change and returns its event, what the answer says, the function's settings
# when the event arrives if they differ from those when the change was made)
IGNORED = {
    "foreign-role": (_foreign_role, "does not carry"),
    "foreign-profile": (_foreign_profile, "does not carry"),
    "own-detach": (_own_detach, "own"),
    "own-removal": (_own_removal, "own"),
    "own-trust-update": (_own_trust_update, "own"),
    "policy-no-longer-allowed": (_policy_no_longer_allowed, "ALLOWED_POLICY_ARNS", NARROWED),
    "policy-never-allowed": (_policy_never_allowed, "ALLOWED_POLICY_ARNS"),
    "failed-call": (_failed_call, "AccessDenied"),
    "unknown-event": (_unknown_event, "AttachRolePolicy"),
    "role-gone": (_role_gone, "no longer exists"),
    "profile-holds-another-role": (_profile_holds_another_role, "replacement"),
    "not-the-profiles-role": (_not_the_profiles_role, "belongs to role"),
    "another-source": (_another_source, "not a CloudTrail event from IAM"),
    "scheduled-event": (_scheduled_event, "not a CloudTrail event from IAM"),
}


@pytest.mark.parametrize("case", IGNORED, ids=list(IGNORED))
def test_an_event_the_function_must_not_act_on_changes_nothing_and_succeeds(
        start_function, cfn, runtime, moto, iam, case):
    make_case, reason, *later_env = IGNORED[case]
    start_function(HEALING_ENV)
    event = make_case(cfn, iam)
    if later_env:
        for process in start_function.running():
            process.stop()
        start_function({**HEALING_ENV, **later_env[0]})
    before = moto.iam_snapshot()

    answer = deliver(runtime, event)

    assert answer["Result"] == "Ignored", answer
    assert reason in answer["Detail"], answer
    assert moto.iam_snapshot() == before


def _malformed():
    good = cloudtrail_event("DetachRolePolicy", roleName="r", policyArn=WORKER)
    cases = {}

    def case(name, mutate):
        event = copy.deepcopy(good)
        mutate(event)
        cases[name] = event

    case("no-detail", lambda e: e.pop("detail"))
    case("detail-not-object", lambda e: e.__setitem__("detail", "DetachRolePolicy"))
    case("no-user-identity", lambda e: e["detail"].pop("userIdentity"))
    case("identity-not-object", lambda e: e["detail"].__setitem__("userIdentity", 7))
    case("no-time", lambda e: e.pop("time"))
    case("bad-time", lambda e: e.__setitem__("time", "yesterday"))
    case("no-resources", lambda e: e.pop("resources"))
    case("no-event-name", lambda e: e["detail"].pop("eventName"))
    case("no-role-name", lambda e: e["detail"]["requestParameters"].pop("roleName"))
    case("role-name-number", lambda e: e["detail"]["requestParameters"].__setitem__("roleName", 7))
    case("invalid-role-name", lambda e: e["detail"]["requestParameters"].__setitem__("roleName", "a b"))
    case("no-policy-arn", lambda e: e["detail"]["requestParameters"].pop("policyArn"))
    case("parameters-null", lambda e: e["detail"].__setitem__("requestParameters", None))
    case("detail-type-number", lambda e: e.__setitem__("detail-type", 7))
    case("huge-role-name", lambda e: e["detail"]["requestParameters"].__setitem__("roleName", "r" * 100_000))
    return cases


MALFORMED = _malformed()


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_event_is_ignored_with_success(healing, cfn, runtime, moto, iam, case):
    _detached_owned(cfn, iam)
    before = moto.iam_snapshot()

    answer = deliver(runtime, MALFORMED[case])

    assert answer["Result"] == "Ignored", answer
    assert len(json.dumps(answer)) < 2000, "the answer echoes the event"
    assert moto.iam_snapshot() == before


def test_without_knowing_itself_the_function_undoes_nothing(start_function, cfn, runtime, moto, iam):
    """Neither the function name nor the execution role known: its own calls could not be told
    apart, so nothing is undone."""
    start_function({"AWS_LAMBDA_FUNCTION_NAME": ""})
    name = _detached_owned(cfn, iam)
    before = moto.iam_snapshot()

    answer = deliver(runtime, cloudtrail_event("DetachRolePolicy", roleName=name, policyArn=WORKER))

    assert answer["Result"] == "Ignored" and "cannot tell its own calls apart" in answer["Detail"], answer
    assert moto.iam_snapshot() == before


# --- a burst ------------------------------------------------------------------------------------

# On plain moto: under the realistic IAM the races of concurrent undos are not deterministic (its
# choices follow the order of requests, which four processes vary). The undos themselves wait out
# propagation like every direct request, and the other tests here run under the realistic IAM.
@pytest.mark.plain_iam
def test_a_burst_of_100_events_is_handled_without_a_failure(start_function, cfn, runtime, moto, iam):
    """100 events at once over 4 function processes: every change to 5 profiles undone (each
    event delivered several times, as EventBridge may), mixed with the function's own calls,
    foreign roles and malformed events; every invocation succeeds and every profile ends healthy."""
    for _ in range(4):
        start_function(HEALING_ENV)
    names = [create(cfn, InstanceProfileName=f"fleet-{i}", logical_id=f"Fleet{i}") for i in range(5)]
    healthy = moto.iam_snapshot()
    make_role(iam, "someone-elses", trust=EC2_TRUST)

    events = []
    for name in names:
        iam.detach_role_policy(RoleName=name, PolicyArn=WORKER)
        iam.detach_role_policy(RoleName=name, PolicyArn=DOCKER)
        iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name)
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(LAMBDA_TRUST))
        changes = [
            cloudtrail_event("DetachRolePolicy", roleName=name, policyArn=WORKER),
            cloudtrail_event("DetachRolePolicy", roleName=name, policyArn=DOCKER),
            cloudtrail_event("RemoveRoleFromInstanceProfile", instanceProfileName=name, roleName=name),
            cloudtrail_event("UpdateAssumeRolePolicy", roleName=name),
        ]
        events += changes * 3  # 12 per profile, 60 in all
        events += [
            cloudtrail_event("DetachRolePolicy", OWN_IDENTITY, roleName=name, policyArn=WEB),
            cloudtrail_event("DeleteRolePolicy", roleName=name, policyName="gone"),
        ] * 2  # 20 in all
    events += [cloudtrail_event("DetachRolePolicy", roleName="someone-elses", policyArn=WEB)] * 10
    events += list(MALFORMED.values())[:10]
    assert len(events) == 100

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        pending = [runtime.submit(e, timeout_s=60) for e in events]
        results = list(pool.map(lambda p: p.wait(), pending))

    assert [r.kind for r in results] == ["response"] * 100, [r for r in results if r.kind != "response"]
    answers = [r.json() for r in results]
    assert {a["Result"] for a in answers} <= {"Restored", "Ignored"}, [a for a in answers if a["Result"] == "Failed"]
    # Each change undone once at least; the repeats found it undone already.
    assert sum(a["Result"] == "Restored" for a in answers) >= 20
    state = moto.iam_snapshot()
    for name in names:
        role = state["roles"][name]
        assert role["managed_policies"] == healthy["roles"][name]["managed_policies"]
        assert state["instance_profiles"][name]["roles"] == [name]
        assert "ec2.amazonaws.com" in trusted_services(role)
