"""Create, Update and Delete end to end: the real binary over the Lambda Runtime API, against moto,
reading both the response CloudFormation would get and the IAM state that results."""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid

import pytest

from faults import access_denied
from local.events import DEFAULT_STACK_ID, make_event

WEB = "arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier"
WORKER = "arn:aws:iam::aws:policy/AWSElasticBeanstalkWorkerTier"
DOCKER = "arn:aws:iam::aws:policy/AWSElasticBeanstalkMulticontainerDocker"
S3_READ = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
OWNER_TAGS = {
    "eb-instance-profile:stack-id": DEFAULT_STACK_ID,
    "eb-instance-profile:logical-id": "Profile",
}
DOC = {"Version": "2012-10-17",
       "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]}


def succeeded(response, result=None):
    assert response is not None, f"no response delivered: {result}"
    assert response["Status"] == "SUCCESS", response
    return response


def failed(response, result=None):
    assert response is not None, f"no response delivered: {result}"
    assert response["Status"] == "FAILED", response
    assert response["PhysicalResourceId"], response
    assert isinstance(response["Reason"], str) and response["Reason"], response
    return response


def create(cfn, props, **kw):
    result, response = cfn.send("Create", props, **kw)
    return succeeded(response, result)


def update(cfn, physical_id, props, old, **kw):
    return cfn.send("Update", props, physical_id=physical_id, old_properties=old, **kw)


def delete(cfn, physical_id, props=None, **kw):
    return cfn.send("Delete", props or {}, physical_id=physical_id, **kw)


def foreign_role(iam, name, tags=None):
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(DOC | {"Statement": []}),
                    Tags=[{"Key": k, "Value": v} for k, v in (tags or {"owner": "someone"}).items()])
    iam.attach_role_policy(RoleName=name, PolicyArn=WEB)


MISSING_POLICY = "arn:aws:iam::123456789012:policy/DoesNotExist"


@pytest.fixture
def attach_fails(start_function):
    """A function allowed to attach this account's policies: one that does not exist passes
    validation and makes AttachRolePolicy fail after the role and profile were made."""
    return start_function({"ALLOWED_POLICY_ARNS": "arn:*:iam::aws:policy/AWSElasticBeanstalk*,"
                                                  "arn:aws:iam::123456789012:policy/*"})


# --- Create -----------------------------------------------------------------------------------

