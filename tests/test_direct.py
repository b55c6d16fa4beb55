"""Verify and Repair by direct invocation (an EventBridge schedule, an operator): the invocation's
result is a report on one instance profile; Repair attaches the missing expected policies, and
nothing else. Invalid requests are invocation errors that name the problem."""

from __future__ import annotations

import pytest

from helpers import (DOCKER, EC2_TRUST, LAMBDA_TRUST, S3_READ, WEB, WORKER,
                     make_profile, make_role, succeeded)

DEFAULT = "aws-elasticbeanstalk-ec2-role"
PROFILE_ARN = f"arn:aws:iam::123456789012:instance-profile/{DEFAULT}"
ROLE_ARN = f"arn:aws:iam::123456789012:role/{DEFAULT}"
REPORT_KEYS = {"Action", "InstanceProfileName", "InstanceProfileArn", "RoleName", "RoleArn",
               "TrustPolicyAllowsEc2", "ExpectedPolicies", "AttachedPolicies", "MissingPolicies",
               "ExtraPolicies", "Repaired", "Problems", "Verdict"}


def invoke(runtime, payload) -> dict:
    """The report a direct invocation returns (the invocation must succeed)."""
    result = runtime.invoke(payload, timeout_s=30)
    assert result.kind == "response", (result, result.body)
    report = result.json()
    assert set(report) == REPORT_KEYS, report
    return report


def invoke_error(runtime, payload) -> dict:
    """The error a direct invocation returns (it must fail): {errorType, errorMessage}."""
    result = runtime.invoke(payload, timeout_s=30)
    assert result.kind == "error", (result, result.body)
    return result.json()


def verify(runtime, name=DEFAULT, **extra) -> dict:
    return invoke(runtime, {"Action": "Verify", "InstanceProfileName": name, **extra})


def repair(runtime, name=DEFAULT, **extra) -> dict:
    return invoke(runtime, {"Action": "Repair", "InstanceProfileName": name, **extra})


def out_of_date_default(iam, policies=(WEB, S3_READ), trust=EC2_TRUST) -> None:
    """The default profile with only WebTier and a policy the user added."""
    make_role(iam, DEFAULT, trust=trust, policies=policies)
    make_profile(iam, DEFAULT, role=DEFAULT)


# --- Verify ---------------------------------------------------------------------------------------

def test_verify_reports_a_profile_made_by_a_create_healthy_and_changes_nothing(cfn, runtime, moto):
    """A profile the resource created verifies Healthy, with every field of the report filled in."""
    name = succeeded(cfn.send("Create", {})[1])["PhysicalResourceId"]
    before = moto.iam_snapshot()

    report = verify(runtime, name)

    assert report == {
        "Action": "Verify",
        "InstanceProfileName": name,
        "InstanceProfileArn": f"arn:aws:iam::123456789012:instance-profile/eb-instance-profile/{name}",
        "RoleName": name,
        "RoleArn": f"arn:aws:iam::123456789012:role/eb-instance-profile/{name}",
        "TrustPolicyAllowsEc2": True,
        "ExpectedPolicies": sorted([WEB, WORKER, DOCKER]),
        "AttachedPolicies": sorted([WEB, WORKER, DOCKER]),
        "MissingPolicies": [],
        "ExtraPolicies": [],
        "Repaired": [],
        "Problems": [],
        "Verdict": "Healthy",
    }
    assert moto.iam_snapshot() == before


def test_verify_of_an_out_of_date_default_profile_needs_repair_and_changes_nothing(function, runtime, moto, iam):
    """WebTier plus an extra policy: NeedsRepair, Worker and Docker missing, the extra one reported."""
    out_of_date_default(iam)
    before = moto.iam_snapshot()

    report = verify(runtime)

    assert report["Verdict"] == "NeedsRepair"
    assert report["InstanceProfileArn"] == PROFILE_ARN
    assert report["RoleName"] == DEFAULT and report["RoleArn"] == ROLE_ARN
    assert report["TrustPolicyAllowsEc2"] is True
    assert report["MissingPolicies"] == sorted([WORKER, DOCKER])
    assert report["ExtraPolicies"] == [S3_READ]
    assert report["AttachedPolicies"] == sorted([WEB, S3_READ])
    assert report["Problems"] == [] and report["Repaired"] == []
    assert moto.iam_snapshot() == before


