"""The execution role of template.yaml as IAM applies it: what it allows the function, and the
escalations it denies even if the function's own checks failed.

The escalation catalogue evaluates single IAM requests against the resolved role with the context
IAM builds for them (local/authz.py `checks`, the same code that authorizes the suite's requests),
for each deployment that changes the role. The end-to-end tests run the real binary through the
authorizing proxy: a Create on a real account (tags on create), a Delete whose answers were lost,
and the adoption of a role that has a permissions boundary.
"""

from __future__ import annotations

import pytest

from faults import LoseAnswers
from helpers import (EC2_TRUST, TAG_ADOPTED, TAG_LOGICAL_ID, TAG_REQUEST_ID, TAG_STACK_ID, WEB, failed,
                     make_role, succeeded)
from local import authz
from local.events import DEFAULT_STACK_ID
from local.proxy import RecordingProxy

ACCOUNT = authz.ACCOUNT_ID
OWN_PATH = "/eb-instance-profile/"
OTHER_STACK = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/other/11111111-2222-3333-4444-555555555555"
OWNER = {TAG_STACK_ID: DEFAULT_STACK_ID, TAG_LOGICAL_ID: "Profile"}
# An adopted entity's tags: the ownership tags, the mark, and the delivery that took it over.
ADOPTED = {**OWNER, TAG_ADOPTED: "true", TAG_REQUEST_ID: "4c7e7f1a-0b8e-4b7e-9a49-1d3f0c9f6d2e 7b4cc177df8a4f44"}
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/eb-boundary"
OTHER_BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/other-boundary"
CUSTOM = f"arn:aws:iam::{ACCOUNT}:policy/custom"
TRUST = '{"Version":"2012-10-17","Statement":[]}'

DEPLOYMENTS = {
    "defaults": {},
    "AllowAdoption": {"AllowAdoption": "true"},
    "PermissionsBoundaryArn": {"PermissionsBoundaryArn": BOUNDARY},
    "AllowAdoption+PermissionsBoundaryArn": {"AllowAdoption": "true", "PermissionsBoundaryArn": BOUNDARY},
}


@pytest.fixture(scope="module")
def policy_evaluator(evaluator):
    """The session's evaluator, or one of this module's when the suite runs with IAM_AUTHZ=off:
    the catalogue is about the template, whatever the local IAM does."""
    if evaluator is not None:
        yield evaluator
        return
    with authz.Evaluator() as own:
        yield own


def entity(path: str = "/", tags: dict | None = None, boundary: str | None = None) -> authz.Entity:
    return authz.Entity(path, dict(tags or {}), boundary)


def tag_params(tags: dict[str, str]) -> dict[str, str]:
    params = {}
    for n, (key, value) in enumerate(tags.items(), start=1):
        params[f"Tags.member.{n}.Key"] = key
        params[f"Tags.member.{n}.Value"] = value
    return params


def decide(evaluator, parameters: dict, action: str, params: dict, *, role=None, profile=None,
           passed_role=None, tag_on_create: bool = True) -> tuple[bool, list[authz.Decision]]:
    """Whether IAM allows the request, with every authorization it made."""
    role_policy = authz.ExecutionRole.from_template(parameters)
    decisions = []
    for check in authz.checks(action, params, partition="aws", account=ACCOUNT, role=role,
                              profile=profile, passed_role=passed_role, tag_on_create=tag_on_create):
        decisions.append(evaluator.evaluate(role_policy, check.action, check.resource, check.context))
    return all(d.allowed for d in decisions), decisions