def test_create_makes_role_profile_and_policies_and_reports_them(cfn, moto):
    """The README example: two tiers and an extra managed policy, generated names."""
    response = create(cfn, {"Tiers": ["WebTier", "WorkerTier"], "ManagedPolicyArns": [S3_READ]})
    name = response["PhysicalResourceId"]
    assert re.fullmatch(r"demo-stack-Profile-[0-9a-f]{12}", name), name

    state = moto.iam_snapshot()
    assert state["instance_profiles"][name]["roles"] == [name]
    role = state["roles"][name]
    assert role["managed_policies"] == sorted([WEB, WORKER, S3_READ])
    trust = role["assume_role_policy"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert trust["Statement"][0]["Action"] == "sts:AssumeRole"
    assert OWNER_TAGS.items() <= role["tags"].items()
    assert OWNER_TAGS.items() <= state["instance_profiles"][name]["tags"].items()
    assert state["instance_profiles"][name]["tags"]["eb-instance-profile:role-name"] == name

    data = response["Data"]
    profile_arn = f"arn:aws:iam::123456789012:instance-profile/eb-instance-profile/{name}"
    assert data == {
        "Arn": profile_arn,
        "InstanceProfileName": name,
        "InstanceProfileArn": profile_arn,
        "RoleName": name,
        "RoleArn": f"arn:aws:iam::123456789012:role/eb-instance-profile/{name}",
        "ManagedPolicyArns": ",".join(sorted([WEB, WORKER, S3_READ])),
    }


def test_create_defaults_to_all_three_tiers(cfn, moto):
    name = create(cfn, {})["PhysicalResourceId"]
    assert moto.iam_snapshot()["roles"][name]["managed_policies"] == sorted([WEB, WORKER, DOCKER])


def test_create_applies_every_property(cfn, moto, iam):
    boundary = iam.create_policy(PolicyName="Boundary", PolicyDocument=json.dumps(DOC))["Policy"]["Arn"]
    response = create(cfn, {
        "InstanceProfileName": "web-profile",
        "RoleName": "web-role",
        "Path": "/eb/web/",
        "Tiers": ["WebTier"],
        "InlinePolicies": {"read-bucket": DOC, "as-text": json.dumps(DOC)},
        "PermissionsBoundary": boundary,
        "Description": "web servers",
        "MaxSessionDuration": 7200,
        "Tags": [{"Key": "team", "Value": "web"}],
    })
    assert response["PhysicalResourceId"] == "web-profile"
    assert response["Data"]["RoleName"] == "web-role"
    assert response["Data"]["RoleArn"] == "arn:aws:iam::123456789012:role/eb-instance-profile/eb/web/web-role"
    state = moto.iam_snapshot()
    role = state["roles"]["web-role"]
    assert role["path"] == "/eb-instance-profile/eb/web/"
    assert role["managed_policies"] == [WEB]
    assert set(role["inline_policies"]) == {"read-bucket", "as-text"}
    assert role["permissions_boundary"] == boundary
    assert role["description"] == "web servers"
    assert role["max_session_duration"] == 7200
    assert role["tags"]["team"] == "web"
    profile = state["instance_profiles"]["web-profile"]
    assert profile["path"] == "/eb-instance-profile/eb/web/"
    assert profile["roles"] == ["web-role"]
    assert profile["tags"]["team"] == "web"


def test_a_long_profile_name_gets_a_role_name_of_its_own(cfn, moto):
    """Roles allow 64 characters, profiles 128: the role gets the profile name's start and a
    digest of the whole name, the same whichever request makes it."""
    long_name = "p" * 100
    response = create(cfn, {"InstanceProfileName": long_name})
    role = response["Data"]["RoleName"]
    assert response["PhysicalResourceId"] == long_name
    assert re.fullmatch(r"p{51}-[0-9a-f]{12}", role), role
    assert moto.iam_snapshot()["instance_profiles"][long_name]["roles"] == [role]


def test_a_failed_create_with_a_long_profile_name_leaves_no_role_after_its_rollback(
        start_function, proxy, cfn, moto):
    """CreateInstanceProfile is refused after CreateRole made the role: no profile exists to name
    the role in a tag, and the rollback Delete knows only the PhysicalResourceId. The role's name
    follows from it, so the Delete finds the role and removes it."""
    long_name = "q" * 100
    proxy.hooks.append(lambda r: access_denied(r.action) if r.action == "CreateInstanceProfile" else None)
    start_function(iam_proxy=proxy)
    result, response = cfn.send("Create", {"InstanceProfileName": long_name})
    failed(response, result)
    assert "iam:CreateInstanceProfile" in response["Reason"] and "AccessDenied" in response["Reason"]
    assert response["PhysicalResourceId"] == long_name
    assert len(moto.iam_snapshot()["roles"]) == 1  # left for the rollback Delete

    proxy.hooks.clear()
    succeeded(delete(cfn, long_name, {"InstanceProfileName": long_name})[1])
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_a_repeated_create_converges_on_the_same_entities(cfn, moto):
    """Lambda retries and CloudFormation may deliver twice: same RequestId, same result."""
    request_id = str(uuid.uuid4())
    first = create(cfn, {"Tiers": ["WebTier"]}, request_id=request_id)
    after_first = moto.iam_snapshot()
    second = create(cfn, {"Tiers": ["WebTier"]}, request_id=request_id)
    assert second["PhysicalResourceId"] == first["PhysicalResourceId"]
    assert second["Data"] == first["Data"]
    assert moto.iam_snapshot() == after_first
    assert len(after_first["roles"]) == 1 and len(after_first["instance_profiles"]) == 1


def test_a_repeated_create_completes_what_the_first_left_half_done(cfn, moto, iam):
    """The first delivery died after making the role: the second finishes the job."""
    request_id = str(uuid.uuid4())
    iam.create_role(RoleName="half-done", AssumeRolePolicyDocument="{}", Path="/eb-instance-profile/",
                    Tags=[{"Key": k, "Value": v} for k, v in OWNER_TAGS.items()])
    response = create(cfn, {"InstanceProfileName": "half-done", "Tiers": ["WebTier"]},
                      request_id=request_id)
    assert response["PhysicalResourceId"] == "half-done"
    state = moto.iam_snapshot()
    assert state["roles"]["half-done"]["managed_policies"] == [WEB]
    assert state["instance_profiles"]["half-done"]["roles"] == ["half-done"]


def test_create_refuses_a_role_it_does_not_own_and_changes_nothing(cfn, moto, iam):
    foreign_role(iam, "taken")
    before = moto.iam_snapshot()
    result, response = cfn.send("Create", {"InstanceProfileName": "taken", "Tiers": ["WorkerTier"]})
    failed(response, result)
    assert "Role taken" in response["Reason"] and "does not belong" in response["Reason"]
    assert moto.iam_snapshot() == before


def test_create_refuses_a_profile_it_does_not_own_and_changes_nothing(cfn, moto, iam):
    iam.create_instance_profile(InstanceProfileName="shared")
    before = moto.iam_snapshot()
    result, response = cfn.send("Create", {"InstanceProfileName": "shared", "RoleName": "mine"})
    failed(response, result)
    assert "Instance profile shared" in response["Reason"]
    assert moto.iam_snapshot() == before


def test_entities_of_another_logical_resource_are_not_owned(cfn, moto, iam):
    iam.create_role(RoleName="sibling", AssumeRolePolicyDocument="{}", Tags=[
        {"Key": "eb-instance-profile:stack-id", "Value": DEFAULT_STACK_ID},
        {"Key": "eb-instance-profile:logical-id", "Value": "OtherProfile"},
    ])
    before = moto.iam_snapshot()
    result, response = cfn.send("Create", {"InstanceProfileName": "sibling"})
    failed(response, result)
    assert moto.iam_snapshot() == before


def test_a_failed_create_leaves_what_it_made_to_the_rollback_delete(start_function, proxy, cfn, moto):
    """IAM refuses AttachRolePolicy after the role and profile exist: the Reason names the IAM
    action and code, the PhysicalResourceId names the profile, nothing is removed (a Create may
    have been answered SUCCESS by an earlier delivery), and the rollback Delete removes it all."""
    proxy.hooks.append(lambda r: access_denied(r.action) if r.action == "AttachRolePolicy" else None)
    start_function(iam_proxy=proxy)
    result, response = cfn.send("Create", {"InstanceProfileName": "doomed"})
    failed(response, result)
    assert "iam:AttachRolePolicy" in response["Reason"]
    assert "AccessDenied" in response["Reason"]
    assert "nothing was removed" in response["Reason"]
    assert response["PhysicalResourceId"] == "doomed"
    state = moto.iam_snapshot()
    assert set(state["roles"]) == {"doomed"} and set(state["instance_profiles"]) == {"doomed"}

    proxy.hooks.clear()
    _, deleted = delete(cfn, "doomed", {"InstanceProfileName": "doomed"})
    succeeded(deleted)
    assert deleted["PhysicalResourceId"] == "doomed"
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}



