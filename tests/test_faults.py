"""Faults: IAM failing for good, failing for a moment, the function dying mid-request, duplicate
deliveries, and many resources at once under throttling.

Every IAM request of the function goes through a RecordingProxy in front of moto whose hooks
(tests/faults.py) answer chosen requests with IAM's own error documents, reset or hold the
connection, or kill the function process after a request took effect. What each test shows is an
end state: every stack gets an answer, and IAM holds exactly the owned entities the answers say
it holds (no leftovers, no duplicates).
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from faults import (Always, FailNth, Hang, HideProfile, IamError, KillAfterNth, LoseAnswers,
                    MutatingCalls, Transient, access_denied, concurrent_modification, is_mutating,
                    throttling)
from helpers import eb_policies, failed, succeeded
from local.events import make_event
from local.proxy import RecordingProxy, Reply, Request

EMPTY = {"roles": {}, "instance_profiles": {}}
ALL_TIERS = sorted(eb_policies().values())
S3_READ = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"

# The mutating IAM calls of a Create with the default tiers: CreateRole and
# CreateInstanceProfile (tags included), three AttachRolePolicy, AddRoleToInstanceProfile.
CREATE_CALLS = 6
# The same for the Delete of what that Create made: RemoveRoleFromInstanceProfile,
# DeleteInstanceProfile, three DetachRolePolicy, DeleteRole.
DELETE_CALLS = 6


# What the module injected, from the proxies' records: docs/reliability.md quotes it. Written to
# target/reliability/faults.json when the module ends.
LEDGER: collections.Counter[str] = collections.Counter()
REPORT = Path(__file__).resolve().parent.parent / "target" / "reliability" / "faults.json"


@pytest.fixture(scope="module", autouse=True)
def ledger(request):
    yield LEDGER
    LEDGER["scenarios"] = sum(1 for item in request.session.items if item.module is request.module)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(dict(sorted(LEDGER.items())), indent=2) + "\n")


@pytest.fixture
def proxy(clean_moto):
    """The proxy in front of moto that the function's IAM requests go through."""
    with RecordingProxy(clean_moto.url) as proxy:
        yield proxy
    records = proxy.records
    LEDGER["IAM requests"] += len(records)
    for record in records:
        if record.outcome.startswith("error:"):  # the caller was killed before the answer
            LEDGER["answers lost to a killed caller"] += 1
        elif record.outcome != "forwarded":
            LEDGER[record.outcome] += 1


@pytest.fixture
def through_proxy(start_function, proxy):
    """start_function for a function whose IAM requests go through `proxy`."""
    def start(extra_env: dict | None = None):
        return start_function(extra_env, iam_proxy=proxy)
    return start


def assert_complete(state: dict, profile: str, policies=ALL_TIERS, logical_id: str = "Profile") -> None:
    """One owned role and one owned profile that holds it, with exactly `policies`."""
    assert set(state["instance_profiles"]) == {profile}, state
    held = state["instance_profiles"][profile]["roles"]
    assert len(held) == 1, held
    assert set(state["roles"]) == set(held), state
    role = state["roles"][held[0]]
    assert role["managed_policies"] == sorted(policies)
    for entity in (role, state["instance_profiles"][profile]):
        assert entity["tags"]["eb-instance-profile:logical-id"] == logical_id
        assert "eb-instance-profile:stack-id" in entity["tags"]


# --- Crash matrix: the k-th mutating call fails for good ---------------------------------------


@pytest.mark.plain_iam  # counts the calls exactly; a lost answer adds the SDK's repetition
def test_the_matrix_covers_every_mutating_call(through_proxy, proxy, cfn, moto):
    """The matrices below fail calls 1..CREATE_CALLS and kill after calls 1..DELETE_CALLS: this
    checks those are all the calls there are, so a new call cannot escape the matrix."""
    through_proxy()
    calls = MutatingCalls()
    proxy.hooks.append(calls)
    succeeded(cfn.send("Create", {"InstanceProfileName": "counted"})[1])
    assert sorted(calls.actions) == sorted(["CreateRole", "CreateInstanceProfile",
                                            "AttachRolePolicy", "AttachRolePolicy",
                                            "AttachRolePolicy", "AddRoleToInstanceProfile"])
    assert len(calls.actions) == CREATE_CALLS
    calls.actions.clear()
    succeeded(cfn.send("Delete", {"InstanceProfileName": "counted"}, physical_id="counted")[1])
    assert len(calls.actions) == DELETE_CALLS, calls.actions
    assert moto.iam_snapshot() == EMPTY