# (name, action, request parameters, keyword arguments of decide)
FOREIGN_ROLE = {"role": entity("/", {"team": "web"})}
FOREIGN_ROLE_OWN_PATH = {"role": entity(OWN_PATH, {})}
OWNED_ROLE = {"role": entity(OWN_PATH, OWNER)}
ADOPTED_ROLE = {"role": entity("/", ADOPTED, OTHER_BOUNDARY)}
ADOPTED_ROLE_NO_BOUNDARY = {"role": entity("/", ADOPTED)}
FOREIGN_PROFILE = {"profile": entity("/", {}), "passed_role": entity(OWN_PATH, OWNER)}
ADOPTED_PROFILE = {"profile": entity("/", {**ADOPTED, "eb-instance-profile:role-name": "r"})}
OTHER_OWNER_ROLE = {"role": entity(OWN_PATH, {TAG_STACK_ID: OTHER_STACK, TAG_LOGICAL_ID: "Theirs"})}

ROLE = {"RoleName": "r"}
PROFILE = {"InstanceProfileName": "p"}

CHANGES_TO_A_ROLE = [
    ("TagRole", {**ROLE, **tag_params({"team": "x"})}),
    ("UntagRole", {**ROLE, "TagKeys.member.1": "team"}),
    ("PutRolePolicy", {**ROLE, "PolicyName": "x", "PolicyDocument": "{}"}),
    ("DeleteRolePolicy", {**ROLE, "PolicyName": "x"}),
    ("AttachRolePolicy", {**ROLE, "PolicyArn": WEB}),
    ("DetachRolePolicy", {**ROLE, "PolicyArn": WEB}),
    ("PutRolePermissionsBoundary", {**ROLE, "PermissionsBoundary": BOUNDARY}),
    ("DeleteRolePermissionsBoundary", ROLE),
    ("UpdateRole", {**ROLE, "Description": "x"}),
    ("UpdateAssumeRolePolicy", {**ROLE, "PolicyDocument": TRUST}),
    ("DeleteRole", ROLE),
]
CHANGES_TO_A_PROFILE = [
    ("AddRoleToInstanceProfile", {**PROFILE, "RoleName": "r"}),
    ("RemoveRoleFromInstanceProfile", {**PROFILE, "RoleName": "r"}),
    ("TagInstanceProfile", {**PROFILE, **tag_params({"team": "x"})}),
    ("UntagInstanceProfile", {**PROFILE, "TagKeys.member.1": "team"}),
    ("DeleteInstanceProfile", PROFILE),
]

