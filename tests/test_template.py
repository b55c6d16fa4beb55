"""template.yaml: the execution role allows exactly what the code needs, and no more.

The function runs with the IAM permissions of its execution role; these tests hold the role to the
code. The IAM actions the function calls are read out of src/iam.rs (every action name passed as a
string literal to `iam_error`, `send!`, `remove!` or `every_page!`), so adding an IAM call to the code
without adding it to the template, or the other way round, fails here. Each check is a function that
returns its findings; the tests at the bottom run every check against deliberately broken copies of
the template, so that none of them can pass vacuously.

No Rust binary and no AWS: the template is parsed with cfn-lint's decoder, and `Fn::If` is resolved
for every combination of the options that change the role (PermissionsBoundaryArn, AllowAdoption,
RepairableRoleArns).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from functools import cache
from pathlib import Path

import cfnlint.data.AdditionalSpecs
import cfnlint.decode
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
IAM_RS = ROOT / "src" / "iam.rs"

FUNCTION = "InstanceProfileFunction"
ROLE = "ExecutionRole"
OWNERSHIP_TAG = "eb-instance-profile:stack-id"
ADOPTED_TAG = "eb-instance-profile:adopted"
# Set once, when an entity is created or adopted.
FIXED_TAG_KEYS = {OWNERSHIP_TAG, "eb-instance-profile:logical-id", ADOPTED_TAG}
# Every key the function manages (src/plan.rs OWN_TAG_KEYS): removed only when an adopted entity
# is given back.
OWN_TAG_KEYS = FIXED_TAG_KEYS | {"eb-instance-profile:role-name"}

# IAM authorizes some calls against a second action as well.
DEPENDENT_ACTIONS = {"AddRoleToInstanceProfile": {"PassRole"}}
# Creation: allowed only when the request carries the ownership tag (aws:RequestTag).
CREATING = {"CreateRole", "CreateInstanceProfile"}
# Changes to existing entities: allowed only on entities that carry the ownership tag.
CHANGING_EXISTING = {
    "DeleteRole", "DeleteInstanceProfile", "DetachRolePolicy", "DeleteRolePolicy",
    "RemoveRoleFromInstanceProfile", "UntagRole", "UntagInstanceProfile", "TagRole",
    "TagInstanceProfile", "UpdateRole", "PutRolePolicy", "AttachRolePolicy",
    "PutRolePermissionsBoundary", "DeleteRolePermissionsBoundary", "AddRoleToInstanceProfile",
    "UpdateAssumeRolePolicy",
}
# Removals: only on entities the function made, never on adopted ones (it only adds to those).
# Setting a boundary counts: another boundary on a role that has one is as good as none.
DESTROYING = {
    "DeleteRole", "DeleteInstanceProfile", "DetachRolePolicy", "DeleteRolePolicy", "UpdateRole",
    "DeleteRolePermissionsBoundary", "PutRolePermissionsBoundary",
}
ATTACH = {"AttachRolePolicy", "DetachRolePolicy"}
# The only actions outside IAM: writing the function's own log group.
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}

POLICY_ARNS = {"Fn::Split": [",", {"Ref": "AllowedPolicyArns"}]}
BOUNDARY = {"Ref": "PermissionsBoundaryArn"}
REPAIRABLE_ROLES = {"Fn::Split": [",", {"Ref": "RepairableRoleArns"}]}
NO_VALUE = {"Ref": "AWS::NoValue"}
ACCOUNT_ARN = "arn:${AWS::Partition}:iam::${AWS::AccountId}:"
STACK_ARN_PATTERN = "arn:${AWS::Partition}:cloudformation:*:${AWS::AccountId}:stack/*"
# The path every entity the function creates lives under (src/names.rs OWN_PATH_PREFIX).
OWN_PATH = "/eb-instance-profile/"
OWN_SCOPES = (ACCOUNT_ARN + "role" + OWN_PATH + "*", ACCOUNT_ARN + "instance-profile" + OWN_PATH + "*")

# Every combination of the template's options that changes the role.
SETTINGS = [
    {"HasPermissionsBoundary": boundary, "AllowsAdoption": adoption, "HasRepairableRoles": repair,
     "HasReservedConcurrency": True}
    for boundary in (False, True) for adoption in (False, True) for repair in (False, True)
]
DEFAULTS = SETTINGS[0]
EVERY_SETTING = pytest.mark.parametrize(
    "conditions", SETTINGS,
    ids=lambda c: "+".join(k for k, v in c.items() if v and k != "HasReservedConcurrency") or "defaults")


# --- reading the template and the code ---------------------------------------------------------

@cache
def _decoded() -> str:
    template, errors = cfnlint.decode.decode(str(TEMPLATE))
    assert not errors, errors
    return json.dumps(template)


def load_template() -> dict:
    """A fresh plain-dict copy of template.yaml, intrinsic functions as `{"Fn::Sub": ...}`."""
    return json.loads(_decoded())


def resolve(node, conditions: dict[str, bool]):
    """`node` with every `Fn::If` decided by `conditions` and `AWS::NoValue` removed."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, if_true, if_false = node["Fn::If"]
            return resolve(if_true if conditions[name] else if_false, conditions)
        out = {}
        for key, value in node.items():
            value = resolve(value, conditions)
            if value != NO_VALUE:
                out[key] = value
        return out
    if isinstance(node, list):
        return [v for v in (resolve(item, conditions) for item in node) if v != NO_VALUE]
    return node