@pytest.mark.parametrize("request_id", ["r" * 300, 'req "quoted"\t\\ 7'], ids=["300-chars", "odd-chars"])
def test_a_request_id_no_tag_value_can_hold_still_names_what_its_request_made(
        start_function, cfn, moto, request_id):
    """A RequestId is whatever the sender chose; an IAM tag value holds at most 256 letters,
    digits, spaces and _.:/=+-@. The request-id tag then carries a digest of it: the Create
    succeeds, and a refused Create under the same RequestId still finds and removes what it made."""
    start_function({"ALLOWED_POLICY_ARNS": "arn:*:iam::aws:policy/AWSElasticBeanstalk*,"
                                           "arn:aws:iam::123456789012:policy/*"})
    create(cfn, {"InstanceProfileName": "odd"}, request_id=request_id)
    for entity in (moto.iam_snapshot()["roles"]["odd"], moto.iam_snapshot()["instance_profiles"]["odd"]):
        label, _mark = entity["tags"]["eb-instance-profile:request-id"].rsplit(" ", 1)
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", label), label

    result, response = cfn.send("Create", {
        "InstanceProfileName": "refused",
        "ManagedPolicyArns": ["arn:aws:iam::123456789012:policy/DoesNotExist"]},
        request_id=request_id, logical_id="Other")
    failed(response, result)
    assert "AttachRolePolicy" in response["Reason"], response["Reason"]
    state = moto.iam_snapshot()
    assert set(state["roles"]) == {"odd"} and set(state["instance_profiles"]) == {"odd"}, state

    succeeded(delete(cfn, "odd", {"InstanceProfileName": "odd"})[1])
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_a_resource_made_before_the_request_id_tag_keeps_its_47_tags(cfn, moto, iam):
    """Profiles made before the request-id tag carry three of the function's tags, and templates
    were allowed 47 Tags: such a resource's Updates go on with 47. One made now carries four, and
    the same Update answers FAILED naming Tags before it changes anything."""
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(47)]
    old = {"InstanceProfileName": "older", "Tiers": ["WebTier"], "Tags": tags[:46]}
    create(cfn, old)
    # As the earlier version left it: no request-id tag, and the template's 47th tag.
    for untag, tag, kind, name in ((iam.untag_role, iam.tag_role, "RoleName", "older"),
                                   (iam.untag_instance_profile, iam.tag_instance_profile,
                                    "InstanceProfileName", "older")):
        untag(**{kind: name, "TagKeys": ["eb-instance-profile:request-id"]})
        tag(**{kind: name, "Tags": tags[46:]})
    old = {**old, "Tags": tags}
    new = {**old, "Tiers": ["WebTier", "WorkerTier"]}

    result, response = cfn.send("Update", new, physical_id="older", old_properties=old)

    succeeded(response, result)
    state = moto.iam_snapshot()
    assert state["roles"]["older"]["managed_policies"] == sorted([WEB, WORKER])
    assert len(state["instance_profiles"]["older"]["tags"]) == 50

    # At 50, one tag swapped for another: the old one goes before the new one is set.
    swapped = {**new, "Tags": [*tags[1:], {"Key": "k47", "Value": "v"}]}
    result, response = cfn.send("Update", swapped, physical_id="older", old_properties=new)
    succeeded(response, result)
    profile_tags = moto.iam_snapshot()["instance_profiles"]["older"]["tags"]
    assert "k47" in profile_tags and "k0" not in profile_tags and len(profile_tags) == 50

    create(cfn, {**old, "InstanceProfileName": "newer", "Tags": tags[:46]}, logical_id="Newer")
    before = moto.iam_snapshot()
    result, response = cfn.send("Update", {**new, "InstanceProfileName": "newer"}, physical_id="newer",
                                old_properties={**old, "InstanceProfileName": "newer", "Tags": tags[:46]},
                                logical_id="Newer")
    failed(response, result)
    assert response["Reason"].startswith("Tags:") and "51 tags" in response["Reason"], response["Reason"]
    assert moto.iam_snapshot() == before

