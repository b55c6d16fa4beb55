"""AdoptExisting and RepairTrustPolicy: taking over Elastic Beanstalk's default instance profile
(and others no resource owns), additively, and leaving it in place on Delete."""

from __future__ import annotations

import json
import uuid

import pytest

from faults import MutatingCalls, StaleOwnTags, access_denied, form_value
from helpers import (ACCOUNT, DOCKER, EC2_TRUST, LAMBDA_TRUST, S3_READ, TAG_ADOPTED, TAG_LOGICAL_ID,
                     TAG_STACK_ID, WEB, WORKER, failed, make_profile, make_role, own_tags,
                     own_tags_but_request, succeeded, tag_list, trust_document, trusted_services)
from local.events import DEFAULT_STACK_ID

DEFAULT = "aws-elasticbeanstalk-ec2-role"
DESCRIPTION = "Made by the Elastic Beanstalk console"
ADOPTED_TAGS = {TAG_STACK_ID: DEFAULT_STACK_ID, TAG_LOGICAL_ID: "Profile", TAG_ADOPTED: "true"}
ADOPT = {"InstanceProfileName": DEFAULT, "AdoptExisting": True}


@pytest.fixture
def deployment():
    """The function's stack is deployed with AllowAdoption: its execution role may take over
    entities no resource of the function made."""
    return {"AllowAdoption": "true"}


def default_profile(iam, *, trust=EC2_TRUST, policies=(WEB, S3_READ), profile=True,
                    profile_role: str | None = DEFAULT) -> None:
    """Elastic Beanstalk's default profile as the console leaves it: untagged, out of date
    (WebTier only, plus a policy the user added), a description and a longer session."""
    make_role(iam, DEFAULT, trust=trust, policies=policies, description=DESCRIPTION,
              max_session_duration=7200)
    if profile:
        make_profile(iam, DEFAULT, role=profile_role)


def create(cfn, props, **kw):
    result, response = cfn.send("Create", props, **kw)
    return succeeded(response, result)


def delete(cfn, physical_id, props=None, **kw):
    result, response = cfn.send("Delete", props or {}, physical_id=physical_id, **kw)
    return succeeded(response, result)


# --- adopting the default profile --------------------------------------------------------------

def test_adopting_the_default_profile_attaches_the_missing_policies_and_keeps_the_rest(cfn, moto, iam):
    """AdoptExisting brings the default profile up to date: missing EB policies attached, nothing removed."""
    default_profile(iam)
    trust_before = trust_document(moto.iam_snapshot()["roles"][DEFAULT])

    response = create(cfn, ADOPT)

    assert response["PhysicalResourceId"] == DEFAULT
    state = moto.iam_snapshot()
    role = state["roles"][DEFAULT]
    assert role["managed_policies"] == sorted([WEB, WORKER, DOCKER, S3_READ])
    assert role["description"] == DESCRIPTION
    assert role["max_session_duration"] == 7200
    assert trust_document(role) == trust_before
    assert own_tags_but_request(role["tags"]) == ADOPTED_TAGS
    profile = state["instance_profiles"][DEFAULT]
    assert profile["roles"] == [DEFAULT]
    assert ADOPTED_TAGS.items() <= profile["tags"].items()
    assert response["Data"]["RoleName"] == DEFAULT
    assert response["Data"]["InstanceProfileArn"] == \
        f"arn:aws:iam::123456789012:instance-profile/{DEFAULT}"
    assert response["Data"]["ManagedPolicyArns"] == ",".join(sorted([WEB, WORKER, DOCKER]))


def test_a_repeated_adopting_create_converges_on_the_same_state(cfn, moto, iam):
    """A second delivery of the adopting Create finds its own adopted entities and changes nothing."""
    default_profile(iam)
    request_id = str(uuid.uuid4())
    first = create(cfn, ADOPT, request_id=request_id)
    after_first = moto.iam_snapshot()
    second = create(cfn, ADOPT, request_id=request_id)
    assert second["PhysicalResourceId"] == first["PhysicalResourceId"]
    assert moto.iam_snapshot() == after_first


