"""Real IAM's behaviour that moto does not show, and how the function survives it.

Every function of the suite talks to the realistic IAM (local/realistic.py: eventual consistency,
answers lost after the write, IAM's quotas) behind the authorizer. The tests here pin one behaviour
each with a deterministic hook in a proxy of their own, placed after the realistic IAM, so that the
behaviour happens for sure; the property-style run at the end drives whole lifecycles through the
realistic IAM alone, with raised rates, for several seeds. docs/reliability.md has the table.
"""

from __future__ import annotations

import collections
import threading

import pytest

from faults import LoseAnswers, MutatingCalls, form_value
from helpers import DOCKER, READ_ONLY, S3_READ, WEB, WORKER, eb_policies, failed, succeeded
from local import realistic
from local.iam_error import IamError
from local.proxy import Exchange, RecordingProxy, Reply, Request

EMPTY = {"roles": {}, "instance_profiles": {}}
ALL_TIERS = sorted(eb_policies().values())
MISSING_POLICY = "arn:aws:iam::aws:policy/AWSElasticBeanstalkRetired"


@pytest.fixture
def through_proxy(start_function, proxy):
    def start(extra_env: dict | None = None):
        return start_function({"AWS_ENDPOINT_URL_IAM": proxy.url, **(extra_env or {})})
    return start


def assert_complete(state: dict, profile: str, policies=ALL_TIERS) -> None:
    assert set(state["instance_profiles"]) == {profile}, state
    held = state["instance_profiles"][profile]["roles"]
    assert len(held) == 1 and set(state["roles"]) == set(held), state
    assert state["roles"][held[0]]["managed_policies"] == sorted(policies), state


class Once:
    """Hook: the first `times` requests of `action` (matching `when`) get `reply(request)`; every
    request of that action is counted in `seen`."""

    def __init__(self, action: str, reply, times: int = 1, when=lambda r: True):
        self.action, self.reply, self.times, self.when = action, reply, times, when
        self.seen = 0
        self.injected = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply | None:
        if request.action != self.action or not self.when(request):
            return None
        with self._lock:
            self.seen += 1
            if self.injected >= self.times:
                return None
            self.injected += 1
        return self.reply(request)


class StaleRead(Reply):
    """Forwards, then answers the read as a replica that has not seen a change would."""

    def __init__(self, strip: str):
        self.strip = strip

    def apply(self, exchange: Exchange) -> str:
        status, headers, body = exchange.forward()
        exchange.send(status, headers, realistic._strip(body, self.strip))
        return "stale read"


def role_of(request: Request) -> str:
    return form_value(request, "RoleName") or ""


def profile_of(request: Request) -> str:
    return form_value(request, "InstanceProfileName") or ""


# --- Eventual consistency ----------------------------------------------------------------------


@pytest.mark.parametrize("reply", [
    lambda r: realistic.no_such_role(role_of(r)),
    lambda r: realistic.no_such_profile(profile_of(r)),
    lambda r: IamError(400, "InvalidParameterValue", "Invalid IAM Instance Profile name"),
], ids=["role-not-found", "profile-not-found", "invalid-profile-name"])
def test_adding_the_new_role_to_the_new_profile_waits_for_propagation(through_proxy, proxy, cfn, moto, reply):
    """AddRoleToInstanceProfile right after the creates is told the role or the profile does not
    exist (terraform-provider-aws instance_profile.go retries exactly these): retried, SUCCESS."""
    through_proxy()
    hook = Once("AddRoleToInstanceProfile", reply, times=2)
    proxy.hooks.append(hook)
    succeeded(cfn.send("Create", {"InstanceProfileName": "lagging"})[1])
    assert_complete(moto.iam_snapshot(), "lagging")
    assert hook.injected == 2 and hook.seen >= 3


@pytest.mark.parametrize("action", ["AttachRolePolicy", "PutRolePolicy", "TagRole"])
def test_calls_on_the_new_role_wait_for_propagation(through_proxy, proxy, cfn, moto, action):
    """AttachRolePolicy, PutRolePolicy and TagRole on a role this request just created, answered
    NoSuchEntity "The role with name X cannot be found.": retried, SUCCESS with everything."""
    through_proxy()
    hook = Once(action, lambda r: realistic.no_such_role(role_of(r)), times=2)
    proxy.hooks.append(hook)
    props = {"InstanceProfileName": "young", "InlinePolicies": {"logs": {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]}}}
    succeeded(cfn.send("Create", props)[1])
    if action == "TagRole":
        props = {**props, "Tags": [{"Key": "team", "Value": "b"}]}
        succeeded(cfn.send("Update", props, physical_id="young",
                           old_properties={"InstanceProfileName": "young",
                                           "InlinePolicies": props["InlinePolicies"]})[1])
    state = moto.iam_snapshot()
    assert_complete(state, "young")
    assert list(state["roles"]["young"]["inline_policies"]) == ["logs"]
    if action == "TagRole":
        assert state["roles"]["young"]["tags"]["team"] == "b"
    assert hook.injected == 2 and hook.seen >= 3