# --- Update in place --------------------------------------------------------------------------

def test_update_in_place_converges_every_property(cfn, moto, iam):
    old = {
        "InstanceProfileName": "app",
        "Tiers": ["WebTier", "WorkerTier"],
        "InlinePolicies": {"keep": DOC, "drop": DOC},
        "Tags": [{"Key": "team", "Value": "web"}, {"Key": "gone", "Value": "x"}],
    }
    create(cfn, old)
    iam.tag_role(RoleName="app", Tags=[{"Key": "added-by-someone", "Value": "y"}])
    new = {
        "InstanceProfileName": "app",
        "Tiers": ["WebTier", "MulticontainerDocker"],
        "ManagedPolicyArns": ["AmazonS3ReadOnlyAccess"],
        "InlinePolicies": {"keep": DOC | {"Statement": DOC["Statement"] * 2}},
        "Description": "changed",
        "MaxSessionDuration": "10800",
        "Tags": [{"Key": "team", "Value": "api"}],
    }
    result, response = update(cfn, "app", new, old)
    succeeded(response, result)
    assert response["PhysicalResourceId"] == "app"
    assert response["Data"]["ManagedPolicyArns"] == ",".join(sorted([WEB, DOCKER, S3_READ]))

    role = moto.iam_snapshot()["roles"]["app"]
    assert role["managed_policies"] == sorted([WEB, DOCKER, S3_READ])
    assert list(role["inline_policies"]) == ["keep"]
    assert len(role["inline_policies"]["keep"]["Statement"]) == 2
    assert role["description"] == "changed"
    assert role["max_session_duration"] == 10800
    assert role["tags"]["team"] == "api"
    assert "gone" not in role["tags"]
    # Not this resource's to remove.
    assert role["tags"]["added-by-someone"] == "y"
    profile = moto.iam_snapshot()["instance_profiles"]["app"]
    assert profile["tags"]["team"] == "api" and "gone" not in profile["tags"]


