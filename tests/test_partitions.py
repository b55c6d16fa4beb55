"""Partitions: a StackId in aws-cn or aws-us-gov leads to policy ARNs in that partition, in Create,
Update, Verify and Repair. moto keeps one IAM per partition, chosen by the signing region, so the
function runs with AWS_REGION in that partition and the state is read with a client of that region."""

from __future__ import annotations

import pytest

from helpers import aws_policy, eb_policies, failed, iam_snapshot, succeeded

PARTITIONS = [
    pytest.param(("aws-cn", "cn-north-1"), id="aws-cn"),
    pytest.param(("aws-us-gov", "us-gov-west-1"), id="aws-us-gov"),
]
NAME = "eb-profile"


class Stack:
    """One stack in another partition: its StackId, the function running there, and IAM's state."""

    def __init__(self, partition, region, start_function, cfn, moto):
        self.partition, self.region = partition, region
        self.stack_id = (f"arn:{partition}:cloudformation:{region}:123456789012:"
                         f"stack/demo-stack/0f1e2d3c-aaaa-bbbb-cccc-123456789abc")
        self.cfn, self.moto = cfn, moto
        start_function({"AWS_REGION": region})
        eb = eb_policies(partition)
        self.web, self.worker, self.docker = eb["WebTier"], eb["WorkerTier"], eb["MulticontainerDocker"]

    def send(self, request_type, props, **kw):
        return self.cfn.send(request_type, props, stack_id=self.stack_id, **kw)

    def snapshot(self):
        return iam_snapshot(self.moto, self.region)

    def arn(self, kind, name):
        """The ARN of an entity the function made (under its path /eb-instance-profile/)."""
        return f"arn:{self.partition}:iam::123456789012:{kind}/eb-instance-profile/{name}"


@pytest.fixture(params=PARTITIONS)
def stack(request, start_function, cfn, moto):
    partition, region = request.param
    return Stack(partition, region, start_function, cfn, moto)


def test_create_attaches_policies_of_the_stacks_partition(stack, moto):
    """Create in aws-cn / aws-us-gov: the EB and bare-named policies are attached as arn:<partition>:... ."""
    s3 = aws_policy("AmazonS3ReadOnlyAccess", stack.partition)

    result, response = stack.send("Create", {"InstanceProfileName": NAME, "Tiers": ["WebTier", "WorkerTier"],
                                             "ManagedPolicyArns": ["AmazonS3ReadOnlyAccess"]})

    succeeded(response, result)
    state = stack.snapshot()
    assert state["roles"][NAME]["managed_policies"] == sorted([stack.web, stack.worker, s3])
    assert state["instance_profiles"][NAME]["roles"] == [NAME]
    assert response["Data"] == {
        "Arn": stack.arn("instance-profile", NAME),
        "InstanceProfileName": NAME,
        "InstanceProfileArn": stack.arn("instance-profile", NAME),
        "RoleName": NAME,
        "RoleArn": stack.arn("role", NAME),
        "ManagedPolicyArns": ",".join(sorted([stack.web, stack.worker, s3])),
    }
    # Nothing went to the aws partition.
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_a_policy_arn_of_another_partition_is_refused(stack):
    """A ManagedPolicyArns entry in partition aws fails a Create whose stack is in another partition."""
    result, response = stack.send("Create", {"InstanceProfileName": NAME,
                                             "ManagedPolicyArns": [aws_policy("AmazonS3ReadOnlyAccess")]})

    failed(response, result)
    assert "ManagedPolicyArns" in response["Reason"] and stack.partition in response["Reason"], response
    assert stack.snapshot() == {"roles": {}, "instance_profiles": {}}


def test_update_attaches_the_added_tier_in_the_stacks_partition(stack):
    """An Update adding a tier attaches its policy in the stack's partition."""
    old = {"InstanceProfileName": NAME, "Tiers": ["WebTier"]}
    succeeded(stack.send("Create", old)[1])
    new = {"InstanceProfileName": NAME, "Tiers": ["WebTier", "MulticontainerDocker"]}

    result, response = stack.send("Update", new, physical_id=NAME, old_properties=old)

    succeeded(response, result)
    assert stack.snapshot()["roles"][NAME]["managed_policies"] == sorted([stack.web, stack.docker])
    assert response["Data"]["ManagedPolicyArns"] == ",".join(sorted([stack.web, stack.docker]))


def test_verify_and_repair_use_the_partition_of_the_profile(stack, runtime):
    """Verify and Repair of a profile in aws-cn / aws-us-gov expect, report and attach ARNs of that partition."""
    succeeded(stack.send("Create", {"InstanceProfileName": NAME, "Tiers": ["WebTier"]})[1])

    verified = runtime.invoke({"Action": "Verify", "InstanceProfileName": NAME}).json()

    assert verified["InstanceProfileArn"] == stack.arn("instance-profile", NAME)
    assert verified["RoleArn"] == stack.arn("role", NAME)
    assert verified["ExpectedPolicies"] == sorted([stack.web, stack.worker, stack.docker])
    assert verified["MissingPolicies"] == sorted([stack.worker, stack.docker])
    assert verified["Verdict"] == "NeedsRepair"

    repaired = runtime.invoke({"Action": "Repair", "InstanceProfileName": NAME,
                               "ManagedPolicyArns": ["AmazonS3ReadOnlyAccess"]}).json()

    s3 = aws_policy("AmazonS3ReadOnlyAccess", stack.partition)
    assert repaired["Repaired"] == sorted([stack.worker, stack.docker, s3])
    assert repaired["Verdict"] == "Healthy"
    assert stack.snapshot()["roles"][NAME]["managed_policies"] == \
        sorted([stack.web, stack.worker, stack.docker, s3])


def test_verify_of_a_missing_profile_expects_the_functions_partition(stack, runtime):
    """With no profile to take the partition from, the expected ARNs follow the function's region."""
    report = runtime.invoke({"Action": "Verify", "InstanceProfileName": "absent"}).json()

    assert report["Verdict"] == "Broken"
    assert report["ExpectedPolicies"] == sorted([stack.web, stack.worker, stack.docker])