ESCALATIONS = [
    ("attach AdministratorAccess", "AttachRolePolicy", {**ROLE, "PolicyArn": ADMIN}, OWNED_ROLE),
    ("attach a policy outside AllowedPolicyArns", "AttachRolePolicy", {**ROLE, "PolicyArn": CUSTOM}, OWNED_ROLE),
    *[(f"{a} on a role without the ownership tags", a, p, FOREIGN_ROLE) for a, p in CHANGES_TO_A_ROLE],
    *[(f"{a} on an untagged role under the function's path", a, p, FOREIGN_ROLE_OWN_PATH)
      for a, p in CHANGES_TO_A_ROLE if a != "TagRole"],
    *[(f"{a} on a profile without the ownership tags", a, p, FOREIGN_PROFILE) for a, p in CHANGES_TO_A_PROFILE],
    ("ownership tags onto a foreign role", "TagRole", {**ROLE, **tag_params(OWNER)}, FOREIGN_ROLE),
    ("ownership tags onto a foreign profile", "TagInstanceProfile", {**PROFILE, **tag_params(OWNER)},
     {"profile": entity("/", {})}),
    ("ownership tags onto another resource's role", "TagRole", {**ROLE, **tag_params(OWNER)}, OTHER_OWNER_ROLE),
    ("the adopted mark onto a created role", "TagRole", {**ROLE, **tag_params({TAG_ADOPTED: "true"})},
     OWNED_ROLE),
    ("removing only the adopted mark from an adopted role", "UntagRole",
     {**ROLE, "TagKeys.member.1": TAG_ADOPTED}, {"role": entity(OWN_PATH, ADOPTED)}),
    ("removing only the adopted mark from an adopted profile", "UntagInstanceProfile",
     {**PROFILE, "TagKeys.member.1": TAG_ADOPTED, "TagKeys.member.2": TAG_LOGICAL_ID},
     {"profile": entity(OWN_PATH, ADOPTED)}),
    ("removing the ownership tags of a created role", "UntagRole", {**ROLE, "TagKeys.member.1": TAG_STACK_ID},
     OWNED_ROLE),
    ("deleting an adopted role", "DeleteRole", ROLE, ADOPTED_ROLE),
    ("detaching from an adopted role", "DetachRolePolicy", {**ROLE, "PolicyArn": WEB}, ADOPTED_ROLE),
    ("deleting an adopted role's inline policy", "DeleteRolePolicy", {**ROLE, "PolicyName": "x"}, ADOPTED_ROLE),
    ("removing an adopted role's boundary", "DeleteRolePermissionsBoundary", ROLE, ADOPTED_ROLE),
    ("replacing an adopted role's boundary with AdministratorAccess", "PutRolePermissionsBoundary",
     {**ROLE, "PermissionsBoundary": ADMIN}, ADOPTED_ROLE),
    ("replacing an adopted role's boundary with the function's", "PutRolePermissionsBoundary",
     {**ROLE, "PermissionsBoundary": BOUNDARY}, ADOPTED_ROLE),
    ("a boundary onto an adopted role", "PutRolePermissionsBoundary", {**ROLE, "PermissionsBoundary": BOUNDARY},
     ADOPTED_ROLE_NO_BOUNDARY),
    ("deleting an adopted profile", "DeleteInstanceProfile", PROFILE, ADOPTED_PROFILE),
    ("creating a role without the ownership tags", "CreateRole",
     {**ROLE, "Path": OWN_PATH, "AssumeRolePolicyDocument": TRUST}, {}),
    ("creating a role outside the function's path", "CreateRole",
     {**ROLE, "Path": "/", "AssumeRolePolicyDocument": TRUST, **tag_params(OWNER)}, {}),
    ("creating a role marked adopted", "CreateRole",
     {**ROLE, "Path": OWN_PATH, "AssumeRolePolicyDocument": TRUST, **tag_params(ADOPTED)}, {}),
    ("creating a profile without the ownership tags", "CreateInstanceProfile", {**PROFILE, "Path": OWN_PATH}, {}),
    ("passing a role into a foreign profile", "AddRoleToInstanceProfile", {**PROFILE, "RoleName": "r"},
     FOREIGN_PROFILE),
]
# Only with PermissionsBoundaryArn set.
BOUNDARY_ESCALATIONS = [
    ("creating a role without the boundary", "CreateRole",
     {**ROLE, "Path": OWN_PATH, "AssumeRolePolicyDocument": TRUST, **tag_params(OWNER)}, {}),
    ("creating a role with another boundary", "CreateRole",
     {**ROLE, "Path": OWN_PATH, "AssumeRolePolicyDocument": TRUST, "PermissionsBoundary": ADMIN,
      **tag_params(OWNER)}, {}),
    ("another boundary onto a created role", "PutRolePermissionsBoundary",
     {**ROLE, "PermissionsBoundary": ADMIN}, OWNED_ROLE),
    ("removing a created role's boundary", "DeleteRolePermissionsBoundary", ROLE,
     {"role": entity(OWN_PATH, OWNER, BOUNDARY)}),
]
# What the function needs: allowed, or the catalogue could pass by denying everything.
NEEDED = [
    ("creating an owned role, tags authorized as TagRole too", "CreateRole",
     {**ROLE, "Path": OWN_PATH, "AssumeRolePolicyDocument": TRUST, **tag_params(OWNER)}, {}),
    ("creating an owned profile, tags authorized as TagInstanceProfile too", "CreateInstanceProfile",
     {**PROFILE, "Path": OWN_PATH + "web/", **tag_params({**OWNER, "eb-instance-profile:role-name": "r"})}, {}),
    ("attaching an allowed policy to an owned role", "AttachRolePolicy", {**ROLE, "PolicyArn": WEB}, OWNED_ROLE),
    ("attaching an allowed policy to an adopted role", "AttachRolePolicy", {**ROLE, "PolicyArn": WEB}, ADOPTED_ROLE),
    ("detaching an allowed policy from a created role", "DetachRolePolicy", {**ROLE, "PolicyArn": WEB}, OWNED_ROLE),
    ("deleting a created role", "DeleteRole", ROLE, OWNED_ROLE),
    ("deleting a created profile", "DeleteInstanceProfile", PROFILE,
     {"profile": entity(OWN_PATH, {**OWNER, "eb-instance-profile:role-name": "r"})}),
    ("putting its role into its profile", "AddRoleToInstanceProfile", {**PROFILE, "RoleName": "r"},
     {"profile": entity(OWN_PATH, OWNER), "passed_role": entity(OWN_PATH, OWNER)}),
    ("adding EC2 to an adopted role's trust policy", "UpdateAssumeRolePolicy", {**ROLE, "PolicyDocument": TRUST},
     ADOPTED_ROLE),
    ("reading a foreign role", "GetRole", ROLE, FOREIGN_ROLE),
    ("giving an adopted role back (all its keys off at once)", "UntagRole",
     {**ROLE, **{f"TagKeys.member.{n}": k for n, k in enumerate(ADOPTED, start=1)}}, ADOPTED_ROLE),
]
ADOPTION = ("tagging an untagged role as adopted", "TagRole", {**ROLE, **tag_params(ADOPTED)}, FOREIGN_ROLE)