def resolved(conditions: dict[str, bool] = DEFAULTS) -> dict:
    return resolve(load_template(), conditions)


def called_actions(source: str) -> set[str]:
    """The IAM actions named in src/iam.rs: `iam_error("GetRole", e)`, `send!("TagRole", ...)`,
    `remove!("DeleteRole", ...)`, `every_page!("ListRolePolicies", ...)`."""
    return set(re.findall(r'\b(?:iam_error|send!|remove!|every_page!)\(\s*"([A-Za-z]+)"', source))


def code_actions() -> set[str]:
    return called_actions(IAM_RS.read_text())


@cache
def all_iam_actions() -> frozenset[str]:
    """Every IAM action, lower case, from the Service Authorization Reference data cfn-lint ships."""
    path = Path(cfnlint.data.AdditionalSpecs.__file__).parent / "Policies.json"
    return frozenset(json.loads(path.read_text())["iam"]["Actions"])


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def policy_statements(template: dict) -> list:
    """The statement list of the execution role's IAM policy, to change in place."""
    policies = template["Resources"][ROLE]["Properties"]["Policies"]
    return next(p for p in policies if p["PolicyName"] == "iam")["PolicyDocument"]["Statement"]


def statements(template: dict) -> list[dict]:
    """Every statement of every inline policy of the execution role."""
    role = template["Resources"][ROLE]["Properties"]
    return [s for policy in role.get("Policies", []) for s in as_list(policy["PolicyDocument"]["Statement"])]


@cache
def expand(pattern: str) -> frozenset[str]:
    """The IAM actions (lower case) an Action entry matches; empty for another service."""
    service, _, name = pattern.partition(":")
    if service.lower() not in ("iam", "*"):
        return frozenset()
    return frozenset(a for a in all_iam_actions() if fnmatch.fnmatchcase(a, name.lower()))


def grants(statement: dict, action: str) -> bool:
    return statement.get("Effect") == "Allow" and any(
        action.lower() in expand(p) for p in as_list(statement.get("Action", [])))


def condition(statement: dict, key: str) -> tuple[str, object] | tuple[None, None]:
    """(operator, value) of the statement's condition on `key` (case-insensitive), if any."""
    for op, block in statement.get("Condition", {}).items():
        for k, value in block.items():
            if k.lower() == key.lower():
                return op, value
    return None, None


def requires_tag(statement: dict, context: str, tag: str) -> object | None:
    """The value a StringLike/StringEquals condition requires of `context/tag` (`aws:RequestTag`;
    for `ResourceTag` either `aws:` or `iam:`), or None. A Null check alone does not count."""
    contexts = [context] if context != "ResourceTag" else ["aws:ResourceTag", "iam:ResourceTag"]
    for c in contexts:
        op, value = condition(statement, f"{c}/{tag}")
        if op in ("StringLike", "StringEquals"):
            return value
    return None


def requires_absent(statement: dict, key: str) -> bool:
    return condition(statement, key) == ("Null", "true")


def is_mutating(pattern: str) -> bool:
    """Whether an Action entry can match an IAM action that is not a Get or a List."""
    return any(not a.startswith(("get", "list")) for a in expand(pattern))


