"""Invalid resource properties are refused before IAM is touched.

moto accepts much that IAM rejects (see NOTES.md), so every rule in src/spec.rs must
be enforced by the function itself: the Create answers FAILED with a Reason that names
the offending property, still carries a PhysicalResourceId (the rollback Delete needs
one), and leaves IAM exactly as it was.
"""

from __future__ import annotations

import json
import re

import pytest

DOC = {"Version": "2012-10-17",
       "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}


def big_doc(chars: int) -> dict:
    """A valid policy document of roughly `chars` characters."""
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                           "Resource": "arn:aws:s3:::" + "b" * chars}]}


def tag(key, value="v") -> dict:
    return {"Key": key, "Value": value}


def names_property(reason: str, prop: str) -> bool:
    """True when `prop` appears in `reason` as a whole property path: "Tags" does not
    count as naming "Tags[1]", nor "InlinePolicies" as naming "InlinePolicies.p"."""
    return re.search(rf"(?<![\w.\[]){re.escape(prop)}(?![\w.\[])", reason) is not None


def case(case_id: str, props: dict, prop: str, *, stringify: bool = True,
         reason_has: str | None = None):
    return pytest.param(props, prop, stringify, reason_has, id=case_id)


INVALID_CREATES = [
    case("unknown-property", {"Tier": ["WebTier"]}, "Tier", reason_has="unknown property"),
    # InstanceProfileName: 1-128 of [\w+=,.@-]
    case("profile-name-empty", {"InstanceProfileName": ""}, "InstanceProfileName"),
    case("profile-name-129", {"InstanceProfileName": "p" * 129}, "InstanceProfileName"),
    case("profile-name-bad-char", {"InstanceProfileName": "a b"}, "InstanceProfileName"),
    case("profile-name-not-string", {"InstanceProfileName": 5}, "InstanceProfileName",
         stringify=False, reason_has="string"),
    # RoleName: 1-64 of [\w+=,.@-]
    case("role-name-65", {"RoleName": "r" * 65}, "RoleName"),
    case("role-name-bad-char", {"RoleName": "r/x"}, "RoleName"),
    # Path: "/" or "/a/b/", at most 512
    case("path-without-slashes", {"Path": "eb"}, "Path"),
    case("path-double-slash", {"Path": "/a//b/"}, "Path"),
    case("path-over-512", {"Path": "/" + "a" * 600 + "/"}, "Path"),
    # Tiers
    case("tiers-unknown-name", {"Tiers": ["WebTier", "Database"]}, "Tiers", reason_has="Database"),
    case("tiers-element-not-string", {"Tiers": [1]}, "Tiers[0]", stringify=False),
    case("tiers-an-object", {"Tiers": {"a": "1"}}, "Tiers"),
    # ManagedPolicyArns
    case("policy-wrong-partition", {"ManagedPolicyArns": ["arn:aws-cn:iam::aws:policy/ReadOnlyAccess"]},
         "ManagedPolicyArns", reason_has="partition"),
    case("policy-not-iam-arn", {"ManagedPolicyArns": ["arn:aws:s3:::bucket"]}, "ManagedPolicyArns"),
    case("policy-bad-account", {"ManagedPolicyArns": ["arn:aws:iam::12345:policy/X"]},
         "ManagedPolicyArns", reason_has="account"),
    case("policy-bad-name", {"ManagedPolicyArns": ["arn:aws:iam::aws:policy/bad name"]},
         "ManagedPolicyArns"),
    case("policy-not-allowed", {"ManagedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]},
         "ManagedPolicyArns", reason_has="ALLOWED_POLICY_ARNS"),
    case("bare-policy-not-allowed", {"ManagedPolicyArns": ["AdministratorAccess"]},
         "ManagedPolicyArns", reason_has="arn:aws:iam::aws:policy/AdministratorAccess"),
    # InlinePolicies
    case("inline-not-a-map", {"InlinePolicies": ["x"]}, "InlinePolicies"),
    case("inline-bad-name", {"InlinePolicies": {"bad name": DOC}}, "InlinePolicies.bad name"),
    case("inline-invalid-json", {"InlinePolicies": {"p": "{not json"}}, "InlinePolicies.p"),
    case("inline-without-statement", {"InlinePolicies": {"p": {"Version": "2012-10-17"}}},
         "InlinePolicies.p"),
    # Each document alone is fine; together they exceed IAM's 10,240 characters per role.
    case("inline-total-over-10240",
         {"InlinePolicies": {"a": big_doc(5_300), "b": big_doc(5_300)}}, "InlinePolicies",
         reason_has="10240"),
    # PermissionsBoundary
    case("boundary-not-an-arn", {"PermissionsBoundary": "Boundary"}, "PermissionsBoundary"),
    # Description
    case("description-over-1000", {"Description": "d" * 1001}, "Description"),
    case("description-emoji", {"Description": "emoji \U0001F600"}, "Description"),
    # MaxSessionDuration: 3600-43200
    case("session-3599", {"MaxSessionDuration": "3599"}, "MaxSessionDuration"),
    case("session-43201", {"MaxSessionDuration": "43201"}, "MaxSessionDuration"),
    case("session-an-hour", {"MaxSessionDuration": "an hour"}, "MaxSessionDuration"),
    # Tags
    case("tags-not-a-list", {"Tags": {"a": "b"}}, "Tags"),
    case("tag-without-value", {"Tags": [tag("ok"), {"Key": "k"}]}, "Tags[1]"),
    case("tag-empty-key", {"Tags": [tag("")]}, "Tags[0]"),
    case("tag-key-129", {"Tags": [tag("k" * 129)]}, "Tags[0]"),
    case("tag-value-257", {"Tags": [tag("k", "v" * 257)]}, "Tags[0]"),
    case("tag-value-semicolon", {"Tags": [tag("k", "semi;colon")]}, "Tags[0]"),
    case("tag-key-aws-prefix", {"Tags": [tag("aws:x")]}, "Tags[0]"),
    case("tag-key-reserved-prefix", {"Tags": [tag("eb-instance-profile:x")]}, "Tags[0]"),
    case("tag-keys-differ-by-case", {"Tags": [tag("Team", "a"), tag("team", "b")]}, "Tags[1]"),
    case("tags-47", {"Tags": [tag(f"k{i}") for i in range(47)]}, "Tags"),
]


@pytest.mark.parametrize(("props", "prop", "stringify", "reason_has"), INVALID_CREATES)
def test_invalid_create_fails_naming_the_property_and_changes_nothing(
        cfn, moto, props, prop, stringify, reason_has):
    """A Create with one invalid property answers FAILED naming that property, with a
    PhysicalResourceId, and creates nothing in IAM."""
    before = moto.iam_snapshot()
    result, response = cfn.send("Create", props, stringify=stringify)

    assert response is not None, f"no response PUT; invocation {result}"
    assert response["Status"] == "FAILED", response
    assert names_property(response["Reason"], prop), response["Reason"]
    if reason_has:
        assert reason_has in response["Reason"]
    assert isinstance(response["PhysicalResourceId"], str) and response["PhysicalResourceId"]
    assert moto.iam_snapshot() == before


def test_tiers_refused_by_a_restrictive_allow_list(start_function, cfn, moto):
    """The default Tiers (all three) attach policies an operator may not allow: the
    refusal names Tiers, not ManagedPolicyArns, and points at ALLOWED_POLICY_ARNS."""
    start_function({"ALLOWED_POLICY_ARNS": "arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier"})
    before = moto.iam_snapshot()

    result, response = cfn.send("Create", {"InstanceProfileName": "restricted"})

    assert response is not None, f"no response PUT; invocation {result}"
    assert response["Status"] == "FAILED", response
    assert names_property(response["Reason"], "Tiers"), response["Reason"]
    assert "ALLOWED_POLICY_ARNS" in response["Reason"]
    assert response["PhysicalResourceId"]
    assert moto.iam_snapshot() == before


def test_stack_id_that_is_not_an_arn_fails(cfn, moto):
    """The partition comes from the StackId ARN; a StackId that is no ARN is named as
    the problem instead of guessing a partition."""
    before = moto.iam_snapshot()
    result, response = cfn.send("Create", {"InstanceProfileName": "p"}, stack_id="not-an-arn")

    assert response is not None, f"no response PUT; invocation {result}"
    assert response["Status"] == "FAILED", response
    assert names_property(response["Reason"], "StackId"), response["Reason"]
    assert response["StackId"] == "not-an-arn"
    assert response["PhysicalResourceId"]
    assert moto.iam_snapshot() == before


def test_max_session_duration_as_a_string_is_accepted(cfn, moto):
    """CloudFormation sends 7200 as "7200"; the string form is a valid duration."""
    result, response = cfn.send("Create", {"InstanceProfileName": "session",
                                           "Tiers": ["WebTier"], "MaxSessionDuration": 7200})
    assert cfn.last_event["ResourceProperties"]["MaxSessionDuration"] == "7200"

    assert response is not None, f"no response PUT; invocation {result}"
    assert response["Status"] == "SUCCESS", response
    role = moto.iam_snapshot()["roles"]["session"]
    assert role["max_session_duration"] == 7200


def test_bare_managed_policy_name_becomes_an_aws_policy_arn(cfn, moto):
    """A ManagedPolicyArns entry without "arn:" is an AWS managed policy of the stack's
    partition: "ReadOnlyAccess" attaches arn:aws:iam::aws:policy/ReadOnlyAccess."""
    result, response = cfn.send("Create", {"InstanceProfileName": "bare", "Tiers": ["WebTier"],
                                           "ManagedPolicyArns": ["ReadOnlyAccess"]})

    assert response is not None, f"no response PUT; invocation {result}"
    assert response["Status"] == "SUCCESS", response
    assert moto.iam_snapshot()["roles"]["bare"]["managed_policies"] == [
        "arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier",
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
    ]


VALID = {"InstanceProfileName": "upd-profile", "Tiers": ["WebTier"],
         "MaxSessionDuration": 3600, "Tags": [tag("team", "web")]}


@pytest.mark.parametrize(("changes", "prop"), [
    pytest.param({"MaxSessionDuration": "99"}, "MaxSessionDuration", id="session-too-short"),
    pytest.param({"Tags": [tag("team", "web"), tag("aws:owner")]}, "Tags[1]", id="reserved-tag"),
    pytest.param({"ManagedPolicyArns": ["AdministratorAccess"]}, "ManagedPolicyArns",
                 id="policy-not-allowed"),
    # A new name would mean replacement; an invalid one must stop before anything is made.
    pytest.param({"InstanceProfileName": "a b"}, "InstanceProfileName", id="invalid-new-name"),
    # 47 fit only a profile made before the request-id tag: this one carries it (51 in all).
    pytest.param({"Tags": [tag(f"k{i}") for i in range(47)]}, "Tags", id="tags-47"),
    pytest.param({"Tags": [tag(f"k{i}") for i in range(48)]}, "Tags", id="tags-48"),
    pytest.param({"InstanceProfileName": "upd-new", "Tags": [tag(f"k{i}") for i in range(47)]}, "Tags",
                 id="tags-47-replacement"),
])
def test_invalid_update_fails_and_keeps_the_resource(cfn, moto, changes, prop):
    """An Update with invalid new properties answers FAILED naming the property, keeps
    the old PhysicalResourceId (no replacement) and leaves IAM as the Create made it."""
    _, created = cfn.send("Create", VALID)
    assert created is not None and created["Status"] == "SUCCESS", created
    after_create = moto.iam_snapshot()
    assert "upd-profile" in after_create["instance_profiles"]

    result, response = cfn.send("Update", {**VALID, **changes},
                                physical_id=created["PhysicalResourceId"], old_properties=VALID)

    assert response is not None, f"no response PUT; invocation {result}"
    assert response["Status"] == "FAILED", response
    assert names_property(response["Reason"], prop), response["Reason"]
    assert response["PhysicalResourceId"] == created["PhysicalResourceId"]
    assert moto.iam_snapshot() == after_create


def test_names_property_helper():
    """The matcher the tests above rely on tells property paths apart."""
    reason = "invalid property Tags[1]: Key \"team\" appears twice"
    assert names_property(reason, "Tags[1]")
    assert not names_property(reason, "Tags")
    assert not names_property("invalid property InlinePolicies.p: x", "InlinePolicies")
    assert names_property("invalid property InlinePolicies.p: x", "InlinePolicies.p")
    assert not names_property("invalid property Tiers: x", "Tier")
    # Each of the two documents of inline-total-over-10240 fits alone; together they do not.
    compact = len(json.dumps(big_doc(5_300), separators=(",", ":")))
    assert compact < 10_240 < 2 * compact