@pytest.mark.parametrize("k", range(1, CREATE_CALLS + 1))
def test_create_whose_kth_call_fails_leaves_nothing_after_its_rollback(through_proxy, proxy, cfn, moto, k):
    """FAILED naming the call and a PhysicalResourceId that names what was made; nothing is
    removed by the Create itself, and nothing is left once the rollback Delete CloudFormation
    sends next has succeeded."""
    through_proxy()
    fail = FailNth(k)
    proxy.hooks.append(fail)
    result, response = cfn.send("Create", {"InstanceProfileName": "crash"})
    failed(response, result)
    assert fail.hit is not None
    assert f"iam:{fail.hit}" in response["Reason"] and "AccessDenied" in response["Reason"]
    assert response["PhysicalResourceId"] == "crash"
    if k > 2:  # both creates came first: what they made stays for the rollback Delete
        state = moto.iam_snapshot()
        assert set(state["roles"]) == {"crash"} and set(state["instance_profiles"]) == {"crash"}

    proxy.hooks.clear()
    _, deleted = cfn.send("Delete", {"InstanceProfileName": "crash"},
                          physical_id=response["PhysicalResourceId"])
    succeeded(deleted)
    assert moto.iam_snapshot() == EMPTY


@pytest.mark.parametrize("k", range(1, CREATE_CALLS + 1))
def test_replacement_whose_kth_call_fails_keeps_the_old_and_leaves_nothing_new(
        through_proxy, proxy, cfn, moto, k):
    """A new name means new entities; when one of their calls fails the Update is FAILED, the
    new entities are gone, the old ones are untouched, and CloudFormation's rollback (the
    Update with the properties swapped) and the final Delete succeed."""
    through_proxy()
    old, new = {"InstanceProfileName": "before"}, {"InstanceProfileName": "after"}
    succeeded(cfn.send("Create", old)[1])
    created = moto.iam_snapshot()

    fail = FailNth(k)
    proxy.hooks.append(fail)
    result, response = cfn.send("Update", new, physical_id="before", old_properties=old)
    failed(response, result)
    assert f"iam:{fail.hit}" in response["Reason"]
    assert response["PhysicalResourceId"]
    assert moto.iam_snapshot() == created

    proxy.hooks.clear()
    succeeded(cfn.send("Update", old, physical_id="before", old_properties=new)[1])
    assert moto.iam_snapshot() == created
    succeeded(cfn.send("Delete", old, physical_id="before")[1])
    assert moto.iam_snapshot() == EMPTY


# --- Delivery integrity: no delivery undoes another's SUCCESS --------------------------------


def test_a_failing_second_delivery_of_a_succeeded_create_removes_nothing(through_proxy, proxy, cfn, moto):
    """Lambda delivers a Create again after its SUCCESS reached CloudFormation. This delivery
    meets the entities already there, then reads the profile as missing (a replica that has not
    seen it, for good) and fails: nothing the SUCCESS reported is taken away."""
    through_proxy()
    request_id = str(uuid.uuid4())
    props = {"InstanceProfileName": "twice"}
    succeeded(cfn.send("Create", props, request_id=request_id)[1])
    after_first = moto.iam_snapshot()
    assert_complete(after_first, "twice")

    proxy.hooks.append(HideProfile("twice", Always()))
    result, second = cfn.send("Create", props, request_id=request_id)
    failed(second, result)
    assert "twice" in second["Reason"] and "nothing was removed" in second["Reason"], second
    assert moto.iam_snapshot() == after_first