def is_adoption(statement: dict) -> bool:
    """The AllowAdoption statement: tagging only entities without the ownership tag, and only with
    the request marking them as owned and adopted."""
    return (all(a in ("iam:TagRole", "iam:TagInstanceProfile") for a in as_list(statement["Action"]))
            and requires_absent(statement, f"aws:ResourceTag/{OWNERSHIP_TAG}")
            and requires_tag(statement, "aws:RequestTag", OWNERSHIP_TAG) == {"Fn::Sub": STACK_ARN_PATTERN}
            and condition(statement, "aws:RequestTag/eb-instance-profile:logical-id") == ("Null", "false")
            and condition(statement, f"aws:RequestTag/{ADOPTED_TAG}") == ("StringEquals", "true"))


def is_tag_on_create(statement: dict) -> bool:
    """The statement that authorizes the tags of a create (IAM checks iam:TagRole too): only the
    ownership tags without the adopted mark, only on entities without them, only under the
    function's own path."""
    return (all(a in ("iam:TagRole", "iam:TagInstanceProfile") for a in as_list(statement["Action"]))
            and requires_absent(statement, f"aws:ResourceTag/{OWNERSHIP_TAG}")
            and requires_tag(statement, "aws:RequestTag", OWNERSHIP_TAG) == {"Fn::Sub": STACK_ARN_PATTERN}
            and condition(statement, "aws:RequestTag/eb-instance-profile:logical-id") == ("Null", "false")
            and requires_absent(statement, f"aws:RequestTag/{ADOPTED_TAG}")
            and all(isinstance(r, dict) and r.get("Fn::Sub") in OWN_SCOPES
                    for r in as_list(statement.get("Resource", []))))


def is_repair(statement: dict) -> bool:
    """The RepairableRoleArns statement: AttachRolePolicy, of the allowed policies only, on the roles
    the operator listed."""
    return (as_list(statement["Action"]) == ["iam:AttachRolePolicy"]
            and statement.get("Resource") == REPAIRABLE_ROLES
            and condition(statement, "iam:PolicyARN") == ("ArnLike", POLICY_ARNS))


# --- the checks: each returns what is wrong, an empty list when nothing is ------------------------

def resource_star_problems(template: dict) -> list[str]:
    """No statement that grants (or denies) a mutating IAM action may have Resource "*"; none may
    use NotAction or NotResource, which invert their scope; no Allow is on "*" at all."""
    problems = []
    for s in statements(template):
        sid = s.get("Sid", "?")
        if "NotAction" in s or "NotResource" in s:
            problems.append(f"{sid}: NotAction/NotResource")
            continue
        star = "*" in as_list(s.get("Resource", []))
        if star and any(is_mutating(a) for a in as_list(s["Action"])):
            problems.append(f"{sid}: mutating IAM action on Resource *")
        elif star and s["Effect"] == "Allow":
            problems.append(f"{sid}: Allow on Resource *")
    return problems


def scope_problems(template: dict) -> list[str]:
    """Every IAM statement names roles or instance profiles of this account, in its partition; the
    Repair statement, the roles of the RepairableRoleArns parameter."""
    problems = []
    scopes = (ACCOUNT_ARN + "role/*", ACCOUNT_ARN + "instance-profile/*", *OWN_SCOPES)
    for s in statements(template):
        if not any(expand(a) for a in as_list(s.get("Action", []))) or is_repair(s):
            continue
        for r in as_list(s.get("Resource", [])):
            if not (isinstance(r, dict) and r.get("Fn::Sub") in scopes):
                problems.append(f"{s.get('Sid', '?')}: resource {r!r} is not this account's roles or profiles")
    return problems


def coverage_problems(template: dict, called: set[str]) -> list[str]:
    """Every action the code calls (and what IAM requires with it) is allowed by some statement,
    and no statement allows an IAM action the code never calls, nor anything but its own logs."""
    needed = set(called)
    for action in called:
        needed |= DEPENDENT_ACTIONS.get(action, set())
    problems = [f"iam:{a} is called by src/iam.rs but not allowed"
                for a in sorted(needed) if not any(grants(s, a) for s in statements(template))]
    needed_lower = {a.lower() for a in needed}
    for s in statements(template):
        if s["Effect"] != "Allow":
            continue
        for pattern in as_list(s.get("Action", [])):
            extra = expand(pattern) - needed_lower
            if extra:
                problems.append(f"{s.get('Sid', '?')}: {pattern} allows {sorted(extra)[:5]}, never called")
            elif not expand(pattern) and pattern not in LOG_ACTIONS:
                problems.append(f"{s.get('Sid', '?')}: {pattern} is not an action the function needs")
    return problems


