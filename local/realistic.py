"""IAM as AWS accounts meet it, for the local IAM: a hook of `local.proxy.RecordingProxy` that sits
after the authorizer (local/authz.py) and makes moto, which is instantly consistent, never loses an
answer and enforces no quotas, behave like the real service:

1. Eventual consistency. For a short while after CreateRole, CreateInstanceProfile,
   AddRoleToInstanceProfile, AttachRolePolicy and PutRolePolicy, other requests about that entity
   may be answered by a replica that has not seen the change: NoSuchEntity naming the new role or
   profile (or, for AddRoleToInstanceProfile, InvalidParameterValue "Invalid IAM Instance Profile
   name"), reads without the new role or policy; and after RemoveRoleFromInstanceProfile,
   DetachRolePolicy or DeleteRolePolicy, a DeleteConflict from DeleteRole or DeleteInstanceProfile.
   Sources: AWS, "Troubleshooting IAM: changes that I make are not always immediately visible"
   (docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency);
   terraform-provider-aws internal/service/iam/instance_profile.go (retries
   AddRoleToInstanceProfile on `InvalidParameterValue` "Invalid IAM Instance Profile name" and
   `NoSuchEntity` "The role with name" for propagationTimeout, 2 minutes), role.go (retries
   DeleteRole on DeleteConflict), role_policy_attachment.go.
2. Answers lost after the write. A mutating request takes effect in moto and its answer becomes a
   500 ServiceFailure or a reset connection; the SDK's retry then meets EntityAlreadyExists,
   NoSuchEntity or LimitExceeded (an instance profile holds one role: adding it again is
   LimitExceeded, AWS API reference AddRoleToInstanceProfile).
3. The limits moto does not enforce (AWS, "IAM and AWS STS quotas",
   docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html): managed policies per role
   (default 10, `IAM_POLICIES_PER_ROLE`; 409 LimitExceeded "Cannot exceed quota for
   PoliciesPerRole: 10", as aws/eks-hybrid PR #741 quotes it), 50 tags per entity, tag keys unique
   regardless of case (400 InvalidInput "Duplicate tag keys found. Please note that Tag keys are
   case insensitive.", serverless/serverless issue #7885), role and instance profile names unique
   regardless of case, the trust policy at most 2,048 characters without whitespace (409
   LimitExceeded "Cannot exceed quota for ACLSizePerRole: 2048", kubeflow/kubeflow issue #6687),
   a role's inline policies at most 10,240 together (409 LimitExceeded "Maximum policy size of 10240
   bytes exceeded for role X", kubernetes/kops issue #12558), and the name patterns and lengths
   (role 64, instance profile 128, `[\\w+=,.@-]+`), and those of a tag (key 1-128 characters,
   value at most 256, both only `[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]`: AWS IAM API reference, "Tag",
   docs.aws.amazon.com/IAM/latest/APIReference/API_Tag.html; moto checks only the lengths).
   RemoveRoleFromInstanceProfile of a role the profile does not hold answers NoSuchEntity, as IAM
   does (moto answers 500).

Every choice is a hash of the seed, the change, the request (action and form body) and how often
that same request came since the change: the same run gets the same behaviour whatever the thread
timing, and a retry draws again. A change stops being able to show stale answers after its window
(seeded, 0.5-1.5 s), so that a later request is never answered from before the change.

    proxy.hooks.append(Realistic.from_env(moto_url))   # None with IAM_REALISTIC=off

Environment: IAM_REALISTIC (on, or off for plain moto), IAM_REALISTIC_SEED (default 1),
IAM_POLICIES_PER_ROLE (default 10), IAM_REALISTIC_STALE_RATE (the share of requests after a change
that a stale replica answers, default 0.3, each for up to 2 attempts) and IAM_REALISTIC_LOSE_RATE
(the share of writes whose first answer is lost, default 0.06).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import threading
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from typing import Mapping

import boto3

from .iam_error import IamError
from .proxy import Exchange, Reply, Request

_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_REGION = re.compile(r"Credential=[^/\s,]+/\d{8}/(?P<region>[^/]+)/")
_NAME = re.compile(r"[\w+=,.@-]+")
_PATH = re.compile(r"(/[\x21-\x7e]+)*/|/")

MAX_TAGS = 50
TRUST_POLICY_MAX = 2048
INLINE_POLICIES_MAX = 10240

# Requests that use a role and meet NoSuchEntity while a new role has not reached their replica.
ROLE_USES = frozenset({
    "GetRole", "ListAttachedRolePolicies", "ListRolePolicies", "GetRolePolicy", "ListRoleTags",
    "AttachRolePolicy", "PutRolePolicy", "TagRole", "UntagRole", "UpdateRole",
    "UpdateAssumeRolePolicy", "PutRolePermissionsBoundary", "AddRoleToInstanceProfile",
})
PROFILE_USES = frozenset({"GetInstanceProfile", "TagInstanceProfile", "UntagInstanceProfile",
                          "AddRoleToInstanceProfile"})
MUTATING_PREFIXES = ("Create", "Delete", "Attach", "Detach", "Put", "Add", "Remove", "Tag",
                     "Untag", "Update")


def enabled() -> bool:
    value = os.environ.get("IAM_REALISTIC", "on")
    if value not in ("on", "off"):
        raise ValueError(f"IAM_REALISTIC must be on or off, not {value!r}")
    return value == "on"


def no_such_role(name: str) -> IamError:
    return IamError(404, "NoSuchEntity", f"The role with name {name} cannot be found.")


def no_such_profile(name: str) -> IamError:
    return IamError(404, "NoSuchEntity", f"Instance Profile {name} cannot be found.")


def limit_exceeded(message: str) -> IamError:
    return IamError(409, "LimitExceeded", message)


def delete_conflict(message: str) -> IamError:
    return IamError(409, "DeleteConflict", message)


def validation_error(value: str, member: str, constraint: str) -> IamError:
    return IamError(400, "ValidationError", f"1 validation error detected: Value '{value}' at "
                    f"'{member}' failed to satisfy constraint: Member must {constraint}")


def service_failure() -> IamError:
    return IamError(500, "ServiceFailure", "The request processing has failed because of an "
                    "unknown error, exception or failure.", error_type="Receiver")


@dataclass
class Change:
    """A change IAM has made but not every replica shows yet."""

    id: str                          # kind:entity:detail#occurrence, what the draws hash
    kind: str                        # the action that made it
    role: str | None
    profile: str | None
    detail: str | None               # the policy ARN or inline policy name
    until: float                     # monotonic time after which every replica shows it
    seen: collections.Counter = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class Stale:
    """How a request is answered from before a change: an error, or a read with something missing."""

    error: IamError | None = None
    strip: str | None = None         # "roles": the profile's roles; else the member text to drop


def _tag_char(c: str) -> bool:
    """Whether IAM allows `c` in a tag key or value: a letter, a separator (space), a number, or
    one of `_.:/=+-@`."""
    return unicodedata.category(c)[0] in "LZN" or c in "_.:/=+-@"


def _form(body: bytes) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _members(params: Mapping[str, str], prefix: str) -> list[dict[str, str]]:
    """Tags.member.N.Key / .Value as a list of dicts, in order."""
    found: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        match = re.fullmatch(rf"{prefix}\.member\.(\d+)\.(\w+)", key)
        if match:
            found.setdefault(int(match[1]), {})[match[2]] = value
    return [found[i] for i in sorted(found)]


def _size(document: str) -> int:
    """A policy's size as IAM counts it: characters other than whitespace."""
    return sum(1 for c in document if not c.isspace())