def test_repair_attaches_only_the_missing_policies(start_function, runtime, moto, iam):
    """Repair attaches Worker and Docker, reports them as Repaired and Healthy, and keeps the extra policy.
    The role is not the function's: the stack lists it in RepairableRoleArns."""
    start_function(deployment={"RepairableRoleArns": ROLE_ARN})
    out_of_date_default(iam)
    before = moto.iam_snapshot()

    report = repair(runtime)

    assert report["Action"] == "Repair"
    assert report["Repaired"] == sorted([WORKER, DOCKER])
    assert report["Verdict"] == "Healthy"
    assert report["MissingPolicies"] == []
    assert report["ExtraPolicies"] == [S3_READ]
    after = moto.iam_snapshot()
    assert after["roles"][DEFAULT]["managed_policies"] == sorted([WEB, WORKER, DOCKER, S3_READ])
    # Only the attachments changed: no tags, trust policy or profile changes.
    after["roles"][DEFAULT]["managed_policies"] = before["roles"][DEFAULT]["managed_policies"]
    assert after == before

    again = repair(runtime)
    assert again["Repaired"] == [] and again["Verdict"] == "Healthy"


@pytest.mark.parametrize("attached, verdict, missing, extra", [
    ([WEB, S3_READ], "Healthy", [], []),
    ([WEB], "NeedsRepair", [S3_READ], []),
    ([WEB, S3_READ, WORKER], "Healthy", [], [WORKER]),
], ids=["exact", "missing-s3", "extra-worker"])
def test_verify_expects_the_given_tiers_and_policies(function, runtime, iam, attached, verdict, missing, extra):
    """Tiers and ManagedPolicyArns (bare names accepted) replace the default expectation."""
    out_of_date_default(iam, policies=attached)

    report = verify(runtime, Tiers=["WebTier"], ManagedPolicyArns=["AmazonS3ReadOnlyAccess"])

    assert report["ExpectedPolicies"] == sorted([WEB, S3_READ])
    assert report["Verdict"] == verdict
    assert report["MissingPolicies"] == missing
    assert report["ExtraPolicies"] == extra


def test_verify_of_a_missing_profile_is_broken(function, runtime, moto):
    """No such profile: Broken, with the problem named and no ARNs."""
    report = verify(runtime, "no-such-profile")

    assert report["Verdict"] == "Broken"
    assert report["InstanceProfileArn"] is None and report["RoleName"] is None
    assert report["RoleArn"] is None and report["TrustPolicyAllowsEc2"] is False
    assert report["ExpectedPolicies"] == sorted([WEB, WORKER, DOCKER])
    assert any("no-such-profile" in p and "does not exist" in p for p in report["Problems"]), report
    assert repair(runtime, "no-such-profile")["Verdict"] == "Broken"
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_verify_of_an_empty_profile_is_broken(function, runtime, moto, iam):
    """A profile without a role: Broken ("holds no role"); Repair does not invent one."""
    make_profile(iam, DEFAULT)
    before = moto.iam_snapshot()

    report = verify(runtime)

    assert report["Verdict"] == "Broken"
    assert report["InstanceProfileArn"] == PROFILE_ARN and report["RoleName"] is None
    assert any("holds no role" in p for p in report["Problems"]), report
    assert repair(runtime)["Verdict"] == "Broken"
    assert moto.iam_snapshot() == before


def test_a_role_ec2_cannot_assume_is_broken_and_repair_changes_nothing(function, runtime, moto, iam):
    """A non-EC2 trust policy makes the profile Broken; Repair attaches nothing to such a role."""
    out_of_date_default(iam, policies=[WEB], trust=LAMBDA_TRUST)
    before = moto.iam_snapshot()

    report = verify(runtime)
    assert report["Verdict"] == "Broken"
    assert report["TrustPolicyAllowsEc2"] is False
    assert report["MissingPolicies"] == sorted([WORKER, DOCKER])
    assert any("trust policy" in p for p in report["Problems"]), report

    repaired = repair(runtime)
    assert repaired["Verdict"] == "Broken"
    assert repaired["Repaired"] == []
    assert moto.iam_snapshot() == before


def test_repair_of_a_role_outside_repairable_role_arns_is_denied_and_changes_nothing(
        function, runtime, moto, iam):
    """The execution role attaches to a role the function did not make only when RepairableRoleArns
    lists it: without that, IAM's AccessDenied names the action and nothing changes."""
    out_of_date_default(iam)
    before = moto.iam_snapshot()

    error = invoke_error(runtime, {"Action": "Repair", "InstanceProfileName": DEFAULT})

    assert "iam:AttachRolePolicy" in error["errorMessage"], error
    assert "AccessDenied" in error["errorMessage"], error
    assert moto.iam_snapshot() == before