def policy_arn_problems(template: dict) -> list[str]:
    """Attach/DetachRolePolicy only for the policies of the AllowedPolicyArns parameter, the same
    parameter that feeds ALLOWED_POLICY_ARNS."""
    problems = []
    for s in statements(template):
        for action in ATTACH:
            if grants(s, action) and condition(s, "iam:PolicyARN") != ("ArnLike", POLICY_ARNS):
                problems.append(f"{s.get('Sid', '?')}: iam:{action} without ArnLike iam:PolicyARN = {POLICY_ARNS}")
    variables = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    if variables.get("ALLOWED_POLICY_ARNS") != {"Ref": "AllowedPolicyArns"}:
        problems.append(f"ALLOWED_POLICY_ARNS is {variables.get('ALLOWED_POLICY_ARNS')!r}")
    return problems


def ownership_problems(template: dict, conditions: dict[str, bool] = DEFAULTS) -> list[str]:
    """Creation only with the ownership tag in the request; every change to an existing entity only
    where it carries the tag, removals only where it is not adopted. Every statement that grants
    such an action counts: IAM allows a call when any one statement does. The two exceptions are
    the options that say so: AllowAdoption (tagging an unowned entity as adopted) and
    RepairableRoleArns (attaching allowed policies to the listed roles)."""
    problems = []
    owned = {"Fn::Sub": STACK_ARN_PATTERN}
    for s in statements(template):
        sid = s.get("Sid", "?")
        for action in CREATING:
            if grants(s, action) and requires_tag(s, "aws:RequestTag", OWNERSHIP_TAG) != owned:
                problems.append(f"{sid}: iam:{action} without aws:RequestTag/{OWNERSHIP_TAG}")
            elif grants(s, action) and not requires_absent(s, f"aws:RequestTag/{ADOPTED_TAG}"):
                problems.append(f"{sid}: iam:{action} may create an entity marked adopted")
        for action in CHANGING_EXISTING:
            if not grants(s, action):
                continue
            if conditions["AllowsAdoption"] and is_adoption(s):
                continue
            if conditions["HasRepairableRoles"] and is_repair(s):
                continue
            if is_tag_on_create(s):
                continue
            if requires_tag(s, "ResourceTag", OWNERSHIP_TAG) != owned:
                problems.append(f"{sid}: iam:{action} without a ResourceTag condition on {OWNERSHIP_TAG}")
            elif action in DESTROYING and not requires_absent(s, f"aws:ResourceTag/{ADOPTED_TAG}"):
                problems.append(f"{sid}: iam:{action} allowed on adopted entities")
    return problems


def path_problems(template: dict) -> list[str]:
    """Creating, tagging on creation, removing and deleting name only ARNs under the function's own
    path: IAM paths never change, so no tag given to an entity the function did not make brings it
    within their reach."""
    problems = []
    for s in statements(template):
        sid = s.get("Sid", "?")
        reaching = [a for a in CREATING | DESTROYING if grants(s, a)]
        if is_tag_on_create(s) or not reaching:
            continue
        for r in as_list(s.get("Resource", [])):
            if not (isinstance(r, dict) and r.get("Fn::Sub") in OWN_SCOPES):
                problems.append(f"{sid}: iam:{sorted(reaching)[0]} on {r!r}, outside {OWN_PATH}")
    return problems


def boundary_problems(template: dict, boundary: bool) -> list[str]:
    """With PermissionsBoundaryArn: roles are created and given that boundary only, no boundary is
    removed, and the function is told. Without: PERMISSIONS_BOUNDARY_ARN is not set."""
    problems = []
    variables = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    if variables.get("PERMISSIONS_BOUNDARY_ARN") != (BOUNDARY if boundary else None):
        problems.append(f"PERMISSIONS_BOUNDARY_ARN is {variables.get('PERMISSIONS_BOUNDARY_ARN')!r}")
    if not boundary:
        return problems
    for s in statements(template):
        sid = s.get("Sid", "?")
        for action in ("CreateRole", "PutRolePermissionsBoundary"):
            if grants(s, action) and condition(s, "iam:PermissionsBoundary") != ("StringEquals", BOUNDARY):
                problems.append(f"{sid}: iam:{action} without StringEquals iam:PermissionsBoundary = {BOUNDARY}")
        if grants(s, "DeleteRolePermissionsBoundary"):
            problems.append(f"{sid}: allows iam:DeleteRolePermissionsBoundary despite the boundary")
    return problems