def test_delete_of_an_adopted_profile_leaves_it_with_its_policies_and_removes_only_own_tags(cfn, moto, iam):
    """Delete leaves adopted entities in place, with every policy, and takes back only its tags."""
    default_profile(iam)
    iam.tag_role(RoleName=DEFAULT, Tags=[{"Key": "team", "Value": "platform"}])
    physical_id = create(cfn, ADOPT)["PhysicalResourceId"]

    delete(cfn, physical_id, ADOPT)

    state = moto.iam_snapshot()
    role = state["roles"][DEFAULT]
    assert role["managed_policies"] == sorted([WEB, WORKER, DOCKER, S3_READ])
    assert role["description"] == DESCRIPTION
    assert role["tags"] == {"team": "platform"}
    profile = state["instance_profiles"][DEFAULT]
    assert profile["roles"] == [DEFAULT]
    assert profile["tags"] == {}


def test_without_adopt_existing_the_default_profile_is_refused_and_left_alone(cfn, moto, iam):
    """Without AdoptExisting an existing unowned profile fails the Create and its rollback deletes nothing."""
    default_profile(iam)
    before = moto.iam_snapshot()

    result, response = cfn.send("Create", {"InstanceProfileName": DEFAULT})

    failed(response, result)
    assert "does not belong" in response["Reason"] and "AdoptExisting" in response["Reason"]
    assert moto.iam_snapshot() == before
    # The rollback Delete CloudFormation sends next must not take the default profile either.
    delete(cfn, response["PhysicalResourceId"], {"InstanceProfileName": DEFAULT})
    assert moto.iam_snapshot() == before


# --- trust policy -------------------------------------------------------------------------------

@pytest.mark.parametrize("profile_exists", [True, False], ids=["with-profile", "role-only"])
def test_adopting_a_role_ec2_cannot_assume_fails_naming_repair_trust_policy(cfn, moto, iam, profile_exists):
    """A role whose trust policy excludes EC2 is not adopted unless RepairTrustPolicy is set; nothing changes."""
    default_profile(iam, trust=LAMBDA_TRUST, profile=profile_exists)
    before = moto.iam_snapshot()

    result, response = cfn.send("Create", ADOPT)

    failed(response, result)
    assert "RepairTrustPolicy" in response["Reason"], response["Reason"]
    assert DEFAULT in response["Reason"]
    assert moto.iam_snapshot() == before
    delete(cfn, response["PhysicalResourceId"], ADOPT)
    assert moto.iam_snapshot() == before


def test_repair_trust_policy_adds_ec2_and_keeps_the_other_principals(cfn, moto, iam):
    """With RepairTrustPolicy the EC2 statement is added to the adopted role's trust policy."""
    default_profile(iam, trust=LAMBDA_TRUST)

    create(cfn, {**ADOPT, "RepairTrustPolicy": True})

    role = moto.iam_snapshot()["roles"][DEFAULT]
    assert trusted_services(role) == {"ec2.amazonaws.com", "lambda.amazonaws.com"}
    assert role["managed_policies"] == sorted([WEB, WORKER, DOCKER, S3_READ])
    assert own_tags_but_request(role["tags"]) == ADOPTED_TAGS


# --- what is not adopted ------------------------------------------------------------------------

@pytest.mark.parametrize("role_exists", [True, False], ids=["role-exists", "role-absent"])
def test_an_adopted_profile_holding_another_role_fails_and_nothing_changes(cfn, moto, iam, role_exists):
    """A profile that holds a different role is reported ("holds role"), not emptied or taken."""
    make_role(iam, "someone-elses-role", policies=[S3_READ])
    make_profile(iam, DEFAULT, role="someone-elses-role")
    if role_exists:
        make_role(iam, DEFAULT, policies=[WEB])
    before = moto.iam_snapshot()

    result, response = cfn.send("Create", ADOPT)

    failed(response, result)
    assert "holds role someone-elses-role" in response["Reason"], response["Reason"]
    # A role this Create made for the purpose is removed again; an existing one is untouched.
    assert moto.iam_snapshot() == before