def test_a_managed_policy_that_does_not_exist_fails_at_once_and_leaves_nothing(through_proxy, proxy, cfn, moto):
    """NoSuchEntity about the policy ARN is no propagation delay: one attempt, FAILED naming the
    policy, nothing left; the rollback Delete succeeds."""
    through_proxy({"ALLOWED_POLICY_ARNS": "arn:*:iam::aws:policy/AWSElasticBeanstalk*"})
    calls = Once("AttachRolePolicy", lambda r: None, times=0,
                 when=lambda r: form_value(r, "PolicyArn") == MISSING_POLICY)
    proxy.hooks.append(calls)
    result, response = cfn.send("Create", {"InstanceProfileName": "nopolicy",
                                           "ManagedPolicyArns": [MISSING_POLICY]})
    failed(response, result)
    assert MISSING_POLICY in response["Reason"] and "NoSuchEntity" in response["Reason"], response
    assert calls.seen == 1
    assert moto.iam_snapshot() == EMPTY
    succeeded(cfn.send("Delete", {}, physical_id=response["PhysicalResourceId"])[1])


def test_an_update_whose_read_misses_a_just_attached_policy_still_detaches_it(through_proxy, proxy, cfn, moto):
    """Right after the Create attached S3 read, the Update's ListAttachedRolePolicies comes from a
    replica without it; the Update removes that policy from the template: it is detached anyway."""
    through_proxy()
    before = {"InstanceProfileName": "lag", "ManagedPolicyArns": [S3_READ]}
    succeeded(cfn.send("Create", before)[1])
    hook = Once("ListAttachedRolePolicies", lambda r: StaleRead(f"<PolicyArn>{S3_READ}</PolicyArn>"))
    proxy.hooks.append(hook)
    after = {"InstanceProfileName": "lag"}
    succeeded(cfn.send("Update", after, physical_id="lag", old_properties=before)[1])
    assert hook.injected == 1
    assert_complete(moto.iam_snapshot(), "lag")


# --- DeleteConflict ------------------------------------------------------------------------------


@pytest.mark.parametrize("action,message", [
    ("DeleteRole", "Cannot delete entity, must remove roles from instance profile first."),
    ("DeleteRole", "Cannot delete entity, must detach all policies first."),
    ("DeleteInstanceProfile", "Cannot delete entity, must remove roles from instance profile first."),
])
def test_delete_conflict_right_after_its_own_removals_is_waited_out(through_proxy, proxy, cfn, moto, action, message):
    through_proxy()
    succeeded(cfn.send("Create", {"InstanceProfileName": "settling"})[1])
    hook = Once(action, lambda r: realistic.delete_conflict(message), times=2)
    proxy.hooks.append(hook)
    succeeded(cfn.send("Delete", {"InstanceProfileName": "settling"}, physical_id="settling")[1])
    assert moto.iam_snapshot() == EMPTY
    assert hook.injected == 2 and hook.seen >= 3


def test_a_read_that_misses_a_just_attached_policy_does_not_strand_the_role(through_proxy, proxy, cfn, moto):
    """Delete right after a Create: its ListAttachedRolePolicies misses a policy, DeleteRole meets
    DeleteConflict; the teardown reads again and finishes."""
    through_proxy()
    succeeded(cfn.send("Create", {"InstanceProfileName": "stranded"})[1])
    hook = Once("ListAttachedRolePolicies", lambda r: StaleRead(f"<PolicyArn>{WEB}</PolicyArn>"))
    proxy.hooks.append(hook)
    succeeded(cfn.send("Delete", {"InstanceProfileName": "stranded"}, physical_id="stranded")[1])
    assert hook.injected == 1
    assert moto.iam_snapshot() == EMPTY