def with_boundary(name, action, params, kwargs):
    """The request as the function sends it with PermissionsBoundaryArn set."""
    if action == "CreateRole":
        params = {**params, "PermissionsBoundary": BOUNDARY}
    if "role" in kwargs and kwargs["role"].tags.get(TAG_ADOPTED) is None and kwargs["role"].path == OWN_PATH:
        kwargs = {**kwargs, "role": entity(OWN_PATH, kwargs["role"].tags, BOUNDARY)}
    return name, action, params, kwargs


def catalogue_cases() -> list:
    return list(_catalogue_cases())


def _catalogue_cases():
    for deployment, parameters in DEPLOYMENTS.items():
        bounded = "PermissionsBoundaryArn" in parameters
        for name, action, params, kwargs in ESCALATIONS + (BOUNDARY_ESCALATIONS if bounded else []):
            yield pytest.param(parameters, action, params, kwargs, False, id=f"{deployment}: {name}")
        for case in NEEDED:
            name, action, params, kwargs = with_boundary(*case) if bounded else case
            yield pytest.param(parameters, action, params, kwargs, True, id=f"{deployment}: {name}")
        name, action, params, kwargs = ADOPTION
        yield pytest.param(parameters, action, params, kwargs, "AllowAdoption" in parameters,
                           id=f"{deployment}: {name}")


# IAM cannot compare a tag with the request: another resource's role can be tagged (not with the
# ownership keys) by this role as it can be by that resource. docs/security.md says so; the
# function's own check (Owner::claim) covers it.
@pytest.mark.parametrize("parameters, action, params, kwargs, expected", catalogue_cases())
def test_escalation_catalogue(policy_evaluator, parameters, action, params, kwargs, expected):
    """Each request is evaluated as IAM evaluates it, with tag on create: escalations are denied
    (by the statement the decision names), what the function needs is allowed."""
    allowed, decisions = decide(policy_evaluator, parameters, action, params, **kwargs)
    assert allowed == expected, [(d.action, d.resource, d.decision, d.allowed_by, d.denied_by)
                                 for d in decisions]


def test_a_create_is_authorized_as_a_tagging_of_the_new_entity_too(policy_evaluator):
    """The tags of CreateRole are authorized as iam:TagRole of a role that has no tags yet: the
    role allows that by TagWhatItCreates, and only that."""
    params = {**ROLE, "Path": OWN_PATH, "AssumeRolePolicyDocument": TRUST, **tag_params(OWNER)}
    allowed, decisions = decide(policy_evaluator, {}, "CreateRole", params)
    assert allowed, decisions
    assert [(d.action, d.allowed_by) for d in decisions] == [
        ("iam:CreateRole", ("CreateOwnedRoles",)), ("iam:TagRole", ("TagWhatItCreates",))]
    # Without tag on create, the create action alone decides.
    allowed, decisions = decide(policy_evaluator, {}, "CreateRole", params, tag_on_create=False)
    assert allowed and [d.action for d in decisions] == ["iam:CreateRole"]