class Realistic:
    """The hook. `observed` counts what it did, by kind, for tests and docs to read."""

    def __init__(self, moto_url: str, *, seed: int | str = 1, policies_per_role: int = 10,
                 stale_rate: float = 0.3, max_stale: int = 2, lose_rate: float = 0.06):
        self.moto_url = moto_url
        self.seed = str(seed)
        self.policies_per_role = policies_per_role
        self.stale_rate = stale_rate
        self.max_stale = max_stale
        self.lose_rate = lose_rate
        self.observed: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._changes: list[Change] = []
        self._occurrences: collections.Counter[str] = collections.Counter()
        self._repeats: collections.Counter[bytes] = collections.Counter()
        self._entity_locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
        self._clients: dict[str, object] = {}

    @classmethod
    def from_env(cls, moto_url: str, env: Mapping[str, str] | None = None) -> "Realistic | None":
        env = os.environ if env is None else env
        if env.get("IAM_REALISTIC", "on") == "off":
            return None
        return cls(moto_url, seed=env.get("IAM_REALISTIC_SEED", "1"),
                   policies_per_role=int(env.get("IAM_POLICIES_PER_ROLE", "10")),
                   stale_rate=float(env.get("IAM_REALISTIC_STALE_RATE", "0.3")),
                   lose_rate=float(env.get("IAM_REALISTIC_LOSE_RATE", "0.06")))

    # --- draws -------------------------------------------------------------------------------------

    def _draw(self, *parts: object) -> float:
        digest = hashlib.sha256(":".join([self.seed, *map(str, parts)]).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def _note(self, kind: str) -> None:
        with self._lock:
            self.observed[kind] += 1

    # --- the hook ----------------------------------------------------------------------------------

    def __call__(self, request: Request) -> Reply | None:
        if request.service != "iam" or not request.action:
            return None
        return _Realistic(self, request, _form(request.body))

    def client(self, request: Request):
        match = _REGION.search(request.headers.get("Authorization") or "")
        region = match["region"] if match else "us-east-1"
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                client = boto3.session.Session().client("iam", region_name=region,
                                                        endpoint_url=self.moto_url, **_CREDENTIALS)
                self._clients[region] = client
            return client

    def entity_lock(self, params: Mapping[str, str]) -> threading.Lock:
        """One lock per role (or profile) name: a limit check and the write it guards are atomic."""
        key = (params.get("RoleName") or params.get("InstanceProfileName") or "").lower()
        with self._lock:
            return self._entity_locks[key]

    # --- 1. eventual consistency -------------------------------------------------------------------

    def stale(self, action: str, params: Mapping[str, str], fingerprint: bytes) -> Stale | None:
        role = (params.get("RoleName") or "").lower() or None
        profile = (params.get("InstanceProfileName") or "").lower() or None
        now = time.monotonic()
        with self._lock:
            active = [c for c in self._changes if c.until > now
                      and ((role and c.role == role) or (profile and c.profile == profile))]
            picks = []
            for change in active:
                n = change.seen[fingerprint]
                change.seen[fingerprint] += 1
                picks.append((change, n))
        # The latest change that bears on this request decides: a replica that has seen it has
        # seen the earlier ones too, so a request is stale for at most max_stale attempts.
        for change, n in reversed(picks):
            effect = self._effect(change, action, params)
            if effect is None:
                continue
            draw = self._draw("stale", change.id, fingerprint.hex())
            times = 0 if draw >= self.stale_rate else 1 + int(draw / self.stale_rate * self.max_stale)
            if n < times:
                self._note(f"stale {action} after {change.kind}")
                return effect
            return None
        return None

    def _effect(self, change: Change, action: str, params: Mapping[str, str]) -> Stale | None:
        role, profile = params.get("RoleName", ""), params.get("InstanceProfileName", "")
        kind = change.kind
        if kind == "CreateRole" and action in ROLE_USES and role.lower() == change.role:
            return Stale(no_such_role(role))
        if kind == "CreateInstanceProfile" and action in PROFILE_USES and profile.lower() == change.profile:
            if action == "AddRoleToInstanceProfile" and self._draw("invalid", change.id) < 0.5:
                return Stale(IamError(400, "InvalidParameterValue", "Invalid IAM Instance Profile name"))
            return Stale(no_such_profile(profile))
        if kind == "AddRoleToInstanceProfile" and action == "GetInstanceProfile" and profile.lower() == change.profile:
            return Stale(strip="roles")
        if kind == "AttachRolePolicy" and action == "ListAttachedRolePolicies" and role.lower() == change.role:
            return Stale(strip=f"<PolicyArn>{change.detail}</PolicyArn>")
        if kind == "PutRolePolicy" and role.lower() == change.role:
            if action == "ListRolePolicies":
                return Stale(strip=f"<member>{change.detail}</member>")
            if action == "GetRolePolicy" and params.get("PolicyName") == change.detail:
                return Stale(IamError(404, "NoSuchEntity", f"The role policy with name {change.detail} cannot be found."))
        if kind == "RemoveRoleFromInstanceProfile":
            message = "Cannot delete entity, must remove roles from instance profile first."
            if action == "DeleteRole" and role.lower() == change.role:
                return Stale(delete_conflict(message))
            if action == "DeleteInstanceProfile" and profile.lower() == change.profile:
                return Stale(delete_conflict(message))
        if kind == "DetachRolePolicy" and action == "DeleteRole" and role.lower() == change.role:
            return Stale(delete_conflict("Cannot delete entity, must detach all policies first."))
        if kind == "DeleteRolePolicy" and action == "DeleteRole" and role.lower() == change.role:
            return Stale(delete_conflict("Cannot delete entity, must delete policies first."))
        return None

    def record_change(self, action: str, params: Mapping[str, str]) -> None:
        detail = {"AttachRolePolicy": params.get("PolicyArn"), "DetachRolePolicy": params.get("PolicyArn"),
                  "PutRolePolicy": params.get("PolicyName"),
                  "DeleteRolePolicy": params.get("PolicyName")}.get(action)
        if action not in ("CreateRole", "CreateInstanceProfile", "AddRoleToInstanceProfile",
                          "AttachRolePolicy", "PutRolePolicy", "RemoveRoleFromInstanceProfile",
                          "DetachRolePolicy", "DeleteRolePolicy"):
            return
        role = (params.get("RoleName") or "").lower() or None
        profile = (params.get("InstanceProfileName") or "").lower() or None
        if action == "CreateRole":
            profile = None
        base = f"{action}:{role}:{profile}:{detail}"
        with self._lock:
            self._occurrences[base] += 1
            change_id = f"{base}#{self._occurrences[base]}"
            window = 0.5 + self._draw("window", change_id)
            self._changes = [c for c in self._changes if c.until > time.monotonic()]
            self._changes.append(Change(change_id, action, role, profile, detail,
                                        time.monotonic() + window))

    # --- 2. answers lost after the write -----------------------------------------------------------

    def loses(self, action: str, fingerprint: bytes, repeat: int) -> str | None:
        """None, or how the answer of this write is lost: "ServiceFailure" or "reset". Only a
        request's first attempt loses its answer, so that a retry always gets one."""
        if repeat or not action.startswith(MUTATING_PREFIXES):
            return None
        draw = self._draw("lose", fingerprint.hex())
        if draw >= self.lose_rate:
            return None
        return "ServiceFailure" if draw < self.lose_rate / 2 else "reset"

    # --- 3. limits ---------------------------------------------------------------------------------

    def limit(self, request: Request, action: str, params: Mapping[str, str]) -> IamError | None:
        """The error IAM answers for a request that breaks one of its rules, checked against moto's
        state (under the entity's lock), or None."""
        iam = self.client(request)
        if action in ("CreateRole", "CreateInstanceProfile"):
            key, member, longest = (("RoleName", "roleName", 64) if action == "CreateRole"
                                    else ("InstanceProfileName", "instanceProfileName", 128))
            name = params.get(key, "")
            invalid = self._name_error(name, member, longest) or self._path_error(params.get("Path"))
            if invalid:
                return invalid
            tags = _members(params, "Tags")
            tag_error = self._tags_error(tags, [], action)
            if tag_error:
                return tag_error
            if action == "CreateRole":
                trust = params.get("AssumeRolePolicyDocument", "")
                if _size(trust) > TRUST_POLICY_MAX:
                    return limit_exceeded(f"Cannot exceed quota for ACLSizePerRole: {TRUST_POLICY_MAX}")
            taken = self._names(iam, action)
            clash = next((n for n in taken if n.lower() == name.lower() and n != name), None)
            if clash is not None:
                what = "Role with name" if action == "CreateRole" else "Instance Profile"
                return IamError(409, "EntityAlreadyExists", f"{what} {name} already exists.")
            return None
        if action == "AttachRolePolicy":
            role, arn = params.get("RoleName", ""), params.get("PolicyArn", "")
            attached = self._attached(iam, role)
            if attached is not None and arn not in attached and len(attached) >= self.policies_per_role:
                return limit_exceeded(f"Cannot exceed quota for PoliciesPerRole: {self.policies_per_role}")
            return None
        if action == "PutRolePolicy":
            role, name = params.get("RoleName", ""), params.get("PolicyName", "")
            others = self._inline_sizes(iam, role, exclude=name)
            if others is not None and others + _size(params.get("PolicyDocument", "")) > INLINE_POLICIES_MAX:
                return limit_exceeded(f"Maximum policy size of {INLINE_POLICIES_MAX} bytes exceeded for role {role}")
            return None
        if action in ("TagRole", "TagInstanceProfile"):
            existing = self._tag_keys(iam, action, params)
            return self._tags_error(_members(params, "Tags"), existing or [], action)
        if action == "RemoveRoleFromInstanceProfile":
            profile, role = params.get("InstanceProfileName", ""), params.get("RoleName", "")
            try:
                held = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]
            except iam.exceptions.NoSuchEntityException:
                return None
            if not any(r["RoleName"].lower() == role.lower() for r in held):
                return no_such_role(role)
        return None

    @staticmethod
    def _name_error(name: str, member: str, longest: int) -> IamError | None:
        if not 1 <= len(name) <= longest:
            return validation_error(name, member, f"have length less than or equal to {longest}")
        if not _NAME.fullmatch(name):
            return validation_error(name, member, r"satisfy regular expression pattern: [\w+=,.@-]+")
        return None

    @staticmethod
    def _path_error(path: str | None) -> IamError | None:
        if path is None:
            return None
        if len(path) > 512 or not _PATH.fullmatch(path):
            return validation_error(path, "path", r"satisfy regular expression pattern: (\u002F)|(\u002F[\u0021-\u007E]+\u002F)")
        return None

    @staticmethod
    def _tags_error(tags: list[dict[str, str]], existing: list[str], action: str) -> IamError | None:
        for i, tag in enumerate(tags, start=1):
            for part, longest, shortest in (("Key", 128, 1), ("Value", 256, 0)):
                text, member = tag.get(part, ""), f"tags.{i}.member.{part.lower()}"
                if len(text) < shortest:
                    return validation_error(text, member, f"have length greater than or equal to {shortest}")
                if len(text) > longest:
                    return validation_error(text, member, f"have length less than or equal to {longest}")
                if not all(_tag_char(c) for c in text):
                    return validation_error(text, member, "satisfy regular expression pattern: "
                                            r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*")
        keys = [t.get("Key", "") for t in tags]
        if len({k.lower() for k in keys}) != len(keys):
            return IamError(400, "InvalidInput", "Duplicate tag keys found. Please note that Tag keys "
                            "are case insensitive.")
        if len(keys) > MAX_TAGS:
            return validation_error("tags", "tags", f"have length less than or equal to {MAX_TAGS}")
        total = {k.lower() for k in existing} | {k.lower() for k in keys}
        if len(total) > MAX_TAGS:
            entity = "Role" if action in ("CreateRole", "TagRole") else "InstanceProfile"
            return limit_exceeded(f"Cannot exceed quota for TagsPer{entity}: {MAX_TAGS}")
        return None

    @staticmethod
    def _names(iam, action: str) -> list[str]:
        if action == "CreateRole":
            pages = iam.get_paginator("list_roles").paginate()
            return [r["RoleName"] for page in pages for r in page["Roles"]]
        pages = iam.get_paginator("list_instance_profiles").paginate()
        return [p["InstanceProfileName"] for page in pages for p in page["InstanceProfiles"]]

    @staticmethod
    def _attached(iam, role: str) -> list[str] | None:
        try:
            pages = iam.get_paginator("list_attached_role_policies").paginate(RoleName=role)
            return [p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]]
        except iam.exceptions.NoSuchEntityException:
            return None

    @staticmethod
    def _inline_sizes(iam, role: str, exclude: str) -> int | None:
        try:
            names = iam.list_role_policies(RoleName=role)["PolicyNames"]
            total = 0
            for name in names:
                if name == exclude:
                    continue
                document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                text = document if isinstance(document, str) else json.dumps(document)
                total += _size(urllib.parse.unquote(text))
            return total
        except iam.exceptions.NoSuchEntityException:
            return None

    @staticmethod
    def _tag_keys(iam, action: str, params: Mapping[str, str]) -> list[str] | None:
        try:
            if action == "TagRole":
                tags = iam.get_role(RoleName=params.get("RoleName", ""))["Role"].get("Tags", [])
            else:
                tags = iam.get_instance_profile(
                    InstanceProfileName=params.get("InstanceProfileName", ""))["InstanceProfile"].get("Tags", [])
        except iam.exceptions.NoSuchEntityException:
            return None
        new = {t.get("Key", "").lower() for t in _members(params, "Tags")}
        return [t["Key"] for t in tags if t["Key"].lower() not in new]


