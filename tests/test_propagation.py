"""WaitForPropagation: after a Create or a replacement the function reads the instance profile back
until it shows its role PROPAGATION_READS times in a row, and gives up (removing what it made)
before the deadline. IAM's eventual consistency is played by a proxy in front of moto that answers
GetInstanceProfile with NoSuchEntity for chosen reads."""

from __future__ import annotations

import pytest

from faults import Always, HideProfile
from helpers import WEB, failed, succeeded

NAME = "eb-web"
PROPS = {"InstanceProfileName": NAME, "Tiers": ["WebTier"]}
INTERVAL_MS = 20


@pytest.fixture
def through_proxy(start_function, proxy):
    """start_function for a function whose IAM calls go through `proxy`."""
    def start(extra_env=None):
        return start_function(extra_env, iam_proxy=proxy)
    return start


def hide(proxy, hidden, name=NAME) -> HideProfile:
    hook = HideProfile(name, hidden)
    proxy.hooks.append(hook)
    return hook


def get_instance_profile_records(proxy):
    return [r for r in proxy.records if r.action == "GetInstanceProfile"]


def assert_spaced(records, interval_s=INTERVAL_MS / 1000):
    """Each read starts at least (about) the interval after the previous one was answered."""
    for earlier, later in zip(records, records[1:]):
        # A little slack: the proxy stamps `finished` just after the answer left.
        assert later.started - earlier.finished >= interval_s * 0.75, (earlier, later)


def test_create_waits_through_hidden_reads_for_three_consecutive_good_ones(through_proxy, proxy, cfn, moto):
    """Two NoSuchEntity reads, then three good ones in a row: exactly 5 GetInstanceProfile calls."""
    through_proxy()
    hook = hide(proxy, {1, 2})

    result, response = cfn.send("Create", PROPS)

    succeeded(response, result)
    assert hook.reads() == [(1, True), (2, True), (3, False), (4, False), (5, False)]
    records = get_instance_profile_records(proxy)
    assert [r.status for r in records] == [404, 404, 200, 200, 200]
    assert_spaced(records)
    # The reads come after the profile was given its role, as the last IAM calls of the Create.
    add = [r for r in proxy.records if r.action == "AddRoleToInstanceProfile"]
    assert len(add) == 1 and add[0].finished <= records[0].started
    assert moto.iam_snapshot()["instance_profiles"][NAME]["roles"] == [NAME]


@pytest.mark.plain_iam  # counts the reads exactly; a stale read would add one
@pytest.mark.parametrize("hidden, reads", [({2}, 5), ({1, 3}, 6), ({3, 5}, 8)])
def test_a_miss_between_good_reads_starts_the_count_again(through_proxy, proxy, cfn, hidden, reads):
    """The good reads must be consecutive: a NoSuchEntity after a good read resets the streak."""
    through_proxy()
    hook = hide(proxy, hidden)

    result, response = cfn.send("Create", PROPS)

    succeeded(response, result)
    assert len(hook.reads()) == reads, hook.reads()
    assert [n for n, h in hook.reads() if h] == sorted(hidden)


@pytest.mark.plain_iam  # counts the reads exactly; a stale read would add one
def test_propagation_reads_sets_the_number_of_good_reads(through_proxy, proxy, cfn):
    """PROPAGATION_READS=5: five good reads in a row, no more."""
    through_proxy({"PROPAGATION_READS": "5"})

    result, response = cfn.send("Create", PROPS)

    succeeded(response, result)
    records = get_instance_profile_records(proxy)
    assert [r.status for r in records] == [200] * 5
    assert_spaced(records)


def test_wait_for_propagation_false_reads_nothing_back(through_proxy, proxy, cfn, moto):
    """WaitForPropagation: false answers SUCCESS without a single GetInstanceProfile."""
    through_proxy()
    hook = hide(proxy, Always())

    result, response = cfn.send("Create", {**PROPS, "WaitForPropagation": False})

    succeeded(response, result)
    assert get_instance_profile_records(proxy) == []
    assert hook.log == []
    assert moto.iam_snapshot()["roles"][NAME]["managed_policies"] == [WEB]