# --- end to end: the real binary through the authorizing proxy ----------------------------------

def test_a_create_succeeds_with_tags_authorized_on_create(cfn, start_function, moto):
    """On a real account a Create's tags are authorized as TagRole / TagInstanceProfile as well:
    the Create succeeds, and under IAM_AUTHZ=tag-on-create those authorizations were made."""
    start_function()
    result, response = cfn.send("Create", {"InstanceProfileName": "tagged", "Tiers": ["WebTier"]})
    succeeded(response, result)
    decisions = [d for a in start_function.authorizers for d in a.decisions]
    tagged_on_create = [d for d in decisions if d.action in ("iam:TagRole", "iam:TagInstanceProfile")]
    if authz.mode() == "tag-on-create":
        assert {d.action for d in tagged_on_create} == {"iam:TagRole", "iam:TagInstanceProfile"}
        assert all(d.allowed_by == ("TagWhatItCreates",) for d in tagged_on_create), tagged_on_create
    else:
        assert not tagged_on_create, tagged_on_create
    assert moto.iam_snapshot()["roles"]["tagged"]["path"] == OWN_PATH


@pytest.fixture
def lossy_proxy(clean_moto):
    """A proxy in front of moto that loses the first answer of each delete."""
    hook = LoseAnswers({"DeleteRole", "DeleteInstanceProfile"})
    with RecordingProxy(clean_moto.url, hooks=[hook]) as proxy:
        proxy.lost = hook.lost
        yield proxy


def test_a_delete_whose_answers_were_lost_is_done(cfn, start_function, moto, lossy_proxy):
    """DeleteInstanceProfile and DeleteRole take effect but lose their answers; the SDK's
    retry finds entities without tags, which the execution role denies (AccessDenied, not
    NoSuchEntity). The function reads, sees them gone, and answers SUCCESS."""
    start_function(iam_proxy=lossy_proxy)
    name = succeeded(cfn.send("Create", {"InstanceProfileName": "lossy"})[1])["PhysicalResourceId"]

    result, response = cfn.send("Delete", {"InstanceProfileName": "lossy"}, physical_id=name)

    succeeded(response, result)
    assert lossy_proxy.lost == {"DeleteRole": 1, "DeleteInstanceProfile": 1}
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}
    if authz.mode() != "off":
        # The retries were denied, not answered NoSuchEntity: the function's reading made them done.
        denied = {d.action for d in start_function.denials}
        assert {"iam:DeleteRole", "iam:DeleteInstanceProfile"} <= denied, denied


def test_a_denied_delete_of_an_entity_that_is_still_there_fails_naming_the_action(cfn, start_function, moto, iam):
    """AccessDenied on a removal is done only when the entity is gone: a created role that holds a
    policy outside AllowedPolicyArns cannot be emptied, and the Delete says so."""
    start_function()
    name = succeeded(cfn.send("Create", {"InstanceProfileName": "stuck"})[1])["PhysicalResourceId"]
    # Attached out of band: a Delete detaches every policy of a role it made.
    iam.attach_role_policy(RoleName="stuck", PolicyArn=ADMIN)

    result, response = cfn.send("Delete", {"InstanceProfileName": "stuck"}, physical_id=name)

    if authz.mode() == "off":
        # Plain moto authorizes nothing: the Delete goes through.
        succeeded(response, result)
        return
    failed(response, result)
    assert "iam:DetachRolePolicy failed with AccessDenied" in response["Reason"], response
    assert ADMIN in moto.iam_snapshot()["roles"]["stuck"]["managed_policies"]