@pytest.mark.parametrize("entity", ["role", "profile"])
@pytest.mark.parametrize("owner", [
    {TAG_STACK_ID: "arn:aws:cloudformation:us-east-1:123456789012:stack/other-stack/1", TAG_LOGICAL_ID: "Profile"},
    {TAG_STACK_ID: DEFAULT_STACK_ID, TAG_LOGICAL_ID: "OtherProfile"},
], ids=["other-stack", "other-logical-id"])
def test_an_entity_owned_by_another_resource_is_never_adopted(cfn, moto, iam, entity, owner):
    """An entity carrying another resource's ownership tags fails the Create even with AdoptExisting."""
    make_role(iam, DEFAULT, policies=[WEB], tags=owner if entity == "role" else None)
    make_profile(iam, DEFAULT, role=DEFAULT, tags=owner if entity == "profile" else None)
    before = moto.iam_snapshot()

    result, response = cfn.send("Create", ADOPT)

    failed(response, result)
    assert "does not belong" in response["Reason"], response["Reason"]
    assert moto.iam_snapshot() == before
    delete(cfn, response["PhysicalResourceId"], ADOPT)
    assert moto.iam_snapshot() == before


# --- partial adoption ---------------------------------------------------------------------------

def test_adopting_only_a_role_creates_the_profile_and_delete_removes_only_that(cfn, moto, iam):
    """A role without a profile is adopted and a new profile made; Delete deletes the profile, keeps the role."""
    default_profile(iam, profile=False)

    physical_id = create(cfn, ADOPT)["PhysicalResourceId"]

    state = moto.iam_snapshot()
    assert state["instance_profiles"][DEFAULT]["roles"] == [DEFAULT]
    # The profile was made, not adopted: it carries no adopted mark.
    assert TAG_ADOPTED not in state["instance_profiles"][DEFAULT]["tags"]
    assert own_tags_but_request(state["roles"][DEFAULT]["tags"]) == ADOPTED_TAGS
    assert state["roles"][DEFAULT]["managed_policies"] == sorted([WEB, WORKER, DOCKER, S3_READ])

    delete(cfn, physical_id, ADOPT)

    state = moto.iam_snapshot()
    assert state["instance_profiles"] == {}
    role = state["roles"][DEFAULT]
    assert role["managed_policies"] == sorted([WEB, WORKER, DOCKER, S3_READ])
    assert role["description"] == DESCRIPTION
    assert own_tags(role["tags"]) == {}


@pytest.mark.parametrize("profile_exists", [True, False], ids=["both-adopted", "role-adopted"])
def test_the_delete_reason_claims_only_what_was_deleted(cfn, moto, iam, profile_exists):
    """Delete's Reason names as deleted exactly the entities that are gone, not adopted ones it kept."""
    default_profile(iam, profile=profile_exists)
    physical_id = create(cfn, ADOPT)["PhysicalResourceId"]

    reason = delete(cfn, physical_id, ADOPT).get("Reason", "")

    state = moto.iam_snapshot()
    # Entities are named by name, as in every Reason.
    claims_profile = f"deleted instance profile {DEFAULT}" in reason
    claims_role = f"deleted role {DEFAULT}" in reason
    # The adopted role always stays, and so does the profile when it was adopted too.
    assert "released adopted role" in reason, reason
    assert ("released adopted instance profile" in reason) == profile_exists, reason
    assert (claims_profile, claims_role) == \
        (DEFAULT not in state["instance_profiles"], DEFAULT not in state["roles"]), reason