# Actions whose limit check reads moto and must not race the write it guards.
_CHECKED = frozenset({"CreateRole", "CreateInstanceProfile", "AttachRolePolicy", "PutRolePolicy",
                      "TagRole", "TagInstanceProfile", "RemoveRoleFromInstanceProfile"})


REQUEST_ID_TAG = "eb-instance-profile:request-id"


def request_fingerprint(request: Request) -> bytes:
    """The request as its draws see it: action and form body, without the value of the function's
    request-id tag (`<RequestId> <mark>`: the test's random RequestId and a mark random per
    delivery), so that the same run of requests draws the same answers whatever those are."""
    pairs = urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    keys = {k.removesuffix(".Key") for k, v in pairs if k.endswith(".Key") and v == REQUEST_ID_TAG}
    if keys:
        pairs = [(k, "" if k.endswith(".Value") and k.removesuffix(".Value") in keys else v)
                 for k, v in pairs]
        body = urllib.parse.urlencode(pairs).encode()
    else:
        body = request.body
    return (request.action or "").encode() + b"\0" + body


def _strip(body: bytes, strip: str) -> bytes:
    text = body.decode("utf-8", "replace")
    if strip == "roles":
        text = re.sub(r"<Roles>.*?</Roles>", "<Roles/>", text, flags=re.S)
    else:
        text = re.sub(r"<member>(?:(?!</member>).)*?" + re.escape(strip) + r".*?</member>"
                      if strip.startswith("<PolicyArn>") else re.escape(strip), "", text, flags=re.S)
    return text.encode()