def test_a_delete_conflict_caused_by_a_foreign_profile_is_reported(through_proxy, proxy, cfn, moto, iam):
    """The role also sits in a profile this resource does not own: the conflict stays, and after
    a few attempts the Delete answers FAILED with IAM's reason; the foreign profile is untouched."""
    through_proxy()
    succeeded(cfn.send("Create", {"InstanceProfileName": "mine"})[1])
    iam.create_instance_profile(InstanceProfileName="theirs")
    iam.add_role_to_instance_profile(InstanceProfileName="theirs", RoleName="mine")
    deletes = Once("DeleteRole", lambda r: None, times=0)
    proxy.hooks.append(deletes)
    result, response = cfn.send("Delete", {"InstanceProfileName": "mine"}, physical_id="mine")
    failed(response, result)
    assert "iam:DeleteRole" in response["Reason"] and "DeleteConflict" in response["Reason"], response
    assert 1 < deletes.seen <= 6
    state = moto.iam_snapshot()
    assert state["instance_profiles"]["theirs"]["roles"] == ["mine"]
    assert "mine" not in state["instance_profiles"]


# --- Answers lost after the write ---------------------------------------------------------------


def test_a_lost_create_role_answer_and_a_lagging_read_converge(through_proxy, proxy, cfn, moto):
    """CreateRole takes effect but its answer is lost; the SDK's retry gets EntityAlreadyExists and
    the read that follows comes from a replica without the role: read again, the role is its own."""
    through_proxy()
    proxy.hooks.append(LoseAnswers({"CreateRole"}))
    hook = Once("GetRole", lambda r: realistic.no_such_role(role_of(r)), times=2)
    proxy.hooks.append(hook)
    succeeded(cfn.send("Create", {"InstanceProfileName": "lost"})[1])
    assert_complete(moto.iam_snapshot(), "lost")
    assert hook.injected == 2


def test_a_lost_add_role_answer_is_recognised_as_its_own_work(through_proxy, proxy, cfn, moto):
    """AddRoleToInstanceProfile takes effect, its answer is lost; the retry gets LimitExceeded and
    the first read of the profile does not show the role yet: the role is its own, SUCCESS."""
    through_proxy({"PROPAGATION_READS": "1"})
    proxy.hooks.append(LoseAnswers({"AddRoleToInstanceProfile"}))
    hook = Once("GetInstanceProfile", lambda r: StaleRead("roles"))
    proxy.hooks.append(hook)
    succeeded(cfn.send("Create", {"InstanceProfileName": "added"})[1])
    assert_complete(moto.iam_snapshot(), "added")
    assert hook.injected == 1


# --- Quotas ----------------------------------------------------------------------------------------


@pytest.fixture
def quota_4(proxy, clean_moto):
    """An account whose PoliciesPerRole quota is 4: a realistic IAM of its own in the test's proxy,
    with its quota only (so that the test shows the same with IAM_REALISTIC=off)."""
    proxy.hooks.append(realistic.Realistic(clean_moto.url, stale_rate=0, lose_rate=0, policies_per_role=4))


def test_an_update_at_the_quota_detaches_first(quota_4, through_proxy, proxy, cfn, moto):
    """4 of 4 attached; the Update swaps S3 read for ReadOnlyAccess: attaching first would need 5,
    so the removed policy is detached first and the Update succeeds."""
    through_proxy()
    before = {"InstanceProfileName": "full", "ManagedPolicyArns": [S3_READ]}
    succeeded(cfn.send("Create", before)[1])
    calls = MutatingCalls()
    proxy.hooks.insert(0, calls)  # before the quota layer, which answers every request
    after = {"InstanceProfileName": "full", "ManagedPolicyArns": [READ_ONLY]}
    succeeded(cfn.send("Update", after, physical_id="full", old_properties=before)[1])
    assert_complete(moto.iam_snapshot(), "full", ALL_TIERS + [READ_ONLY])
    assert "DetachRolePolicy" in calls.actions


def test_an_update_with_room_attaches_before_it_detaches(quota_4, through_proxy, proxy, cfn, moto):
    through_proxy()
    before = {"InstanceProfileName": "room", "Tiers": ["WebTier", "WorkerTier"], "ManagedPolicyArns": [S3_READ]}
    succeeded(cfn.send("Create", before)[1])
    calls = MutatingCalls()
    proxy.hooks.insert(0, calls)  # before the quota layer, which answers every request
    after = {**before, "ManagedPolicyArns": [READ_ONLY]}
    succeeded(cfn.send("Update", after, physical_id="room", old_properties=before)[1])
    assert_complete(moto.iam_snapshot(), "room", [WEB, WORKER, READ_ONLY])
    firsts = [a for a in calls.actions if a in ("AttachRolePolicy", "DetachRolePolicy")]
    # A lost answer repeats a call (the SDK's retry); the order is what counts.
    assert set(firsts) == {"AttachRolePolicy", "DetachRolePolicy"}, calls.actions
    last_attach = max(i for i, a in enumerate(firsts) if a == "AttachRolePolicy")
    assert firsts.index("DetachRolePolicy") > last_attach, calls.actions