def test_an_adopted_empty_profile_gets_the_role(cfn, moto, iam):
    """An existing empty profile is adopted and the role put into it."""
    default_profile(iam, profile_role=None)

    create(cfn, ADOPT)

    profile = moto.iam_snapshot()["instance_profiles"][DEFAULT]
    assert profile["roles"] == [DEFAULT]
    assert ADOPTED_TAGS.items() <= profile["tags"].items()


# --- Update -------------------------------------------------------------------------------------

def test_an_update_of_an_adopted_resource_that_drops_a_tier_detaches_nothing(cfn, moto, iam):
    """Updates of adopted entities are additive: a tier removed from the template stays attached."""
    default_profile(iam, policies=[WEB])
    old = {**ADOPT, "Tiers": ["WebTier", "WorkerTier"]}
    physical_id = create(cfn, old)["PhysicalResourceId"]
    assert moto.iam_snapshot()["roles"][DEFAULT]["managed_policies"] == sorted([WEB, WORKER])

    new = {**ADOPT, "Tiers": ["WebTier", "MulticontainerDocker"]}
    result, response = cfn.send("Update", new, physical_id=physical_id, old_properties=old)

    succeeded(response, result)
    assert response["PhysicalResourceId"] == physical_id
    state = moto.iam_snapshot()
    assert state["roles"][DEFAULT]["managed_policies"] == sorted([WEB, WORKER, DOCKER])
    assert state["instance_profiles"][DEFAULT]["roles"] == [DEFAULT]


def test_a_replacement_away_from_an_adopted_profile_leaves_it_in_place(cfn, moto, iam):
    """Replacing an adopted resource makes new entities; the cleanup Delete of the old id keeps the adopted ones."""
    default_profile(iam)
    old = dict(ADOPT)
    old_id = create(cfn, old)["PhysicalResourceId"]

    new = {"InstanceProfileName": "custom-eb-profile", "Tiers": ["WebTier"]}
    result, response = cfn.send("Update", new, physical_id=old_id, old_properties=old)
    succeeded(response, result)
    assert response["PhysicalResourceId"] == "custom-eb-profile"
    delete(cfn, old_id, old)

    state = moto.iam_snapshot()
    assert state["instance_profiles"]["custom-eb-profile"]["roles"] == ["custom-eb-profile"]
    assert state["roles"]["custom-eb-profile"]["managed_policies"] == [WEB]
    assert state["instance_profiles"][DEFAULT]["roles"] == [DEFAULT]
    assert state["instance_profiles"][DEFAULT]["tags"] == {}
    role = state["roles"][DEFAULT]
    assert role["managed_policies"] == sorted([WEB, WORKER, DOCKER, S3_READ])
    assert own_tags(role["tags"]) == {}


def test_a_role_made_for_an_adopted_empty_profile_is_deleted_and_the_profile_kept(cfn, moto, iam):
    """An adopted empty profile gets a new role; Delete removes and deletes that role and keeps the profile."""
    make_profile(iam, DEFAULT, tags={"team": "platform"})
    physical_id = create(cfn, {**ADOPT, "Tiers": ["WebTier"]})["PhysicalResourceId"]
    state = moto.iam_snapshot()
    assert state["instance_profiles"][DEFAULT]["roles"] == [DEFAULT]
    assert TAG_ADOPTED not in state["roles"][DEFAULT]["tags"]

    delete(cfn, physical_id, ADOPT)

    state = moto.iam_snapshot()
    assert state["roles"] == {}
    assert state["instance_profiles"] == {DEFAULT: {"path": "/", "tags": {"team": "platform"}, "roles": []}}