def test_update_reattaches_a_policy_detached_out_of_band_and_keeps_strangers(cfn, moto, iam):
    props = {"InstanceProfileName": "app", "Tiers": ["WebTier", "WorkerTier"]}
    create(cfn, props)
    iam.detach_role_policy(RoleName="app", PolicyArn=WORKER)
    iam.attach_role_policy(RoleName="app", PolicyArn=S3_READ)
    result, response = update(cfn, "app", props, props)
    succeeded(response, result)
    assert moto.iam_snapshot()["roles"]["app"]["managed_policies"] == sorted([WEB, WORKER, S3_READ])


def test_update_sets_and_removes_the_permissions_boundary(cfn, moto, iam):
    boundary = iam.create_policy(PolicyName="B", PolicyDocument=json.dumps(DOC))["Policy"]["Arn"]
    plain = {"InstanceProfileName": "app"}
    bounded = plain | {"PermissionsBoundary": boundary}
    create(cfn, plain)
    succeeded(update(cfn, "app", bounded, plain)[1])
    assert moto.iam_snapshot()["roles"]["app"]["permissions_boundary"] == boundary
    succeeded(update(cfn, "app", plain, bounded)[1])
    assert moto.iam_snapshot()["roles"]["app"]["permissions_boundary"] is None


def test_update_with_generated_names_keeps_them(cfn, moto):
    name = create(cfn, {"Tiers": ["WebTier"]})["PhysicalResourceId"]
    result, response = update(cfn, name, {"Tiers": ["WorkerTier"]}, {"Tiers": ["WebTier"]})
    succeeded(response, result)
    assert response["PhysicalResourceId"] == name
    state = moto.iam_snapshot()
    assert list(state["roles"]) == [name]
    assert state["roles"][name]["managed_policies"] == [WORKER]


def test_update_refuses_a_physical_id_it_does_not_own(cfn, moto, iam):
    iam.create_instance_profile(InstanceProfileName="victim")
    foreign_role(iam, "victim")
    iam.add_role_to_instance_profile(InstanceProfileName="victim", RoleName="victim")
    before = moto.iam_snapshot()
    result, response = update(cfn, "victim", {"Tiers": ["WorkerTier"]}, {"Tiers": ["WebTier"]})
    failed(response, result)
    assert response["PhysicalResourceId"] == "victim"
    assert "does not belong" in response["Reason"]
    assert moto.iam_snapshot() == before


def test_a_failed_update_is_undone_by_the_rollback_update(attach_fails, cfn, moto):
    """CloudFormation follows a failed Update with one that swaps old and new properties."""
    old = {"InstanceProfileName": "app", "Tiers": ["WebTier"]}
    new = old | {"Tiers": ["WorkerTier"],
                 "ManagedPolicyArns": [MISSING_POLICY]}
    create(cfn, old)
    after_create = moto.iam_snapshot()
    result, response = update(cfn, "app", new, old)
    failed(response, result)
    assert response["PhysicalResourceId"] == "app"
    assert "iam:AttachRolePolicy" in response["Reason"]
    result, response = update(cfn, "app", old, new)
    succeeded(response, result)
    assert moto.iam_snapshot() == after_create