def test_a_failing_second_delivery_of_a_succeeded_replacement_removes_nothing(
        through_proxy, proxy, cfn, moto):
    """The same replacement delivered again after its SUCCESS: the new entities carry the same
    RequestId but another delivery's mark, so this delivery, failing on a profile it reads as
    missing for good, leaves them to the stack that now tracks them."""
    through_proxy()
    old, new = {"InstanceProfileName": "before"}, {"InstanceProfileName": "after"}
    succeeded(cfn.send("Create", old)[1])
    request_id = str(uuid.uuid4())
    replaced = succeeded(cfn.send("Update", new, physical_id="before", old_properties=old,
                                  request_id=request_id)[1])
    assert replaced["PhysicalResourceId"] == "after"
    after_first = moto.iam_snapshot()

    proxy.hooks.append(HideProfile("after", Always()))
    result, second = cfn.send("Update", new, physical_id="before", old_properties=old,
                              request_id=request_id)
    failed(second, result)
    assert moto.iam_snapshot() == after_first
    assert_complete({"roles": {k: v for k, v in after_first["roles"].items() if k == "after"},
                     "instance_profiles": {"after": after_first["instance_profiles"]["after"]}},
                    "after")


def test_a_replacement_whose_creates_lost_their_answers_removes_them_when_it_fails(
        through_proxy, proxy, cfn, moto):
    """CreateRole and CreateInstanceProfile of the new names take effect, their answers are lost
    and the SDK's retries meet EntityAlreadyExists; then AttachRolePolicy is refused. The new
    entities carry this request's id, so the undo finds them although no create was answered."""
    through_proxy()
    old, new = {"InstanceProfileName": "before"}, {"InstanceProfileName": "after"}
    succeeded(cfn.send("Create", old)[1])
    created = moto.iam_snapshot()

    lose = LoseAnswers({"CreateRole", "CreateInstanceProfile"})
    proxy.hooks.append(lose)
    proxy.hooks.append(lambda r: access_denied(r.action) if r.action == "AttachRolePolicy" else None)
    result, response = cfn.send("Update", new, physical_id="before", old_properties=old)
    failed(response, result)
    assert "iam:AttachRolePolicy" in response["Reason"], response
    assert dict(lose.lost) == {"CreateRole": 1, "CreateInstanceProfile": 1}
    assert moto.iam_snapshot() == created

    proxy.hooks.clear()
    succeeded(cfn.send("Update", old, physical_id="before", old_properties=new)[1])
    succeeded(cfn.send("Delete", old, physical_id="before")[1])
    assert moto.iam_snapshot() == EMPTY


def test_a_replacement_that_overruns_its_time_removes_what_it_made(through_proxy, proxy, cfn, moto):
    """IAM stops answering AddRoleToInstanceProfile after the new role and profile were made and
    the policies attached: the work stops early enough to remove them within the invocation's
    time, and FAILED says so."""
    through_proxy()
    old, new = {"InstanceProfileName": "before"}, {"InstanceProfileName": "after"}
    succeeded(cfn.send("Create", old)[1])
    created = moto.iam_snapshot()

    release = threading.Event()
    proxy.hooks.append(lambda r: Hang(release) if r.action == "AddRoleToInstanceProfile" else None)
    try:
        result, response = cfn.send("Update", new, physical_id="before", old_properties=old,
                                    timeout_s=12)
    finally:
        release.set()
    failed(response, result)
    assert result.kind == "response", result
    assert "timed out" in response["Reason"] and "after" in response["Reason"], response
    assert "did not finish in time either" not in response["Reason"], response
    assert moto.iam_snapshot() == created

    proxy.hooks.clear()
    succeeded(cfn.send("Update", old, physical_id="before", old_properties=new)[1])
    succeeded(cfn.send("Delete", old, physical_id="before")[1])
    assert moto.iam_snapshot() == EMPTY


# --- Process death: killed after the k-th mutating call, the event delivered again -------------


def deliver_until_killed(runtime, start, proxy, event: dict, k: int):
    """Deliver `event` to a fresh process that is killed right after its k-th mutating IAM call
    took effect; return the pending invocation, ended as Lambda ends it (Runtime.ExitError)."""
    process = start()
    kill = KillAfterNth(k, process.kill)
    proxy.hooks.append(kill)
    pending = runtime.submit(event, timeout_s=30)
    assert process.wait(timeout_s=30) != 0
    proxy.hooks.remove(kill)
    assert kill.hit is not None, "the process was never killed"
    ended = pending.crashed()
    assert ended.kind == "error", ended
    return pending