def protected_tag_problems(template: dict) -> list[str]:
    """The ownership tags of an owned entity are never set again, and are removed only from an
    adopted entity. A Deny counts only with exactly these conditions: any further one would narrow
    it."""
    cases = [
        (("TagRole", "TagInstanceProfile"), FIXED_TAG_KEYS,
         (f"aws:ResourceTag/{OWNERSHIP_TAG}".lower(), ("Null", "false"))),
        (("UntagRole", "UntagInstanceProfile"), OWN_TAG_KEYS,
         (f"aws:ResourceTag/{ADOPTED_TAG}".lower(), ("Null", "true"))),
    ]
    problems = []
    for actions, keys, (scope_key, scope_condition) in cases:
        for action in actions:
            denied = set()
            for s in statements(template):
                if s["Effect"] != "Deny" or not any(action.lower() in expand(p) for p in as_list(s["Action"])):
                    continue
                found = {k.lower(): (op, v) for op, block in s.get("Condition", {}).items() for k, v in block.items()}
                op, value = found.pop("aws:tagkeys", (None, None))
                if op in ("ForAnyValue:StringEqualsIgnoreCase", "ForAnyValue:StringEquals") and found == {scope_key: scope_condition}:
                    denied |= {v.lower() for v in as_list(value)}
            if not keys <= denied:
                problems.append(f"iam:{action} may change {sorted(keys - denied)}")
    return problems


# --- the template as it is ----------------------------------------------------------------------

def test_the_code_names_its_iam_actions():
    """The parse of src/iam.rs finds the calls (so the coverage test is not vacuous)."""
    called = code_actions()
    assert {"CreateRole", "CreateInstanceProfile", "AttachRolePolicy", "DeleteRole",
            "ListAttachedRolePolicies", "AddRoleToInstanceProfile"} <= called
    unknown = {a for a in called if a.lower() not in all_iam_actions()}
    assert not unknown, f"not IAM actions: {unknown}"


@EVERY_SETTING
def test_no_mutating_statement_on_every_resource(conditions):
    assert resource_star_problems(resolved(conditions)) == []


@EVERY_SETTING
def test_iam_statements_are_scoped_to_the_accounts_roles_and_profiles(conditions):
    assert scope_problems(resolved(conditions)) == []


@EVERY_SETTING
def test_role_allows_exactly_the_calls_the_code_makes(conditions):
    """With a boundary, DeleteRolePermissionsBoundary is withheld on purpose."""
    withheld = {"DeleteRolePermissionsBoundary"} if conditions["HasPermissionsBoundary"] else set()
    assert coverage_problems(resolved(conditions), code_actions() - withheld) == []


@EVERY_SETTING
def test_policy_arn_condition_is_the_allowed_policy_arns_parameter(conditions):
    assert policy_arn_problems(resolved(conditions)) == []


@EVERY_SETTING
def test_creation_and_changes_require_the_ownership_tag(conditions):
    assert ownership_problems(resolved(conditions), conditions) == []


@EVERY_SETTING
def test_creation_and_removals_only_under_the_functions_path(conditions):
    assert path_problems(resolved(conditions)) == []


@EVERY_SETTING
def test_permissions_boundary(conditions):
    template = load_template()
    assert template["Conditions"]["HasPermissionsBoundary"] == {"Fn::Not": [{"Fn::Equals": [BOUNDARY, ""]}]}
    assert template["Parameters"]["PermissionsBoundaryArn"]["Default"] == ""
    assert boundary_problems(resolved(conditions), conditions["HasPermissionsBoundary"]) == []


@EVERY_SETTING
def test_ownership_tags_cannot_be_changed(conditions):
    assert protected_tag_problems(resolved(conditions)) == []