# --- Update with replacement ------------------------------------------------------------------

def test_a_new_name_replaces_and_the_old_is_deleted_later(cfn, moto):
    old = {"InstanceProfileName": "app-v1", "Tiers": ["WebTier"]}
    new = {"InstanceProfileName": "app-v2", "Tiers": ["WebTier"]}
    create(cfn, old)
    result, response = update(cfn, "app-v1", new, old)
    succeeded(response, result)
    assert response["PhysicalResourceId"] == "app-v2"
    assert response["Data"]["RoleName"] == "app-v2"
    state = moto.iam_snapshot()
    assert set(state["instance_profiles"]) == {"app-v1", "app-v2"}
    assert state["instance_profiles"]["app-v2"]["roles"] == ["app-v2"]

    # UPDATE_COMPLETE_CLEANUP_IN_PROGRESS: Delete for the old id, with the old properties.
    _, deleted = delete(cfn, "app-v1", old)
    succeeded(deleted)
    state = moto.iam_snapshot()
    assert set(state["instance_profiles"]) == {"app-v2"}
    assert set(state["roles"]) == {"app-v2"}
    assert state["roles"]["app-v2"]["managed_policies"] == [WEB]


def test_a_path_change_with_generated_names_gets_new_names(cfn, moto):
    name = create(cfn, {})["PhysicalResourceId"]
    result, response = update(cfn, name, {"Path": "/eb/"}, {})
    succeeded(response, result)
    new_name = response["PhysicalResourceId"]
    assert new_name != name
    assert moto.iam_snapshot()["instance_profiles"][new_name]["path"] == "/eb-instance-profile/eb/"


@pytest.mark.parametrize("old, new, property_", [
    ({"InstanceProfileName": "app"}, {"InstanceProfileName": "app", "Path": "/eb/"}, "InstanceProfileName"),
    ({"InstanceProfileName": "app", "RoleName": "r"}, {"InstanceProfileName": "app2", "RoleName": "r"}, "RoleName"),
    ({"InstanceProfileName": "app", "RoleName": "r"}, {"InstanceProfileName": "app", "RoleName": "r2"}, "InstanceProfileName"),
], ids=["path-keeps-profile-name", "profile-renamed-role-kept", "role-renamed-profile-kept"])
def test_a_replacement_that_would_reuse_a_name_fails_and_changes_nothing(cfn, moto, old, new, property_):
    create(cfn, old)
    before = moto.iam_snapshot()
    result, response = update(cfn, "app", new, old)
    failed(response, result)
    assert response["PhysicalResourceId"] == "app"
    assert f"give {property_} a new value" in response["Reason"], response["Reason"]
    assert moto.iam_snapshot() == before


def test_a_failed_replacement_removes_only_what_it_made(attach_fails, cfn, moto):
    old = {"InstanceProfileName": "app-v1"}
    new = {"InstanceProfileName": "app-v2",
           "ManagedPolicyArns": [MISSING_POLICY]}
    create(cfn, old)
    before = moto.iam_snapshot()
    result, response = update(cfn, "app-v1", new, old)
    failed(response, result)
    assert response["PhysicalResourceId"] == "app-v1"
    assert moto.iam_snapshot() == before


# --- Delete -----------------------------------------------------------------------------------

def test_delete_removes_everything_and_a_second_delete_succeeds(cfn, moto):
    props = {"InstanceProfileName": "app", "ManagedPolicyArns": [S3_READ], "InlinePolicies": {"p": DOC}}
    create(cfn, props)
    for _ in range(2):
        result, response = delete(cfn, "app", props)
        succeeded(response, result)
        assert response["PhysicalResourceId"] == "app"
        assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_delete_finds_the_role_after_the_profile_was_emptied(cfn, moto, iam):
    create(cfn, {"InstanceProfileName": "app", "RoleName": "app-role"})
    iam.remove_role_from_instance_profile(InstanceProfileName="app", RoleName="app-role")
    succeeded(delete(cfn, "app", {})[1])
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_delete_finds_the_role_after_the_profile_was_deleted(cfn, moto, iam):
    create(cfn, {"InstanceProfileName": "app"})
    iam.remove_role_from_instance_profile(InstanceProfileName="app", RoleName="app")
    iam.delete_instance_profile(InstanceProfileName="app")
    succeeded(delete(cfn, "app", {})[1])
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