def redeliver(runtime, start, event: dict, pending):
    """Lambda's retry of the failed invocation: the same event and request id, a new process."""
    start()
    return runtime.submit(event, timeout_s=30, request_id=pending.request_id).wait()


@pytest.mark.parametrize("k", range(1, CREATE_CALLS + 1))
def test_create_killed_after_the_kth_call_completes_when_delivered_again(
        runtime, through_proxy, proxy, cfn, moto, k):
    url, key = cfn.response_url()
    event = make_event("Create", {"InstanceProfileName": "phoenix"}, response_url=url)
    pending = deliver_until_killed(runtime, through_proxy, proxy, event, k)
    assert cfn.read_response(key) is None  # the dead process never answered

    result = redeliver(runtime, through_proxy, event, pending)
    response = succeeded(cfn.read_response(key), result)
    assert response["PhysicalResourceId"] == "phoenix"
    assert_complete(moto.iam_snapshot(), "phoenix")


@pytest.mark.parametrize("k", range(1, DELETE_CALLS + 1))
def test_delete_killed_after_the_kth_call_completes_when_delivered_again(
        runtime, through_proxy, proxy, cfn, moto, k):
    creator = through_proxy()
    succeeded(cfn.send("Create", {"InstanceProfileName": "phoenix"})[1])
    creator.stop()  # the Delete must go to the process that is killed
    url, key = cfn.response_url()
    event = make_event("Delete", {"InstanceProfileName": "phoenix"}, response_url=url,
                       physical_id="phoenix")
    pending = deliver_until_killed(runtime, through_proxy, proxy, event, k)

    result = redeliver(runtime, through_proxy, event, pending)
    succeeded(cfn.read_response(key), result)
    assert moto.iam_snapshot() == EMPTY


# --- Transient faults --------------------------------------------------------------------------


class FirstAttempt:
    """The first attempt of every mutating IAM request gets `reply()`; its retry goes through."""

    def __init__(self, reply):
        self.reply = reply
        self.seen: set[bytes] = set()
        self.injected = 0

    def __call__(self, request: Request) -> Reply | None:
        if not is_mutating(request) or request.body in self.seen:
            return None
        self.seen.add(request.body)
        self.injected += 1
        return self.reply()


@pytest.mark.parametrize("fault", [concurrent_modification, throttling], ids=lambda f: f.__name__)
def test_every_mutating_call_failing_once_is_retried(through_proxy, proxy, cfn, moto, fault):
    """ConcurrentModification (409, which the SDK alone does not retry) and Throttling on the first
    attempt of every call: Create and Delete still succeed."""
    through_proxy()
    hook = FirstAttempt(fault)
    proxy.hooks.append(hook)
    succeeded(cfn.send("Create", {"InstanceProfileName": "retried"})[1])
    assert_complete(moto.iam_snapshot(), "retried")
    succeeded(cfn.send("Delete", {"InstanceProfileName": "retried"}, physical_id="retried")[1])
    assert moto.iam_snapshot() == EMPTY
    assert hook.injected == CREATE_CALLS + DELETE_CALLS