def test_repair_refuses_policies_outside_the_allow_list_and_changes_nothing(start_function, runtime, moto, iam):
    """A missing policy that ALLOWED_POLICY_ARNS does not allow: invocation error, not even the allowed ones attached."""
    start_function({"ALLOWED_POLICY_ARNS": "arn:*:iam::aws:policy/AWSElasticBeanstalkWebTier"})
    out_of_date_default(iam, policies=[S3_READ])
    before = moto.iam_snapshot()

    # Verify only reads: it works whatever the allow-list says.
    assert verify(runtime)["MissingPolicies"] == sorted([WEB, WORKER, DOCKER])
    error = invoke_error(runtime, {"Action": "Repair", "InstanceProfileName": DEFAULT})

    assert "ALLOWED_POLICY_ARNS" in error["errorMessage"], error
    assert "AWSElasticBeanstalk" in error["errorMessage"], error
    assert moto.iam_snapshot() == before


def test_repair_of_a_requested_policy_outside_the_allow_list_is_refused(function, runtime, moto, iam):
    """Expected ManagedPolicyArns that the allow-list does not name are never attached by Repair."""
    out_of_date_default(iam, policies=[WEB, WORKER, DOCKER])
    before = moto.iam_snapshot()

    error = invoke_error(runtime, {"Action": "Repair", "InstanceProfileName": DEFAULT,
                                   "ManagedPolicyArns": ["IAMFullAccess"]})

    assert "arn:aws:iam::aws:policy/IAMFullAccess" in error["errorMessage"], error
    assert "ALLOWED_POLICY_ARNS" in error["errorMessage"], error
    assert moto.iam_snapshot() == before


# --- invalid requests ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload, named", [
    ({"Action": "Delete", "InstanceProfileName": DEFAULT}, "Delete"),
    ({"Action": "verify", "InstanceProfileName": DEFAULT}, "verify"),
    ({"Action": "Verify"}, "InstanceProfileName"),
    ({"Action": "Verify", "InstanceProfileName": DEFAULT, "RoleName": "x"}, "RoleName"),
    ({"Action": "Repair", "InstanceProfile": DEFAULT}, "InstanceProfile"),
    ({"Action": "Verify", "InstanceProfileName": "not a valid name!"}, "InstanceProfileName"),
    ({"Action": "Verify", "InstanceProfileName": ""}, "InstanceProfileName"),
    ({"Action": "Verify", "InstanceProfileName": "p" * 129}, "InstanceProfileName"),
    ({"Action": "Verify", "InstanceProfileName": 7}, "InstanceProfileName"),
    ({"Action": "Verify", "InstanceProfileName": DEFAULT, "Tiers": ["Frontend"]}, "Frontend"),
    ({"Action": "Verify", "InstanceProfileName": DEFAULT, "ManagedPolicyArns": ["arn:aws:s3:::b"]},
     "ManagedPolicyArns"),
], ids=["unknown-action", "lowercase-action", "no-name", "unknown-field", "misspelt-field",
        "invalid-name", "empty-name", "long-name", "name-not-string", "unknown-tier", "not-a-policy"])
def test_an_invalid_request_is_an_invocation_error_naming_the_problem(function, runtime, moto, iam, payload, named):
    """Invalid direct requests fail the invocation with a message naming what is wrong; nothing changes."""
    out_of_date_default(iam)
    before = moto.iam_snapshot()

    error = invoke_error(runtime, payload)

    assert error["errorType"] == "InvalidRequest", error
    assert named in error["errorMessage"], error
    assert moto.iam_snapshot() == before


def test_a_cloudformation_request_carrying_an_action_key_is_answered_as_cloudformation(cfn, moto):
    """An event with RequestType is a CloudFormation request even if it also carries an Action key."""
    result, response = cfn.send("Create", {"InstanceProfileName": "p", "Tiers": ["WebTier"]})
    succeeded(response, result)
    event = dict(cfn.last_event, Action="Verify")
    url, key = cfn.response_url()
    event["ResponseURL"] = url
    result, response = cfn.send_event(event, key)
    assert result.kind == "response", result
    # The duplicate Create converges on the same profile.
    assert succeeded(response, result)["PhysicalResourceId"] == "p"
    assert moto.iam_snapshot()["roles"]["p"]["managed_policies"] == [WEB]