@pytest.mark.parametrize("have", [OTHER_BOUNDARY, None], ids=["another-boundary", "no-boundary"])
def test_adopting_a_role_never_changes_its_boundary(start_function, cfn, moto, iam, have):
    """With PERMISSIONS_BOUNDARY_ARN set, an adopted role whose boundary differs is not
    given the function's: FAILED naming PermissionsBoundary, nothing changed."""
    for arn in (BOUNDARY, OTHER_BOUNDARY):
        iam.create_policy(PolicyName=arn.rsplit("/", 1)[1], PolicyDocument='{"Version":"2012-10-17",'
                          '"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}')
    make_role(iam, "shared", trust=EC2_TRUST, policies=[WEB])
    if have:
        iam.put_role_permissions_boundary(RoleName="shared", PermissionsBoundary=have)
    start_function({"PERMISSIONS_BOUNDARY_ARN": BOUNDARY}, deployment={"AllowAdoption": "true"})
    before = moto.iam_snapshot()

    result, response = cfn.send("Create", {"InstanceProfileName": "shared-profile", "RoleName": "shared",
                                           "AdoptExisting": True})

    failed(response, result)
    assert response["Reason"].startswith("PermissionsBoundary:"), response
    after = moto.iam_snapshot()
    assert after["roles"] == before["roles"]
    assert after["roles"]["shared"]["permissions_boundary"] == have


def test_adopting_a_role_with_the_functions_boundary_succeeds(start_function, cfn, moto, iam):
    """The same adoption when the role already has the required boundary: nothing to change there."""
    iam.create_policy(PolicyName="eb-boundary", PolicyDocument='{"Version":"2012-10-17",'
                      '"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}')
    make_role(iam, "shared", trust=EC2_TRUST, policies=[WEB])
    iam.put_role_permissions_boundary(RoleName="shared", PermissionsBoundary=BOUNDARY)
    start_function({"PERMISSIONS_BOUNDARY_ARN": BOUNDARY}, deployment={"AllowAdoption": "true"})

    result, response = cfn.send("Create", {"InstanceProfileName": "shared-profile", "RoleName": "shared",
                                           "AdoptExisting": True, "Tiers": ["WebTier"]})

    succeeded(response, result)
    assert moto.iam_snapshot()["roles"]["shared"]["permissions_boundary"] == BOUNDARY


def test_giving_back_an_adopted_entity_whose_untag_answers_were_lost_is_done(
        cfn, start_function, moto, iam, clean_moto):
    """Delete gives an adopted role and profile back by untagging them; the untags take effect but
    lose their answers, and the SDK's retries meet entities without the ownership tag, which the
    execution role denies. The keys are gone, so the function answers SUCCESS."""
    make_role(iam, "console-role", trust=EC2_TRUST, policies=[WEB])
    iam.create_instance_profile(InstanceProfileName="console-role")
    iam.add_role_to_instance_profile(InstanceProfileName="console-role", RoleName="console-role")
    hook = LoseAnswers({"UntagRole", "UntagInstanceProfile"})
    with RecordingProxy(clean_moto.url, hooks=[hook]) as proxy:
        start_function(iam_proxy=proxy, deployment={"AllowAdoption": "true"})
        props = {"InstanceProfileName": "console-role", "AdoptExisting": True, "Tiers": ["WebTier"]}
        name = succeeded(cfn.send("Create", props)[1])["PhysicalResourceId"]

        result, response = cfn.send("Delete", props, physical_id=name)

        succeeded(response, result)
        assert hook.lost == {"UntagRole": 1, "UntagInstanceProfile": 1}
    state = moto.iam_snapshot()
    assert state["roles"]["console-role"]["tags"] == {}
    assert state["instance_profiles"]["console-role"]["tags"] == {}
    assert state["roles"]["console-role"]["managed_policies"] == [WEB]
    if authz.mode() != "off":
        denied = {d.action for d in start_function.denials}
        assert {"iam:UntagRole", "iam:UntagInstanceProfile"} <= denied, denied