def test_the_other_409s_are_answers_not_retried(through_proxy, proxy, cfn, moto):
    """DeleteConflict is a 409 too, but no fault the SDK retries: the teardown reads IAM again and
    repeats itself a few times (IAM can answer it for a moment after the role left its profile),
    then the Reason names it."""
    through_proxy()
    succeeded(cfn.send("Create", {"InstanceProfileName": "conflict"})[1])
    attempts = []

    def conflict(request: Request) -> Reply | None:
        if request.action == "DeleteRole":
            attempts.append(request)
            return IamError(409, "DeleteConflict", "Cannot delete entity, must detach all policies first.")
        return None

    proxy.hooks.append(conflict)
    result, response = cfn.send("Delete", {"InstanceProfileName": "conflict"}, physical_id="conflict")
    failed(response, result)
    assert "iam:DeleteRole" in response["Reason"] and "DeleteConflict" in response["Reason"]
    assert 1 < len(attempts) <= 6


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_lifecycle_with_30_percent_of_iam_requests_failing_succeeds(
        through_proxy, proxy, cfn, moto, seed):
    """Throttling, ServiceFailure, ConcurrentModification and connection resets on 30 % of all
    IAM requests (reads included): Create, Update and Delete each end in SUCCESS with the state
    they promise."""
    through_proxy()
    faults = Transient(0.3, seed)
    proxy.hooks.append(faults)
    props = {"InstanceProfileName": "flaky", "Tags": [{"Key": "team", "Value": "a"}]}
    succeeded(cfn.send("Create", props, timeout_s=60)[1])
    assert_complete(moto.iam_snapshot(), "flaky")

    updated = {**props, "ManagedPolicyArns": [S3_READ], "Tags": [{"Key": "team", "Value": "b"}]}
    succeeded(cfn.send("Update", updated, physical_id="flaky", old_properties=props, timeout_s=60)[1])
    state = moto.iam_snapshot()
    assert_complete(state, "flaky", ALL_TIERS + [S3_READ])
    assert state["instance_profiles"]["flaky"]["tags"]["team"] == "b"

    succeeded(cfn.send("Delete", updated, physical_id="flaky", timeout_s=60)[1])
    assert moto.iam_snapshot() == EMPTY
    assert sum(faults.injected.values()) >= 3, faults.injected
    print(f"seed {seed}: {faults.requests} IAM requests, injected {dict(faults.injected)}")


# --- Duplicate deliveries -----------------------------------------------------------------------


@pytest.fixture
def response_capture(clean_moto):
    """A proxy in front of moto's S3 for ResponseURLs that keeps every PUT body, so that both
    answers to a duplicated event can be read (the second PUT overwrites the first in S3)."""
    bodies: dict[str, list[dict]] = {}

    def keep(request: Request) -> Reply | None:
        if request.method == "PUT":
            bodies.setdefault(request.path, []).append(json.loads(request.body))
        return None

    with RecordingProxy(clean_moto.url, hooks=[keep]) as proxy:
        proxy.bodies = bodies
        yield proxy


LIFECYCLE = [
    ("Create", {"InstanceProfileName": "twin"}, {}),
    ("Update", {"InstanceProfileName": "twin", "ManagedPolicyArns": [S3_READ]},
     {"physical_id": "twin", "old_properties": {"InstanceProfileName": "twin"}}),
    ("Update", {"InstanceProfileName": "twin2", "ManagedPolicyArns": [S3_READ]},
     {"physical_id": "twin",
      "old_properties": {"InstanceProfileName": "twin", "ManagedPolicyArns": [S3_READ]}}),
    ("Delete", {"InstanceProfileName": "twin", "ManagedPolicyArns": [S3_READ]}, {"physical_id": "twin"}),
    ("Delete", {"InstanceProfileName": "twin2", "ManagedPolicyArns": [S3_READ]}, {"physical_id": "twin2"}),
]


@pytest.mark.parametrize("mode", ["once", "sequential", "concurrent"])
def test_every_event_delivered_twice_gives_the_same_state_and_answers(
        runtime, start_function, cfn, moto, response_capture, mode):
    """Create, Update in place, a replacement Update and both Deletes, each delivered twice (one
    after the other, or to two processes at the same time): both answers are SUCCESS with the same
    PhysicalResourceId, and the state after each step is the state a single delivery leaves."""
    env = {"ALLOWED_RESPONSE_URL_PREFIXES": f"{moto.url}/,{response_capture.url}/"}
    start_function(env)
    if mode == "concurrent":
        start_function(env)
    states = []
    for step, (kind, props, extra) in enumerate(LIFECYCLE):
        url, key = cfn.response_url()
        url = url.replace(moto.url, response_capture.url, 1)
        event = make_event(kind, props, response_url=url, **extra)
        copies = 1 if mode == "once" else 2
        if mode == "concurrent":
            pending = [runtime.submit(event, timeout_s=30) for _ in range(copies)]
            results = [p.wait() for p in pending]
        else:
            results = [runtime.invoke(event, timeout_s=30) for _ in range(copies)]
        answers = next(v for k, v in response_capture.bodies.items() if k.endswith(key))
        assert len(answers) == copies, answers
        for answer, result in zip(answers, results):
            succeeded(answer, result)
        assert len({a["PhysicalResourceId"] for a in answers}) == 1, answers
        states.append((answers[0]["PhysicalResourceId"], moto.iam_snapshot()))
    assert [pid for pid, _ in states] == ["twin", "twin", "twin2", "twin", "twin2"]
    assert_complete(states[0][1], "twin")
    assert_complete(states[1][1], "twin", ALL_TIERS + [S3_READ])
    assert set(states[2][1]["instance_profiles"]) == {"twin", "twin2"}
    assert_complete(states[3][1], "twin2", ALL_TIERS + [S3_READ])
    assert states[4][1] == EMPTY