def test_a_create_asking_for_more_than_the_quota_fails_naming_it(quota_4, through_proxy, proxy, cfn, moto):
    through_proxy()
    result, response = cfn.send("Create", {"InstanceProfileName": "toomany",
                                           "ManagedPolicyArns": [S3_READ, READ_ONLY]})
    failed(response, result)
    assert "PoliciesPerRole" in response["Reason"] and "5 managed policies" in response["Reason"], response
    assert moto.iam_snapshot() == EMPTY
    succeeded(cfn.send("Delete", {}, physical_id=response["PhysicalResourceId"])[1])


def test_the_realistic_iam_enforces_what_moto_does_not(moto, clean_moto):
    """The local IAM's own rules, as IAM answers them (so that a test meeting them meets IAM)."""
    import boto3
    with RecordingProxy(moto.url, hooks=[realistic.Realistic(moto.url, stale_rate=0, lose_rate=0,
                                                              policies_per_role=2)]) as proxy:
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=proxy.url,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        trust = '{"Version":"2012-10-17","Statement":[]}'

        def code(call, **kwargs):
            try:
                call(**kwargs)
            except iam.exceptions.ClientError as err:
                return err.response["Error"]["Code"], err.response["Error"]["Message"]
            return None

        assert code(iam.create_role, RoleName="Mixed", AssumeRolePolicyDocument=trust) is None
        assert code(iam.create_role, RoleName="mixed", AssumeRolePolicyDocument=trust)[0] == "EntityAlreadyExists"
        assert code(iam.create_role, RoleName="x" * 65, AssumeRolePolicyDocument=trust)[0] == "ValidationError"
        assert code(iam.create_role, RoleName="bad name", AssumeRolePolicyDocument=trust)[0] == "ValidationError"
        assert code(iam.create_role, RoleName="big", AssumeRolePolicyDocument=trust + " " + "x" * 2048) == \
            ("LimitExceeded", "Cannot exceed quota for ACLSizePerRole: 2048")
        assert code(iam.create_role, RoleName="dup", AssumeRolePolicyDocument=trust,
                    Tags=[{"Key": "a", "Value": "1"}, {"Key": "A", "Value": "2"}])[0] == "InvalidInput"
        assert code(iam.tag_role, RoleName="Mixed",
                    Tags=[{"Key": f"k{i}", "Value": ""} for i in range(51)]) is not None
        # Tag keys and values: letters, digits, spaces and _.:/=+-@ only; values up to 256.
        for tag in ({"Key": "k", "Value": 'a "quoted" value'}, {"Key": "k", "Value": "tab\tbreak"},
                    {"Key": "k", "Value": "v" * 257}, {"Key": "back\\slash", "Value": "v"}):
            assert code(iam.tag_role, RoleName="Mixed", Tags=[tag])[0] == "ValidationError", tag
        assert code(iam.tag_role, RoleName="Mixed",
                    Tags=[{"Key": "Équipe", "Value": "ünïcode 7 _.:/=+-@ " + "v" * 236}]) is None
        for policy in (WEB, WORKER):
            assert code(iam.attach_role_policy, RoleName="Mixed", PolicyArn=policy) is None
        assert code(iam.attach_role_policy, RoleName="Mixed", PolicyArn=DOCKER) == \
            ("LimitExceeded", "Cannot exceed quota for PoliciesPerRole: 2")
        assert code(iam.attach_role_policy, RoleName="Mixed", PolicyArn=WEB) is None  # already there
        big = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject",'
               '"Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"' + "a" * 6000 + '"}}}]}')
        assert code(iam.put_role_policy, RoleName="Mixed", PolicyName="one", PolicyDocument=big) is None
        assert code(iam.put_role_policy, RoleName="Mixed", PolicyName="two", PolicyDocument=big)[0] == "LimitExceeded"
        assert code(iam.put_role_policy, RoleName="Mixed", PolicyName="one", PolicyDocument=big) is None
        iam.create_instance_profile(InstanceProfileName="p")
        assert code(iam.remove_role_from_instance_profile, InstanceProfileName="p", RoleName="Mixed")[0] == "NoSuchEntity"