def test_adopt_existing_with_nothing_to_adopt_creates_and_delete_removes_everything(cfn, moto):
    """AdoptExisting with no existing entities creates owned (not adopted) ones that Delete removes."""
    physical_id = create(cfn, ADOPT)["PhysicalResourceId"]
    state = moto.iam_snapshot()
    assert TAG_ADOPTED not in state["roles"][DEFAULT]["tags"]
    assert TAG_ADOPTED not in state["instance_profiles"][DEFAULT]["tags"]

    delete(cfn, physical_id, ADOPT)

    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_a_failed_adoption_releases_the_entities_and_removes_nothing(start_function, cfn, moto, iam):
    """An adopting Create that fails after tagging takes its tags back; nothing that was there is removed."""
    start_function({"ALLOWED_POLICY_ARNS": "arn:*:iam::aws:policy/AWSElasticBeanstalk*,"
                                           "arn:aws:iam::123456789012:policy/*"})
    default_profile(iam)

    result, response = cfn.send("Create", {
        **ADOPT, "ManagedPolicyArns": ["arn:aws:iam::123456789012:policy/DoesNotExist"]})

    failed(response, result)
    assert "AttachRolePolicy" in response["Reason"], response["Reason"]
    state = moto.iam_snapshot()
    role = state["roles"][DEFAULT]
    assert {WEB, S3_READ} <= set(role["managed_policies"])
    assert role["description"] == DESCRIPTION
    assert own_tags(role["tags"]) == {}
    assert state["instance_profiles"][DEFAULT] == {"path": "/", "tags": {}, "roles": [DEFAULT]}


def test_an_adopted_role_keeps_its_description_and_session_duration_through_create_and_update(cfn, moto, iam):
    """Left out of the template, Description and MaxSessionDuration stay the adopted role's own; an
    Update that asks for others answers FAILED naming the property and changes nothing."""
    default_profile(iam)
    physical_id = create(cfn, ADOPT)["PhysicalResourceId"]
    role = moto.iam_snapshot()["roles"][DEFAULT]
    assert (role["description"], role["max_session_duration"]) == (DESCRIPTION, 7200)
    before = moto.iam_snapshot()

    for prop, value in [("Description", "changed"), ("MaxSessionDuration", "43200")]:
        new = {**ADOPT, prop: value}
        result, response = cfn.send("Update", new, physical_id=physical_id, old_properties=ADOPT)

        failed(response, result)
        assert response["Reason"].startswith(f"{prop}:"), response["Reason"]
        assert response["PhysicalResourceId"] == physical_id
        assert moto.iam_snapshot() == before


# --- what an adopted role has is never changed ----------------------------------------------

BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/eb-boundary"
APP_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::app-data/*"}]}
SHARED_TAGS = {"team": "platform", "cost-center": "4711"}
# Calls that would change the adopted role or profile (or take them over).
ADOPTING_CALLS = {"TagRole", "TagInstanceProfile", "PutRolePolicy", "AttachRolePolicy", "UpdateRole",
                  "UpdateAssumeRolePolicy", "PutRolePermissionsBoundary", "AddRoleToInstanceProfile"}


def shared_role(iam, *, profile: bool = True, more_tags: int = 0) -> None:
    """The default profile as a team that shares it left it: besides what `default_profile` gives
    it, a permissions boundary, an inline policy `app` and tags (`more_tags` more of them)."""
    iam.create_policy(PolicyName="eb-boundary", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    default_profile(iam, profile=profile)
    iam.put_role_permissions_boundary(RoleName=DEFAULT, PermissionsBoundary=BOUNDARY)
    iam.put_role_policy(RoleName=DEFAULT, PolicyName="app", PolicyDocument=json.dumps(APP_POLICY))
    tags = {**SHARED_TAGS, **{f"extra-{i}": "x" for i in range(more_tags)}}
    items = list(tags.items())
    for start in range(0, len(items), 40):
        iam.tag_role(RoleName=DEFAULT, Tags=tag_list(dict(items[start:start + 40])))


def with_action(action: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": action, "Resource": "arn:aws:s3:::app-data/*"}]}


@pytest.mark.parametrize("profile_exists", [True, False], ids=["with-profile", "role-only"])
@pytest.mark.parametrize("prop, more_tags, change", [
    ("InlinePolicies.app", 0, {"InlinePolicies": {"app": with_action("s3:PutObject")}}),
    # Keys compare regardless of case: Team is the role's team tag.
    ("Tags.Team", 0, {"Tags": [{"Key": "Team", "Value": "web"}]}),
    ("Description", 0, {"Description": "From the template"}),
    ("MaxSessionDuration", 0, {"MaxSessionDuration": "3600"}),
    # 45 tags, 3 more from the template and the function's own 3 (stack-id, logical-id, adopted):
    # 51, over IAM's 50.
    ("Tags", 43, {"Tags": [{"Key": f"new-{i}", "Value": "v"} for i in range(3)]}),
], ids=["inline-policy", "tag-value", "description", "max-session-duration", "tag-quota"])
def test_adoption_refuses_to_change_what_the_role_has(start_function, proxy, cfn, moto, iam,
                                                       prop, more_tags, change, profile_exists):
    """Adopting a role with a boundary, an inline policy and tags, with a template that would change
    one of them (or go over IAM's 50 tags): FAILED naming the property, and the role exactly as it
    was, without even the ownership tags; the rollback Delete leaves it so and nothing of the
    function's behind."""
    shared_role(iam, profile=profile_exists, more_tags=more_tags)
    calls = MutatingCalls()
    proxy.hooks.append(calls)
    start_function(iam_proxy=proxy)
    before = moto.iam_snapshot()
    props = {**ADOPT, **change}

    result, response = cfn.send("Create", props)

    failed(response, result)
    assert response["Reason"].startswith(f"{prop}:"), response["Reason"]
    if prop == "Tags":
        assert "quota of 50 tags" in response["Reason"], response["Reason"]
    assert not ADOPTING_CALLS & set(calls.actions), calls.actions
    after = moto.iam_snapshot()
    assert after["roles"] == before["roles"]
    if profile_exists:
        assert after["instance_profiles"] == before["instance_profiles"]

    delete(cfn, response["PhysicalResourceId"], props)

    assert moto.iam_snapshot() == before


def test_adoption_of_what_the_role_has_already_puts_nothing(start_function, proxy, cfn, moto, iam):
    """The same inline policy document (written another way: compared as JSON), the same tag value
    (under a key of another case) and the same description and session duration adopt fine:
    SUCCESS, no PutRolePolicy, the role keeps all it had and gains only the ownership tags."""
    shared_role(iam)
    calls = MutatingCalls()
    proxy.hooks.append(calls)
    start_function(iam_proxy=proxy)
    before = moto.iam_snapshot()["roles"][DEFAULT]
    same_document = json.dumps({"Statement": [dict(reversed(APP_POLICY["Statement"][0].items()))],
                                "Version": "2012-10-17"}, indent=2)
    props = {**ADOPT, "InlinePolicies": {"app": same_document},
             "Tags": [{"Key": "TEAM", "Value": "platform"}],
             "Description": DESCRIPTION, "MaxSessionDuration": "7200"}

    create(cfn, props)

    assert "PutRolePolicy" not in calls.actions, calls.actions
    role = moto.iam_snapshot()["roles"][DEFAULT]
    assert own_tags_but_request(role["tags"]) == ADOPTED_TAGS
    assert {**role, "tags": {k: v for k, v in role["tags"].items() if k not in own_tags(role["tags"])},
            "managed_policies": before["managed_policies"]} == before
    assert role["managed_policies"] == sorted([WEB, WORKER, DOCKER, S3_READ])


# --- a failed replacement onto adopted entities ------------------------------------------------

POLICY_ARNS = "arn:*:iam::aws:policy/AWSElasticBeanstalk*,arn:aws:iam::123456789012:policy/*"


def test_a_failed_replacement_gives_back_what_it_adopted(start_function, cfn, moto, iam):
    """A replacement onto the names of an untagged role and profile (AdoptExisting) takes them over
    and then fails: CloudFormation never learns those names, so the replacement gives them back
    without the function's tags, and the original entities stay as they were."""
    start_function({"ALLOWED_POLICY_ARNS": POLICY_ARNS})
    old = {"InstanceProfileName": "before"}
    create(cfn, old)
    default_profile(iam)
    before = moto.iam_snapshot()

    new = {**ADOPT, "ManagedPolicyArns": ["arn:aws:iam::123456789012:policy/DoesNotExist"]}
    result, response = cfn.send("Update", new, physical_id="before", old_properties=old)

    failed(response, result)
    assert "AttachRolePolicy" in response["Reason"], response["Reason"]
    state = moto.iam_snapshot()
    role = state["roles"][DEFAULT]
    assert own_tags(role["tags"]) == {}, role["tags"]
    assert role["description"] == DESCRIPTION
    assert {WEB, S3_READ} <= set(role["managed_policies"])
    assert state["instance_profiles"][DEFAULT] == before["instance_profiles"][DEFAULT]
    assert state["roles"]["before"] == before["roles"]["before"]
    assert state["instance_profiles"]["before"] == before["instance_profiles"]["before"]


def test_a_failing_second_delivery_of_a_succeeded_adopting_replacement_keeps_what_was_adopted(
        start_function, proxy, cfn, moto, iam):
    """A replacement that adopted the default profile answered SUCCESS, and is delivered again.
    This delivery fails on a read of the role: what the first delivery took over stays this
    resource's, tags and all, for the stack that now tracks it."""
    start_function(iam_proxy=proxy)
    old = {"InstanceProfileName": "before"}
    create(cfn, old)
    default_profile(iam)
    request_id = str(uuid.uuid4())
    replaced = succeeded(cfn.send("Update", ADOPT, physical_id="before", old_properties=old,
                                  request_id=request_id)[1])
    assert replaced["PhysicalResourceId"] == DEFAULT
    after_first = moto.iam_snapshot()
    for entity in (after_first["roles"][DEFAULT], after_first["instance_profiles"][DEFAULT]):
        own = own_tags_but_request(entity["tags"], request_id)
        assert ADOPTED_TAGS.items() <= own.items(), own

    denied = []

    def deny_one_role_read(request):
        if request.action == "ListAttachedRolePolicies" and not denied:
            denied.append(request.action)
            return access_denied(request.action)
        return None

    proxy.hooks.append(deny_one_role_read)
    result, second = cfn.send("Update", ADOPT, physical_id="before", old_properties=old,
                              request_id=request_id)
    failed(second, result)
    assert denied and "ListAttachedRolePolicies" in second["Reason"], second["Reason"]
    assert moto.iam_snapshot() == after_first


def test_a_second_delivery_that_reads_the_adopted_role_untagged_succeeds(start_function, proxy, cfn, moto, iam):
    """An adopting Create answered SUCCESS is delivered again, and this delivery reads the role from
    a replica that has not seen the adoption's tags: it tags it as adopted again, the execution role
    denies that (the role is owned by now), and a read shows the tags in place, the first
    delivery's request-id among them. Done: SUCCESS, and the role as the first delivery left it."""
    default_profile(iam)
    start_function(iam_proxy=proxy)
    request_id = str(uuid.uuid4())
    create(cfn, ADOPT, request_id=request_id)
    after_first = moto.iam_snapshot()

    stale = StaleOwnTags(DEFAULT)
    proxy.hooks.append(stale)
    # The execution role's DenyRetaggingOwnedEntities, also where the suite runs without the
    # authorizer (IAM_AUTHZ=off).
    denied = []

    def deny_retagging(request):
        if request.action == "TagRole" and form_value(request, "RoleName") == DEFAULT:
            denied.append(request.action)
            return access_denied(request.action)
        return None

    proxy.hooks.append(deny_retagging)
    result, second = cfn.send("Create", ADOPT, request_id=request_id)

    succeeded(second, result)
    assert stale.served == 1
    assert denied or any(d.action == "iam:TagRole" for d in start_function.denials), denied
    assert moto.iam_snapshot() == after_first