# --- Deadlines -----------------------------------------------------------------------------------


def test_when_iam_never_answers_failed_arrives_with_time_to_spare(through_proxy, proxy, cfn, moto):
    """Every IAM request is held for ever: the work is stopped in time for the FAILED response,
    which reaches the response URL before the deadline."""
    hang = Hang()
    proxy.hooks.append(lambda request: hang)
    through_proxy()
    try:
        started = time.monotonic()
        result, response = cfn.send("Create", {"InstanceProfileName": "stuck"}, timeout_s=5)
        failed(response, result)
        assert "timed out" in response["Reason"]
        assert result.kind == "response", result
        assert time.monotonic() - started < 5
    finally:
        hang.release.set()


def test_when_the_response_url_never_answers_the_invocation_ends_in_error_before_the_deadline(
        start_function, cfn, moto, clean_moto):
    """The PUT is held for ever: the function gives up in time to report an error to Lambda
    (a timeout would say nothing about why)."""
    hang = Hang()
    with RecordingProxy(clean_moto.url, hooks=[lambda request: hang]) as sink:
        start_function({"ALLOWED_RESPONSE_URL_PREFIXES": f"{moto.url}/,{sink.url}/"})
        url, _ = cfn.response_url()
        event = make_event("Delete", {"InstanceProfileName": "nobody"}, physical_id="nobody",
                           response_url=url.replace(moto.url, sink.url, 1))
        try:
            result = cfn.runtime.invoke(event, timeout_s=4)
        finally:
            hang.release.set()
        assert result.kind == "error", result
        assert b"before the deadline" in result.body
        assert [r.method for r in sink.records] and all(r.method == "PUT" for r in sink.records)


# --- Scale ---------------------------------------------------------------------------------------


def test_100_concurrent_creates_on_10_processes_with_20_percent_throttling(
        runtime, through_proxy, proxy, cfn, moto):
    """As Lambda runs a stack with many resources: 100 Creates at once, spread over 10 function
    processes, with IAM throttling 20 % of requests. Every one ends in SUCCESS and IAM holds
    exactly the 100 complete instance profiles."""
    for _ in range(10):
        through_proxy()
    faults = Transient(0.2, seed=100, faults=[throttling])
    proxy.hooks.append(faults)
    names = [f"Fleet{i:03d}" for i in range(100)]
    keys = {}
    pending = []
    for name in names:
        url, key = cfn.response_url()
        keys[name] = key
        event = make_event("Create", {"InstanceProfileName": name}, response_url=url,
                           logical_id=name)
        pending.append(runtime.submit(event, timeout_s=120))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: p.wait(), pending))
    for name, result in zip(names, results):
        response = succeeded(cfn.read_response(keys[name]), result)
        assert response["PhysicalResourceId"] == name
    state = moto.iam_snapshot()
    assert set(state["instance_profiles"]) == set(names)
    assert len(state["roles"]) == 100
    for name in names:
        assert_complete({"instance_profiles": {name: state["instance_profiles"][name]},
                         "roles": {r: state["roles"][r]
                                   for r in state["instance_profiles"][name]["roles"]}},
                        name, logical_id=name)
    assert faults.injected["Throttling"] > 0
    print(f"{faults.requests} IAM requests, {faults.injected['Throttling']} throttled")
