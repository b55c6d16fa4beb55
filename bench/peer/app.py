"""The benchmark's peer: the same core job as eb-instance-profile, written the way a typical
crhelper + boto3 custom resource is written (handler `app.handler`, run under awslambdaric).

Create: a role that EC2 may assume, the Elastic Beanstalk managed policies of the chosen tiers
(all three by default) and any extra ManagedPolicyArns attached, an instance profile holding the
role, both tagged with Tags. Update in place: attach the policies that were added, detach the ones
that were removed, tag with the new Tags and untag removed keys. Delete: remove the role from the
profile, delete the profile, detach the policies, delete the role; anything already gone is fine.

Properties: InstanceProfileName (default: generated), RoleName (default: the profile name),
Tiers, ManagedPolicyArns, Tags ([{Key, Value}]). Other changes than these are not handled.
"""

import json
import logging

import boto3
from crhelper import CfnResource

logger = logging.getLogger(__name__)

# sleep_on_delete=0: crhelper sleeps 120 s before answering a Delete (to let CloudWatch Logs
# catch up) whenever the function has more than 135 s left; its documented parameter turns that
# off. Everything else is crhelper's default except the log level (INFO, not DEBUG).
helper = CfnResource(json_logging=False, log_level="INFO", boto_level="CRITICAL", sleep_on_delete=0)

try:
    iam = boto3.client("iam")
except Exception as e:
    helper.init_failure(e)

TIER_POLICIES = {
    "WebTier": "AWSElasticBeanstalkWebTier",
    "WorkerTier": "AWSElasticBeanstalkWorkerTier",
    "MulticontainerDocker": "AWSElasticBeanstalkMulticontainerDocker",
}
TRUST_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }],
})


def _partition(event):
    return event["StackId"].split(":")[1]


def _account(event):
    return event["StackId"].split(":")[4]


def _policy_arns(event, props):
    partition = _partition(event)
    tiers = props.get("Tiers") or list(TIER_POLICIES)
    arns = [f"arn:{partition}:iam::aws:policy/{TIER_POLICIES[tier]}" for tier in tiers]
    return arns + list(props.get("ManagedPolicyArns") or [])


def _tags(props):
    return [{"Key": t["Key"], "Value": t["Value"]} for t in props.get("Tags") or []]


def _names(event, props, physical_id=None):
    profile = physical_id or props.get("InstanceProfileName") or helper.generate_physical_id(event)[:64]
    return profile, props.get("RoleName") or profile


def _report(event, profile, role):
    prefix = f"arn:{_partition(event)}:iam::{_account(event)}"
    helper.Data.update({
        "Arn": f"{prefix}:instance-profile/{profile}",
        "InstanceProfileName": profile,
        "RoleName": role,
        "RoleArn": f"{prefix}:role/{role}",
    })


@helper.create
def create(event, context):
    props = event["ResourceProperties"]
    profile, role = _names(event, props)
    tags = _tags(props)
    logger.info("creating role %s and instance profile %s", role, profile)

    iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST_POLICY,
                    Description="EC2 instance role for Elastic Beanstalk", Tags=tags)
    for arn in _policy_arns(event, props):
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    iam.create_instance_profile(InstanceProfileName=profile, Tags=tags)
    iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role)
    # Wait until the new profile can be read back before handing it to Elastic Beanstalk.
    iam.get_waiter("instance_profile_exists").wait(InstanceProfileName=profile)

    _report(event, profile, role)
    return profile


@helper.update
def update(event, context):
    props, old = event["ResourceProperties"], event["OldResourceProperties"]
    profile, role = _names(event, props, event["PhysicalResourceId"])
    logger.info("updating role %s", role)

    new_arns, old_arns = _policy_arns(event, props), _policy_arns(event, old)
    for arn in new_arns:
        if arn not in old_arns:
            iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    for arn in old_arns:
        if arn not in new_arns:
            iam.detach_role_policy(RoleName=role, PolicyArn=arn)

    tags = _tags(props)
    removed = [t["Key"] for t in _tags(old) if t["Key"] not in {n["Key"] for n in tags}]
    if tags:
        iam.tag_role(RoleName=role, Tags=tags)
        iam.tag_instance_profile(InstanceProfileName=profile, Tags=tags)
    if removed:
        iam.untag_role(RoleName=role, TagKeys=removed)
        iam.untag_instance_profile(InstanceProfileName=profile, TagKeys=removed)

    _report(event, profile, role)
    return profile


@helper.delete
def delete(event, context):
    props = event["ResourceProperties"]
    profile, role = _names(event, props, event["PhysicalResourceId"])
    logger.info("deleting instance profile %s and role %s", profile, role)

    try:
        iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=role)
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        iam.delete_instance_profile(InstanceProfileName=profile)
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        for policy in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=role, PolicyArn=policy["PolicyArn"])
        iam.delete_role(RoleName=role)
    except iam.exceptions.NoSuchEntityException:
        pass


def handler(event, context):
    helper(event, context)