def test_options_that_widen_the_role_are_off_by_default():
    parameters = load_template()["Parameters"]
    assert parameters["AllowAdoption"]["Default"] == "false"
    assert load_template()["Conditions"]["AllowsAdoption"] == {"Fn::Equals": [{"Ref": "AllowAdoption"}, "true"]}
    assert parameters["RepairableRoleArns"]["Default"] == ""
    pattern = parameters["RepairableRoleArns"]["AllowedPattern"]
    for value in ("*", "arn:aws:iam::*:role/x", "arn:aws:iam::123456789012:role/a,*",
                  "arn:aws:iam::123456789012:user/a"):
        assert not re.fullmatch(pattern, value), value
    for value in ("", "arn:aws:iam::123456789012:role/aws-elasticbeanstalk-ec2-role",
                  "arn:aws:iam::123456789012:role/a,arn:aws-cn:iam::123456789012:role/eb/*"):
        assert re.fullmatch(pattern, value), value
    assert parameters["InlinePolicies"]["Default"] == "restricted"
    variables = load_template()["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["INLINE_POLICIES"] == {"Ref": "InlinePolicies"}


def test_function_uses_only_this_role():
    template = load_template()
    props = template["Resources"][FUNCTION]["Properties"]
    assert props["Role"] == {"Fn::GetAtt": [ROLE, "Arn"]}
    assert "Policies" not in props
    role = template["Resources"][ROLE]["Properties"]
    assert "ManagedPolicyArns" not in role and "PermissionsBoundary" not in role
    assert role["AssumeRolePolicyDocument"]["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    assert [r for r in template["Resources"].values() if r["Type"].startswith("AWS::IAM::")] == [
        template["Resources"][ROLE]]


def test_lambda_settings():
    template = load_template()
    resources = template["Resources"]
    props = resources[FUNCTION]["Properties"]
    assert props["Runtime"] == "provided.al2023" and props["Architectures"] == ["arm64"]
    assert resources[FUNCTION]["Metadata"]["BuildMethod"] == "rust-cargolambda"
    invoke = props["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 2
    assert 0 < invoke["MaximumEventAgeInSeconds"] <= 3600
    assert props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, NO_VALUE]}
    assert template["Parameters"]["ReservedConcurrency"]["Default"] == 10
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "LogGroup"}
    log_group = resources["LogGroup"]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert template["Parameters"]["LogRetentionInDays"]["Default"] == 30
    # No way in but lambda:InvokeFunction by principals of the account, and with SelfHealing on,
    # by EventBridge for the self-healing rule alone.
    assert "FunctionUrlConfig" not in props and "Events" not in props
    assert not [r for r in resources.values() if r["Type"] == "AWS::Lambda::Url"]
    permissions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert permissions == [{
        "Type": "AWS::Lambda::Permission", "Condition": "HealsSelf",
        "Properties": {"Action": "lambda:InvokeFunction", "FunctionName": {"Ref": FUNCTION},
                       "Principal": "events.amazonaws.com",
                       "SourceArn": {"Fn::GetAtt": ["SelfHealingRule", "Arn"]},
                       "SourceAccount": {"Ref": "AWS::AccountId"}}}]
    assert resources["SelfHealingRule"]["Condition"] == "HealsSelf"
    assert template["Conditions"]["HealsSelf"] == {"Fn::Equals": [{"Ref": "SelfHealing"}, "true"]}
    assert template["Parameters"]["SelfHealing"]["Default"] == "false"
    assert template["Outputs"]["ServiceToken"]["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-ServiceToken"}


def test_logs_only_to_its_own_group():
    log_statements = [s for s in statements(resolved())
                      if any(a.startswith("logs:") for a in as_list(s["Action"]))]
    assert log_statements, "the function cannot write its logs"
    for s in log_statements:
        assert set(as_list(s["Action"])) <= LOG_ACTIONS
        assert s["Resource"] == {"Fn::GetAtt": ["LogGroup", "Arn"]}