class _Realistic(Reply):
    """One request through the realistic IAM."""

    def __init__(self, realistic: Realistic, request: Request, params: dict[str, str]):
        self.r = realistic
        self.request = request
        self.params = params

    def apply(self, exchange: Exchange) -> str:
        r, action, params = self.r, self.request.action or "", self.params
        fingerprint = request_fingerprint(self.request)
        with r._lock:
            repeat = r._repeats[fingerprint]
            r._repeats[fingerprint] += 1
        stale = r.stale(action, params, fingerprint)
        if stale is not None and stale.error is not None:
            return stale.error.apply(exchange)
        if action in _CHECKED:
            with r.entity_lock(params):
                refused = r.limit(self.request, action, params)
                if refused is not None:
                    r._note(f"limit {refused.code}")
                    return refused.apply(exchange)
                status, headers, body = exchange.forward()
        else:
            status, headers, body = exchange.forward()
        if 200 <= status < 300:
            r.record_change(action, params)
            if stale is not None and stale.strip:
                body = _strip(body, stale.strip)
            lost = r.loses(action, fingerprint, repeat)
            if lost == "ServiceFailure":
                r._note("lost answer: ServiceFailure")
                service_failure().apply(exchange)
                return f"realistic: {action} took effect, answer lost (ServiceFailure)"
            if lost == "reset":
                r._note("lost answer: reset")
                exchange.drop(reset=True)
                return f"realistic: {action} took effect, answer lost (reset)"
        exchange.send(status, headers, body)
        return "forwarded" if stale is None else f"realistic: stale {action}"