# --- Whole lifecycles under the realistic IAM -----------------------------------------------------


def _lifecycle(cfn, moto) -> collections.Counter:
    answered = collections.Counter()

    def send(kind, props, **kwargs):
        result, response = cfn.send(kind, props, timeout_s=60, **kwargs)
        assert response is not None, f"{kind} unanswered: {result}"
        answered[response["Status"]] += 1
        return response

    v1 = {"InstanceProfileName": "prop-a", "Tiers": ["WebTier"], "ManagedPolicyArns": [S3_READ],
          "Tags": [{"Key": "team", "Value": "a"}],
          "InlinePolicies": {"logs": {"Version": "2012-10-17", "Statement": [
              {"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]}}}
    assert send("Create", v1)["Status"] == "SUCCESS"
    state = moto.iam_snapshot()
    assert_complete(state, "prop-a", [WEB, S3_READ])
    assert list(state["roles"]["prop-a"]["inline_policies"]) == ["logs"]

    # In place: tiers, policies, tags and inline policies change.
    v2 = {"InstanceProfileName": "prop-a", "Tiers": ["WorkerTier", "WebTier"], "ManagedPolicyArns": [READ_ONLY],
          "Tags": [{"Key": "team", "Value": "b"}]}
    assert send("Update", v2, physical_id="prop-a", old_properties=v1)["Status"] == "SUCCESS"
    state = moto.iam_snapshot()
    assert_complete(state, "prop-a", [WEB, WORKER, READ_ONLY])
    assert state["roles"]["prop-a"]["inline_policies"] == {}
    assert state["roles"]["prop-a"]["tags"]["team"] == "b"

    # A failed in-place Update (a policy IAM does not have) and CloudFormation's rollback Update.
    bad = {**v2, "ManagedPolicyArns": [READ_ONLY, MISSING_POLICY]}
    assert send("Update", bad, physical_id="prop-a", old_properties=v2)["Status"] == "FAILED"
    assert send("Update", v2, physical_id="prop-a", old_properties=bad)["Status"] == "SUCCESS"
    assert_complete(moto.iam_snapshot(), "prop-a", [WEB, WORKER, READ_ONLY])

    # Replacement, then the cleanup Delete of the old profile.
    v3 = {**v2, "InstanceProfileName": "prop-b"}
    assert send("Update", v3, physical_id="prop-a", old_properties=v2)["PhysicalResourceId"] == "prop-b"
    assert send("Delete", v2, physical_id="prop-a")["Status"] == "SUCCESS"
    assert_complete(moto.iam_snapshot(), "prop-b", [WEB, WORKER, READ_ONLY])

    # A failed Create and its rollback Delete leave nothing.
    response = send("Create", {"InstanceProfileName": "prop-c", "ManagedPolicyArns": [MISSING_POLICY]},
                    logical_id="Other")
    assert response["Status"] == "FAILED"
    assert send("Delete", {}, physical_id=response["PhysicalResourceId"], logical_id="Other")["Status"] == "SUCCESS"
    assert_complete(moto.iam_snapshot(), "prop-b", [WEB, WORKER, READ_ONLY])

    assert send("Delete", v3, physical_id="prop-b")["Status"] == "SUCCESS"
    assert moto.iam_snapshot() == EMPTY
    return answered


@pytest.mark.plain_iam  # the test's own realistic IAM, seeded, with raised rates, instead
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_whole_lifecycles_under_the_realistic_iam_end_as_expected(through_proxy, proxy, cfn, moto, seed):
    """Create, Update in place, a failed Update and its rollback, replacement and cleanup, a failed
    Create and its rollback Delete, Delete: every event answered as expected and IAM exactly as
    the answers say, with half the requests after a change answered stale and a fifth of the
    writes losing their first answer."""
    layer = realistic.Realistic(moto.url, seed=seed, stale_rate=0.5, lose_rate=0.2)
    proxy.hooks.append(layer)
    through_proxy()
    answered = _lifecycle(cfn, moto)
    assert answered == {"SUCCESS": 7, "FAILED": 2}
    observed = layer.observed
    assert sum(v for k, v in observed.items() if k.startswith("stale")) >= 3, observed
    assert sum(v for k, v in observed.items() if k.startswith("lost")) >= 2, observed
    print(f"seed {seed}: {dict(observed)}")