def test_every_checkov_skip_has_a_reason():
    for name, resource in load_template()["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (name, skip)
            assert len(skip.get("comment", "")) > 20, (name, skip)


# --- the checks catch what they are for -----------------------------------------------------------

def by_sid(template: dict, sid: str) -> dict:
    return next(s for s in statements(template) if s.get("Sid") == sid)


def add_statement(statement: dict):
    return lambda t: policy_statements(t).append(copy.deepcopy(statement))


def drop_statement(sid: str):
    def mutate(t):
        policy_statements(t)[:] = [s for s in policy_statements(t) if s.get("Sid") != sid]
    return mutate


def set_in(sid: str, key: str, value):
    return lambda t: by_sid(t, sid).__setitem__(key, value)


def drop_condition(sid: str, operator: str | None = None):
    def mutate(t):
        s = by_sid(t, sid)
        if operator is None:
            s.pop("Condition")
        else:
            s["Condition"].pop(operator)
    return mutate


def add_condition(sid: str, operator: str, key: str, value):
    return lambda t: by_sid(t, sid)["Condition"].setdefault(operator, {}).__setitem__(key, value)


def add_action(sid: str, action: str):
    def mutate(t):
        s = by_sid(t, sid)
        s["Action"] = as_list(s["Action"]) + [action]
    return mutate


def remove_action(sid: str, action: str):
    def mutate(t):
        s = by_sid(t, sid)
        s["Action"] = [a for a in as_list(s["Action"]) if a != action]
    return mutate


def set_env(name: str, value):
    return lambda t: t["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"].__setitem__(name, value)


IAM_STAR = {"Sid": "Everything", "Effect": "Allow", "Action": "iam:*", "Resource": "*"}
EVERYTHING = {**DEFAULTS, "AllowsAdoption": True, "HasRepairableRoles": True}
BROKEN = [
    ("iam:* on *", add_statement(IAM_STAR), resource_star_problems),
    ("iam:* on *", add_statement(IAM_STAR), coverage_problems),
    ("iam:* on *", add_statement(IAM_STAR), ownership_problems),
    ("DeleteRole on *", set_in("ChangeCreatedRoles", "Resource", "*"), resource_star_problems),
    ("DeleteRole on a list with *", set_in("ChangeCreatedRoles", "Resource", ["*"]), resource_star_problems),
    ("PassRole on *", set_in("PassRolesToOwnedInstanceProfiles", "Resource", "*"), resource_star_problems),
    ("NotResource", add_statement({"Sid": "X", "Effect": "Allow", "Action": "iam:GetRole", "NotResource": "x"}),
     resource_star_problems),
    ("another account", set_in("ChangeOwnedRoles", "Resource", "arn:aws:iam::111111111111:role/*"), scope_problems),
    ("users too", set_in("ReadRoles", "Resource", {"Fn::Sub": ACCOUNT_ARN + "user/*"}), scope_problems),
    ("repair anywhere", set_in("RepairListedRoles", "Resource", {"Fn::Sub": ACCOUNT_ARN + "user/*"}), scope_problems),
    ("an action never called", add_action("ChangeOwnedRoles", "iam:CreateUser"), coverage_problems),
    ("a wildcard action", add_action("ReadRoles", "iam:Get*"), coverage_problems),
    ("another service", add_action("ReadRoles", "s3:GetObject"), coverage_problems),
    ("a called action missing", remove_action("ReadRoles", "iam:GetRole"), coverage_problems),
    ("trust policy update missing", remove_action("ChangeOwnedRoles", "iam:UpdateAssumeRolePolicy"),
     coverage_problems),
    ("PassRole missing", drop_statement("PassRolesToOwnedInstanceProfiles"), coverage_problems),
    ("any policy attachable", set_in("AttachAllowedPoliciesToOwnedRoles", "Condition",
                                     {"ArnLike": {"iam:PolicyARN": "*"}}), policy_arn_problems),
    ("a fixed policy list", add_condition("DetachAllowedPoliciesFromCreatedRoles", "ArnLike", "iam:PolicyARN",
                                          ["arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier"]),
     policy_arn_problems),
    ("no PolicyARN condition", drop_condition("AttachAllowedPoliciesToOwnedRoles", "ArnLike"), policy_arn_problems),
    ("repair of any policy", drop_condition("RepairListedRoles"), policy_arn_problems),
    ("env var off the parameter", set_env("ALLOWED_POLICY_ARNS", "arn:*:iam::aws:policy/*"), policy_arn_problems),
    ("create without the tag", drop_condition("CreateOwnedInstanceProfiles"), ownership_problems),
    ("create with the tag optional", drop_condition("CreateOwnedInstanceProfiles", "StringLike"), ownership_problems),
    ("delete any role", drop_condition("ChangeCreatedRoles"), ownership_problems),
    ("delete adopted roles", drop_condition("ChangeCreatedRoles", "Null"), ownership_problems),
    ("detach from any role", drop_condition("DetachAllowedPoliciesFromCreatedRoles", "StringLike"),
     ownership_problems),
    ("delete any profile", drop_condition("DeleteCreatedInstanceProfiles"), ownership_problems),
    ("delete adopted profiles", drop_condition("DeleteCreatedInstanceProfiles", "Null"), ownership_problems),
    ("change any trust policy", drop_condition("ChangeOwnedRoles"), ownership_problems),
    ("adopt without marking adopted", drop_condition("AdoptUnownedEntities", "StringEquals"), ownership_problems),
    ("adopt owned entities", drop_condition("AdoptUnownedEntities", "Null"), ownership_problems),
    ("repair with more actions", add_action("RepairListedRoles", "iam:DetachRolePolicy"), ownership_problems),
    ("tag-on-create marks adopted", drop_condition("TagWhatItCreates", "Null"), ownership_problems),
    ("tag-on-create anywhere", set_in("TagWhatItCreates", "Resource", {"Fn::Sub": ACCOUNT_ARN + "role/*"}),
     ownership_problems),
    ("boundary of adopted roles", drop_condition("SetBoundaryOfCreatedRoles", "Null"), ownership_problems),
    ("delete outside the path", set_in("ChangeCreatedRoles", "Resource", {"Fn::Sub": ACCOUNT_ARN + "role/*"}),
     path_problems),
    ("create outside the path", set_in("CreateOwnedRoles", "Resource", {"Fn::Sub": ACCOUNT_ARN + "role/*"}),
     path_problems),
    ("profile deletion outside the path",
     set_in("DeleteCreatedInstanceProfiles", "Resource", {"Fn::Sub": ACCOUNT_ARN + "instance-profile/*"}),
     path_problems),
    ("ownership tag settable", drop_statement("DenyRetaggingOwnedEntities"), protected_tag_problems),
    ("ownership tag removable", drop_statement("DenyUntaggingCreatedEntities"), protected_tag_problems),
    ("deny narrowed", add_condition("DenyRetaggingOwnedEntities", "StringEquals", "aws:PrincipalTag/x", "y"),
     protected_tag_problems),
    ("deny reshaped", drop_condition("DenyUntaggingCreatedEntities", "Null"), protected_tag_problems),
]


def run_check(check, template: dict, conditions: dict[str, bool]) -> list[str]:
    if check is coverage_problems:
        return check(template, code_actions())
    if check is ownership_problems:
        return check(template, conditions)
    return check(template)


@pytest.mark.parametrize("mutate, check", [pytest.param(m, c, id=f"{name}:{c.__name__}") for name, m, c in BROKEN])
def test_checks_catch_a_broken_template(mutate, check):
    template = resolved(EVERYTHING)
    assert run_check(check, template, EVERYTHING) == []
    mutate(template)
    assert run_check(check, template, EVERYTHING), "the check did not notice"


def test_options_off_means_no_exception():
    """The adoption and repair statements pass the ownership check only when their option is on."""
    template = resolved(EVERYTHING)
    assert ownership_problems(template, EVERYTHING) == []
    assert ownership_problems(template, {**EVERYTHING, "AllowsAdoption": False})
    assert ownership_problems(template, {**EVERYTHING, "HasRepairableRoles": False})


def test_coverage_catches_a_new_call_in_the_code():
    source = IAM_RS.read_text() + '\nsend!("DeleteUser", c.delete_user())\n'
    assert "iam:DeleteUser is called by src/iam.rs but not allowed" in coverage_problems(
        resolved(), called_actions(source))


def test_boundary_checks_catch_a_broken_template():
    with_boundary = {**DEFAULTS, "HasPermissionsBoundary": True}

    def problems(mutate):
        template = load_template()
        mutate(template)
        return boundary_problems(resolve(template, with_boundary), True)

    assert problems(lambda t: None) == []

    def else_branch(sid):
        def mutate(t):
            s = by_sid(t, sid)
            s["Condition"] = s["Condition"]["Fn::If"][2]
        return mutate

    def boundary_removal_allowed(t):
        for i, s in enumerate(policy_statements(t)):
            if "Fn::If" in s and s["Fn::If"][0] == "HasPermissionsBoundary":
                policy_statements(t)[i] = s["Fn::If"][2]

    assert problems(boundary_removal_allowed)
    assert problems(else_branch("CreateOwnedRoles"))
    assert problems(else_branch("SetBoundaryOfCreatedRoles"))
    assert problems(set_env("PERMISSIONS_BOUNDARY_ARN", copy.deepcopy(NO_VALUE)))
