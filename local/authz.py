"""Authorization as IAM applies it, for the local IAM: every request of the function is evaluated
against the execution role that `template.yaml` gives it, before moto sees it.

moto evaluates no policy. This layer sits in the proxy in front of moto (a hook of
`local.proxy.RecordingProxy`): for each IAM request it builds the request context IAM builds, asks
a real policy evaluator (npm `@cloud-copilot/iam-simulate`, in one long-lived Node process,
`local/authz/evaluate.mjs`) and answers a denied request as IAM does, 403 AccessDenied "User: ...
is not authorized to perform: iam:X on resource: Y because ...".

    with Evaluator() as evaluator:
        role = ExecutionRole.from_template(TEMPLATE, {"AllowAdoption": "true"})
        proxy.hooks.append(Authorizer(evaluator, role, moto_url))

The context, per the Service Authorization Reference for IAM (the evaluator keeps only the keys it
lists for the action):
- the resource ARN with the entity's path (the request's Path for a create);
- aws:RequestTag/* and aws:TagKeys from the request's Tags (or TagKeys, for an untag);
- aws:ResourceTag/* and iam:ResourceTag/* from the entity's tags at that moment, read from moto
  (none for an entity being created or already deleted);
- iam:PolicyARN; iam:PermissionsBoundary, the request's for CreateRole and
  PutRolePermissionsBoundary, else the role's current one;
- a second authorization where IAM makes one: iam:PassRole on the role for
  AddRoleToInstanceProfile, and, with `tag_on_create`, iam:TagRole / iam:TagInstanceProfile for a
  create that carries tags. The Service Authorization Reference lists no dependent action there, but
  IAM has been seen to require it (iamlive issue #97 and PR #98; brefphp/bref PR #2028; AWS's example
  policy "IAM: Create new users only with specific tags" allows iam:CreateUser with iam:TagUser).
  Both ways are run by the suite (`IAM_AUTHZ=tag-on-create`, the default, and `create-only`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import boto3

from .iam_error import IamError
from .proxy import Reply, Request

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
EVALUATOR = ROOT / "local" / "authz" / "evaluate.mjs"

ACCOUNT_ID = "123456789012"
STACK_NAME = "eb-instance-profile"
# The execution role's session as Lambda names it: the role, then the function.
ROLE_NAME = "eb-instance-profile-ExecutionRole"
SESSION_NAME = "eb-instance-profile"

# IAM_AUTHZ: how the suite's local IAM authorizes.
MODES = ("tag-on-create", "create-only", "off")

_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_REGION = re.compile(r"Credential=[^/\s,]+/\d{8}/(?P<region>[^/]+)/")

ROLE_ACTIONS = frozenset({
    "CreateRole", "GetRole", "ListRolePolicies", "ListAttachedRolePolicies", "GetRolePolicy",
    "ListRoleTags", "TagRole", "UntagRole", "PutRolePolicy", "DeleteRolePolicy", "AttachRolePolicy",
    "DetachRolePolicy", "PutRolePermissionsBoundary", "DeleteRolePermissionsBoundary", "UpdateRole",
    "UpdateRoleDescription", "UpdateAssumeRolePolicy", "DeleteRole",
})
PROFILE_ACTIONS = frozenset({
    "CreateInstanceProfile", "GetInstanceProfile", "DeleteInstanceProfile",
    "AddRoleToInstanceProfile", "RemoveRoleFromInstanceProfile", "TagInstanceProfile",
    "UntagInstanceProfile", "ListInstanceProfileTags",
})
# The request names the boundary being set; every other role action sees the role's current one.
BOUNDARY_FROM_REQUEST = frozenset({"CreateRole", "PutRolePermissionsBoundary"})
TAG_ON_CREATE = {"CreateRole": "TagRole", "CreateInstanceProfile": "TagInstanceProfile"}


def mode() -> str:
    """The suite's authorization mode, from IAM_AUTHZ (default tag-on-create)."""
    value = os.environ.get("IAM_AUTHZ", "tag-on-create")
    if value not in MODES:
        raise ValueError(f"IAM_AUTHZ must be one of {', '.join(MODES)}, not {value!r}")
    return value


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# --- the execution role, resolved from the template ------------------------------------------------

_NO_VALUE = object()