@pytest.mark.parametrize("physical_id", ["victim", "demo-stack-Profile-1A2B3C4D5E6F", "not/a/name", "x" * 300])
def test_delete_touches_nothing_it_does_not_own(cfn, moto, iam, physical_id):
    iam.create_instance_profile(InstanceProfileName="victim")
    foreign_role(iam, "victim")
    iam.add_role_to_instance_profile(InstanceProfileName="victim", RoleName="victim")
    before = moto.iam_snapshot()
    result, response = delete(cfn, physical_id, {"RoleName": "victim"})
    succeeded(response, result)
    assert response["PhysicalResourceId"] == physical_id
    assert moto.iam_snapshot() == before


def test_delete_of_another_stacks_resource_touches_nothing(cfn, moto):
    create(cfn, {"InstanceProfileName": "app"})
    before = moto.iam_snapshot()
    other_stack = DEFAULT_STACK_ID.replace("demo-stack", "other-stack")
    succeeded(delete(cfn, "app", {}, stack_id=other_stack)[1])
    assert moto.iam_snapshot() == before


# --- Never silent -----------------------------------------------------------------------------

@pytest.fixture
def silent_iam():
    """An IAM endpoint that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.parametrize("where", ["property", "top-level"])
def test_service_timeout_bounds_the_work_when_it_comes_first(start_function, cfn, moto, silent_iam, where):
    """CloudFormation fails the resource ServiceTimeout seconds after sending the request: with IAM
    hanging and the Lambda deadline far off, FAILED comes within ServiceTimeout, and says so."""
    url, accepted = silent_iam
    start_function({"AWS_ENDPOINT_URL_IAM": url})
    props = {"InstanceProfileName": "slow"}
    url_, key = cfn.response_url()
    event = make_event("Create", {**props, **({"ServiceTimeout": "3"} if where == "property" else {})},
                       response_url=url_)
    if where == "top-level":
        event["ServiceTimeout"] = 3
    result, response = cfn.send_event(event, key, timeout_s=120)
    assert accepted, "the function never called IAM"
    failed(response, result)
    assert "timed out" in response["Reason"] and "ServiceTimeout of 3 s" in response["Reason"], response
    assert response["PhysicalResourceId"] == "slow"


def test_when_iam_hangs_failed_arrives_before_the_deadline(start_function, cfn, moto, silent_iam):
    url, accepted = silent_iam
    start_function({"AWS_ENDPOINT_URL_IAM": url})
    result, response = cfn.send("Create", {"InstanceProfileName": "slow"}, timeout_s=6)
    assert accepted, "the function never called IAM"
    failed(response, result)
    assert "timed out" in response["Reason"]
    assert response["PhysicalResourceId"] == "slow"
    assert result.kind == "response", result
    assert result.elapsed_s < 6, result.elapsed_s


def test_a_tag_key_whose_case_changes_is_neither_duplicated_nor_dropped(cfn, moto):
    """IAM compares tag keys regardless of case: an Update that only changes `team` to `Team` keeps
    the one tag (a TagRole of `Team` then an UntagRole of `team` would leave none on IAM)."""
    old = {"InstanceProfileName": "cased", "Tags": [{"Key": "team", "Value": "web"}]}
    create(cfn, old)
    new = {"InstanceProfileName": "cased", "Tags": [{"Key": "Team", "Value": "web"}]}

    result, response = update(cfn, "cased", new, old)

    succeeded(response, result)
    for entity in (moto.iam_snapshot()["roles"]["cased"], moto.iam_snapshot()["instance_profiles"]["cased"]):
        team = {k: v for k, v in entity["tags"].items() if k.lower() == "team"}
        assert list(team.values()) == ["web"], entity["tags"]