def test_a_replacement_waits_for_the_new_profile(through_proxy, proxy, cfn, moto):
    """An Update that replaces the profile waits for the new one like a Create does."""
    through_proxy()
    old_id = succeeded(cfn.send("Create", PROPS)[1])["PhysicalResourceId"]
    new = {**PROPS, "InstanceProfileName": "eb-web-2"}
    hook = hide(proxy, {1, 2}, name="eb-web-2")

    result, response = cfn.send("Update", new, physical_id=old_id, old_properties=PROPS)

    succeeded(response, result)
    assert response["PhysicalResourceId"] == "eb-web-2"
    assert hook.reads() == [(1, True), (2, True), (3, False), (4, False), (5, False)]
    assert moto.iam_snapshot()["instance_profiles"]["eb-web-2"]["roles"] == ["eb-web-2"]


def test_a_profile_that_never_shows_fails_before_the_deadline_and_the_rollback_cleans_up(
        through_proxy, proxy, cfn, moto):
    """Hidden for ever: FAILED "did not read back" before the deadline; the rollback Delete removes all."""
    through_proxy()
    hook = hide(proxy, Always())

    result, response = cfn.send("Create", PROPS, timeout_s=6)

    assert result.kind == "response", result
    assert result.elapsed_s < 6, result.elapsed_s
    failed(response, result)
    assert "did not read back" in response["Reason"], response["Reason"]
    assert response["PhysicalResourceId"] == NAME
    assert len(hook.reads()) >= 3 and all(h for _, h in hook.reads())

    # IAM catches up; CloudFormation sends the rollback Delete for the FAILED id.
    proxy.hooks.remove(hook)
    result, response = cfn.send("Delete", PROPS, physical_id=response["PhysicalResourceId"])

    succeeded(response, result)
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_a_replacement_that_never_shows_fails_in_time_and_the_rollback_update_succeeds(
        through_proxy, proxy, cfn, moto):
    """A replacement whose profile never reads back: FAILED with the old id; CloudFormation's rollback Update succeeds."""
    through_proxy()
    succeeded(cfn.send("Create", PROPS)[1])
    before = moto.iam_snapshot()
    new = {**PROPS, "InstanceProfileName": "eb-web-2"}
    hook = hide(proxy, Always(), name="eb-web-2")

    result, response = cfn.send("Update", new, physical_id=NAME, old_properties=PROPS, timeout_s=6)

    assert result.kind == "response" and result.elapsed_s < 6, result
    failed(response, result)
    assert response["PhysicalResourceId"] == NAME
    assert "did not read back" in response["Reason"], response["Reason"]

    # UPDATE_ROLLBACK_IN_PROGRESS: the same resource, old and new properties swapped.
    proxy.hooks.remove(hook)
    result, response = cfn.send("Update", PROPS, physical_id=NAME, old_properties=new)

    succeeded(response, result)
    assert response["PhysicalResourceId"] == NAME
    state = moto.iam_snapshot()
    assert state["roles"][NAME] == before["roles"][NAME]
    assert state["instance_profiles"][NAME] == before["instance_profiles"][NAME]


def test_the_wait_never_sleeps_past_the_deadline(through_proxy, proxy, cfn, moto):
    """An interval longer than the time left ends the wait at once: FAILED in time, naming the
    profile, whose rollback Delete removes what was made."""
    through_proxy({"PROPAGATION_INTERVAL_MS": "60000"})

    result, response = cfn.send("Create", PROPS, timeout_s=6)

    assert result.kind == "response" and result.elapsed_s < 6, result
    failed(response, result)
    assert "did not read back" in response["Reason"], response["Reason"]
    assert "nothing was removed" in response["Reason"], response["Reason"]
    succeeded(cfn.send("Delete", PROPS, physical_id=response["PhysicalResourceId"])[1])
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}