class _Resolver:
    """Just enough of CloudFormation's intrinsic functions to resolve the execution role: Ref,
    Fn::Sub, Fn::If (with the template's Conditions), Fn::Split, Fn::Join, Fn::GetAtt of the log
    group, Fn::Equals, Fn::Not, Fn::And, Fn::Or."""

    def __init__(self, template: dict, parameters: Mapping[str, str], pseudo: Mapping[str, str]):
        self.template = template
        self.values = {name: str(spec.get("Default", ""))
                       for name, spec in template.get("Parameters", {}).items()}
        unknown = set(parameters) - set(self.values)
        if unknown:
            raise ValueError(f"template has no parameters {sorted(unknown)}")
        self.values.update({k: str(v) for k, v in parameters.items()})
        self.values.update(pseudo)
        self.conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    def resolve(self, node):
        if isinstance(node, list):
            return [v for v in (self.resolve(item) for item in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return _NO_VALUE if arg == "AWS::NoValue" else self.values[arg]
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                name, if_true, if_false = arg
                return self.resolve(if_true if self.condition(name) else if_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key == "Fn::Split":
                separator, value = arg
                return str(self.resolve(value)).split(separator)
            if key == "Fn::Join":
                separator, values = arg
                return separator.join(str(v) for v in self.resolve(values))
            if key == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else arg
                names = {k: self.resolve(v) for k, v in names.items()}
                return re.sub(r"\$\{([^}!]+)\}",
                              lambda m: str(names.get(m[1], self.values.get(m[1], m[0]))), text)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attribute(logical, attribute)
        out = {}
        for key, value in node.items():
            value = self.resolve(value)
            if value is not _NO_VALUE:
                out[key] = value
        return out

    def attribute(self, logical: str, attribute: str) -> str:
        resource = self.template["Resources"][logical]
        if resource["Type"] == "AWS::Logs::LogGroup" and attribute == "Arn":
            name = self.resolve(resource["Properties"]["LogGroupName"])
            v = self.values
            return f"arn:{v['AWS::Partition']}:logs:{v['AWS::Region']}:{v['AWS::AccountId']}:log-group:{name}:*"
        raise ValueError(f"cannot resolve Fn::GetAtt {logical}.{attribute}")


def load_template(path: Path = TEMPLATE) -> dict:
    """template.yaml as plain data, short-form intrinsics (`!Sub`) as `{"Fn::Sub": ...}`."""
    import cfnlint.decode  # the suite's venv has cfn-lint; only this function needs it

    template, errors = cfnlint.decode.decode(str(path))
    if errors:
        raise ValueError(f"{path}: {errors}")
    return json.loads(json.dumps(template))


@dataclass(frozen=True)
class ExecutionRole:
    """The identity policies of the template's execution role in one partition, as deployed with
    `parameters`."""

    policies: tuple[dict, ...]
    partition: str
    account: str
    parameters: Mapping[str, str] = field(default_factory=dict)

    @property
    def principal(self) -> str:
        return f"arn:{self.partition}:sts::{self.account}:assumed-role/{ROLE_NAME}/{SESSION_NAME}"

    @classmethod
    def from_template(cls, parameters: Mapping[str, str] | None = None, *,
                      template: dict | None = None, partition: str = "aws",
                      region: str = "us-east-1", account: str = ACCOUNT_ID,
                      resource: str = "ExecutionRole") -> "ExecutionRole":
        template = template if template is not None else _cached_template()
        pseudo = {"AWS::Partition": partition, "AWS::AccountId": account, "AWS::Region": region,
                  "AWS::StackName": STACK_NAME, "AWS::URLSuffix": "amazonaws.com"}
        resolver = _Resolver(template, parameters or {}, pseudo)
        properties = resolver.resolve(template["Resources"][resource]["Properties"])
        policies = tuple({"name": p["PolicyName"], "policy": p["PolicyDocument"]}
                         for p in properties.get("Policies", []))
        return cls(policies, partition, account, dict(parameters or {}))

    def statement(self, sid: str) -> dict:
        for policy in self.policies:
            for statement in policy["policy"]["Statement"]:
                if statement.get("Sid") == sid:
                    return statement
        raise KeyError(sid)


_TEMPLATE_CACHE: dict[str, dict] = {}


def _cached_template() -> dict:
    stamp = f"{TEMPLATE}:{TEMPLATE.stat().st_mtime_ns}"
    if stamp not in _TEMPLATE_CACHE:
        _TEMPLATE_CACHE.clear()
        _TEMPLATE_CACHE[stamp] = load_template()
    return json.loads(json.dumps(_TEMPLATE_CACHE[stamp]))


def parameters_for(env: Mapping[str, str | None], **overrides: str) -> dict[str, str]:
    """The template parameters a function deployed with this environment was deployed with: the
    settings the template passes into the function's environment, plus the role-only options
    (AllowAdoption, RepairableRoleArns) given as overrides."""
    parameters = {}
    if env.get("ALLOWED_POLICY_ARNS"):
        parameters["AllowedPolicyArns"] = env["ALLOWED_POLICY_ARNS"]
    if env.get("PERMISSIONS_BOUNDARY_ARN"):
        parameters["PermissionsBoundaryArn"] = env["PERMISSIONS_BOUNDARY_ARN"]
    if env.get("INLINE_POLICIES"):
        parameters["InlinePolicies"] = env["INLINE_POLICIES"]
    parameters.update(overrides)
    return parameters


# --- the evaluator process -------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    action: str                      # iam:CreateRole
    resource: str
    context: Mapping[str, object]
    decision: str                    # Allowed | ImplicitlyDenied | ExplicitlyDenied
    allowed_by: tuple[str, ...] = ()
    denied_by: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.decision == "Allowed"

    def message(self, principal: str) -> str:
        """IAM's AccessDenied message for this decision."""
        why = ("with an explicit deny in an identity-based policy" if self.decision == "ExplicitlyDenied"
               else f"because no identity-based policy allows the {self.action} action")
        return f"User: {principal} is not authorized to perform: {self.action} on resource: {self.resource} {why}"


class EvaluatorError(RuntimeError):
    pass


class Evaluator:
    """The Node process running iam-simulate; thread-safe (one request at a time on its pipe)."""

    def __init__(self, script: Path = EVALUATOR):
        self._script = script
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._ids = 0

    def start(self) -> "Evaluator":
        modules = self._script.parent / "node_modules" / "@cloud-copilot" / "iam-simulate"
        if not modules.is_dir():
            raise EvaluatorError(f"{modules} is missing: run `npm ci --prefix {self._script.parent}` "
                                 "(scripts/test does)")
        self._proc = subprocess.Popen(["node", str(self._script)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=None, text=True, bufsize=1)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None

    def __enter__(self) -> "Evaluator":
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def evaluate(self, role: ExecutionRole, action: str, resource: str,
                 context: Mapping[str, object]) -> Decision:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                raise EvaluatorError("the policy evaluator is not running")
            self._ids += 1
            request = {"id": self._ids, "principal": role.principal, "action": action,
                       "resource": resource, "account": role.account, "context": dict(context),
                       "policies": list(role.policies)}
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise EvaluatorError("the policy evaluator exited")
        answer = json.loads(line)
        if answer.get("id") != request["id"]:
            raise EvaluatorError(f"answer {answer.get('id')} to request {request['id']}: out of step")
        if answer.get("error"):
            raise EvaluatorError(f"{action} on {resource}: {answer['error']}")
        return Decision(action, resource, dict(context), answer["decision"],
                        tuple(answer.get("allowedBy", ())), tuple(answer.get("deniedBy", ())))


# --- the proxy hook --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entity:
    """What IAM's authorization sees of an existing role or instance profile."""

    path: str
    tags: Mapping[str, str]
    boundary: str | None = None


@dataclass(frozen=True)
class Check:
    """One authorization IAM makes for a request."""

    action: str
    resource: str
    context: Mapping[str, object]


def _form(body: bytes) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _members(params: Mapping[str, str], prefix: str) -> list[str]:
    found = []
    n = 1
    while f"{prefix}.member.{n}" in params:
        found.append(params[f"{prefix}.member.{n}"])
        n += 1
    return found


def _tags(params: Mapping[str, str]) -> dict[str, str]:
    tags = {}
    n = 1
    while f"Tags.member.{n}.Key" in params:
        tags[params[f"Tags.member.{n}.Key"]] = params.get(f"Tags.member.{n}.Value", "")
        n += 1
    return tags


def checks(action: str, params: Mapping[str, str], *, partition: str, account: str,
           role: Entity | None, profile: Entity | None, passed_role: Entity | None,
           tag_on_create: bool) -> list[Check]:
    """The authorizations IAM makes for one request, with their contexts. `role` / `profile`: the
    entity the request is about as it is now (None if absent); `passed_role`: the role that
    AddRoleToInstanceProfile names."""
    base = f"arn:{partition}:iam::{account}:"
    request_tags = _tags(params)
    if action in ROLE_ACTIONS:
        name = params.get("RoleName", "")
        entity = None if action == "CreateRole" else role
        path = (params.get("Path") or "/") if action == "CreateRole" else (entity.path if entity else "/")
        resource = f"{base}role{path}{name}"
    elif action in PROFILE_ACTIONS:
        name = params.get("InstanceProfileName", "")
        entity = None if action == "CreateInstanceProfile" else profile
        path = ((params.get("Path") or "/") if action == "CreateInstanceProfile"
                else (entity.path if entity else "/"))
        resource = f"{base}instance-profile{path}{name}"
    else:
        # Not an action of this function's: authorized against no particular resource, so only a
        # statement with Resource "*" could allow it.
        return [Check(f"iam:{action}", "*", {})]

    context: dict[str, object] = {"aws:PrincipalAccount": account}
    for key, value in (entity.tags if entity else {}).items():
        context[f"aws:ResourceTag/{key}"] = value
        context[f"iam:ResourceTag/{key}"] = value
    if request_tags:
        for key, value in request_tags.items():
            context[f"aws:RequestTag/{key}"] = value
        context["aws:TagKeys"] = list(request_tags)
    untagged = _members(params, "TagKeys")
    if untagged:
        context["aws:TagKeys"] = untagged
    if params.get("PolicyArn"):
        context["iam:PolicyARN"] = params["PolicyArn"]
    if action in BOUNDARY_FROM_REQUEST:
        if params.get("PermissionsBoundary"):
            context["iam:PermissionsBoundary"] = params["PermissionsBoundary"]
    elif entity is not None and entity.boundary:
        context["iam:PermissionsBoundary"] = entity.boundary

    found = [Check(f"iam:{action}", resource, context)]
    if tag_on_create and action in TAG_ON_CREATE and request_tags:
        tagging = {k: v for k, v in context.items()
                   if k.startswith("aws:RequestTag/") or k in ("aws:TagKeys", "aws:PrincipalAccount")}
        found.append(Check(f"iam:{TAG_ON_CREATE[action]}", resource, tagging))
    if action == "AddRoleToInstanceProfile":
        role_name = params.get("RoleName", "")
        role_path = passed_role.path if passed_role else "/"
        found.append(Check("iam:PassRole", f"{base}role{role_path}{role_name}",
                           {"aws:PrincipalAccount": account}))
    return found


class Authorizer:
    """A RecordingProxy hook: answers an IAM request that the execution role does not allow with
    IAM's AccessDenied, and lets every other request through (None). `decisions` keeps every
    evaluation, in order, for tests to read."""

    def __init__(self, evaluator: Evaluator, roles: Callable[[str], ExecutionRole] | ExecutionRole,
                 moto_url: str, *, tag_on_create: bool = True, moto_account: str | None = None):
        self.evaluator = evaluator
        self._roles = roles if callable(roles) else (lambda _partition, r=roles: r)
        self.moto_url = moto_url
        # The moto account whose entities are read (local/accounts.py); None: moto's default one.
        self.moto_account = moto_account
        self.tag_on_create = tag_on_create
        self.decisions: list[Decision] = []
        self._lock = threading.Lock()
        self._clients: dict[str, object] = {}

    @property
    def denials(self) -> list[Decision]:
        with self._lock:
            return [d for d in self.decisions if not d.allowed]

    def __call__(self, request: Request) -> Reply | None:
        if request.service != "iam" or not request.action:
            return None
        region = _REGION.search(request.headers.get("Authorization") or "")
        partition = partition_of(region["region"] if region else "us-east-1")
        role = self._roles(partition)
        params = _form(request.body)
        action = request.action
        entity_role = passed = entity_profile = None
        if action in ROLE_ACTIONS and action != "CreateRole":
            entity_role = self._role(partition, params.get("RoleName", ""))
        if action in PROFILE_ACTIONS and action != "CreateInstanceProfile":
            entity_profile = self._profile(partition, params.get("InstanceProfileName", ""))
        if action == "AddRoleToInstanceProfile":
            passed = self._role(partition, params.get("RoleName", ""))
        for check in checks(action, params, partition=partition, account=role.account,
                            role=entity_role, profile=entity_profile, passed_role=passed,
                            tag_on_create=self.tag_on_create):
            decision = self.evaluator.evaluate(role, check.action, check.resource, check.context)
            with self._lock:
                self.decisions.append(decision)
            if not decision.allowed:
                return IamError(403, "AccessDenied", decision.message(role.principal))
        return None

    # entity state, read from moto itself (not through any proxy)

    def _client(self, partition: str):
        region = {"aws": "us-east-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1"}[partition]
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                client = boto3.session.Session().client("iam", region_name=region,
                                                        endpoint_url=self.moto_url, **_CREDENTIALS)
                if self.moto_account is not None:
                    from .accounts import select_moto_account
                    select_moto_account(client, self.moto_account)
                self._clients[region] = client
            return client

    def _read(self, partition: str, call: str, key: str, **name) -> dict | None:
        """The entity as GetRole / GetInstanceProfile return it, None if there is none."""
        if not next(iter(name.values())):
            return None
        client = self._client(partition)
        try:
            return getattr(client, call)(**name)[key]
        except client.exceptions.NoSuchEntityException:
            return None

    def _role(self, partition: str, name: str) -> Entity | None:
        role = self._read(partition, "get_role", "Role", RoleName=name)
        if role is None:
            return None
        boundary = (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
        return Entity(role["Path"], {t["Key"]: t["Value"] for t in role.get("Tags", [])}, boundary)

    def _profile(self, partition: str, name: str) -> Entity | None:
        profile = self._read(partition, "get_instance_profile", "InstanceProfile", InstanceProfileName=name)
        if profile is None:
            return None
        return Entity(profile["Path"], {t["Key"]: t["Value"] for t in profile.get("Tags", [])})
