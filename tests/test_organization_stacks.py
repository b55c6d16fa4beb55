"""deploy/organization.yaml deployed as a StackSet deploys it: one plain stack per account, each
made in that account by the local CloudFormation engine (ministack, local/cfn_engine.py) from the
function's zip in that account's S3. Each account's function runs as that account and changes
that account's IAM (moto) only, authorized against that account's execution role
(local/accounts.py); each stack ends with Elastic Beanstalk's default instance profile present and
healthy, and its deletion takes the profile away again. An account that already has the default
profile, untagged, adopts it with AllowAdoption; a stack instance outside DeploymentRegion makes
nothing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError

from helpers import (DOCKER, EC2_TRUST, S3_READ, TAG_ADOPTED, TAG_LOGICAL_ID, TAG_STACK_ID, WEB,
                     WORKER, make_profile, make_role, own_tags, own_tags_but_request, trust_document)
from local import authz, sam
from local.accounts import AccountRouter, MotoAccount
from local.ministack import Ministack
from local.proxy import RecordingProxy
from local.runtime_api import resolve_binary
from local.stack import (ORGANIZATION, Stacks, Step, deploy_organization_stack,
                         organization_template)
from test_stacks import iam_state, owned

# Simulated member accounts of the organization; none is moto's or ministack's default account.
PLAIN = ("111111111111", "222222222222")
ADOPTING = "333333333333"
ELSEWHERE = "444444444444"
ACCOUNTS = (*PLAIN, ADOPTING, ELSEWHERE)
# The stack parameters of each account besides CodeBucket and CodeKey; the execution role that
# authorizes the account's function is resolved with the same ones.
PARAMETERS = {ADOPTING: {"AllowAdoption": "true"}}
HOME = "us-east-1"
OTHER_REGION = "eu-west-1"

DEFAULT = "aws-elasticbeanstalk-ec2-role"
LOGICAL_ID = "DefaultInstanceProfile"
EXPORT_PREFIX = "eb-instance-profile-org"
EB_POLICIES = sorted([WEB, WORKER, DOCKER])
# The resources of a stack in DeploymentRegion, in the order they are made.
CREATED = ["LogGroup", "ExecutionRole", "InstanceProfileFunction",
           "InstanceProfileFunctionEventInvokeConfig", LOGICAL_ID]
DESCRIPTION = "Made by the Elastic Beanstalk console"


def stack_name(account: str) -> str:
    # As a StackSet names its stack instances: StackSet-<name>-<id>.
    return f"StackSet-eb-instance-profile-org-{account}"


@dataclass
class Organization:
    ministack: Ministack
    proxy: RecordingProxy
    router: AccountRouter
    code: bytes
    iam: dict[str, MotoAccount]
    stacks: dict[tuple[str, str], Stacks] = field(default_factory=dict)

    def stacks_of(self, account: str, region: str = HOME) -> Stacks:
        if (account, region) not in self.stacks:
            self.stacks[(account, region)] = Stacks(self.ministack, account=account, region=region)
        return self.stacks[(account, region)]

    def deploy(self, account: str, region: str = HOME) -> Step:
        return deploy_organization_stack(self.stacks_of(account, region), self.code,
                                         stack_name(account), PARAMETERS.get(account, {}))

    def delete(self, account: str, region: str = HOME) -> Step:
        return self.stacks_of(account, region).delete(stack_name(account))

    def verify(self, account: str, service_token: str) -> dict:
        """A direct Verify of the default profile, invoked through the engine's Lambda API as the
        account: the function's report."""
        answer = self.ministack.client("lambda", account=account).invoke(
            FunctionName=service_token,
            Payload=json.dumps({"Action": "Verify", "InstanceProfileName": DEFAULT}))
        payload = answer["Payload"].read()
        assert "FunctionError" not in answer, payload
        return json.loads(payload)

    def exports(self, account: str, region: str = HOME) -> dict[str, str]:
        cfn = self.ministack.client("cloudformation", account=account, region=region)
        return {e["Name"]: e["Value"] for e in cfn.list_exports()["Exports"]}


def _authorizer(evaluator, template: dict, account: str, moto_url: str):
    """The account's function is authorized against the execution role organization.yaml gives
    it in that account, with that account's parameters."""
    if evaluator is None:
        return None
    role = authz.ExecutionRole.from_template(PARAMETERS.get(account, {}), template=template,
                                             account=account, resource="ExecutionRole")
    return authz.Authorizer(evaluator, role, moto_url, moto_account=account,
                            tag_on_create=authz.mode() == "tag-on-create")


@pytest.fixture(scope="module")
def organization(moto, evaluator):
    iam = {account: MotoAccount(moto, account) for account in ACCOUNTS}
    for account_iam in iam.values():
        account_iam.clean()
    template = authz.load_template(ORGANIZATION)
    # Requests signed for any other account (moto's default one included) are refused.
    router = AccountRouter(default_account=authz.ACCOUNT_ID)
    for account in ACCOUNTS:
        router.add(account, _authorizer(evaluator, template, account, moto.url))
    with RecordingProxy(moto.url) as proxy, Ministack({
        "AWS_ENDPOINT_URL_IAM": proxy.url,
        "PROPAGATION_INTERVAL_MS": "20",
        "IAM_RETRY_BACKOFF_MS": "50",
        "RUST_LOG": "info",
    }) as ministack:
        proxy.authorize = router
        yield Organization(ministack, proxy, router, sam.package_bootstrap(resolve_binary()), iam)
        # Printed at teardown: pytest shows it only for a failing test.
        print(f"----- ministack log ({ministack.log_path}), last 20,000 characters -----\n"
              f"{ministack.logs()[-20000:]}", file=sys.stderr)
    for account_iam in iam.values():
        account_iam.clean()


@pytest.fixture(scope="module")
def plain(organization) -> dict[str, Step]:
    """The organization stack created in each plain account, one after the other."""
    return {account: organization.deploy(account) for account in PLAIN}


# What the tests compare

def created(step: Step) -> list[str]:
    return [e["LogicalResourceId"] for e in step.events
            if e["ResourceStatus"] == "CREATE_COMPLETE" and e["LogicalResourceId"] != step.stack_name]


def requests(step: Step) -> list[tuple]:
    return [(r["RequestType"], r["LogicalResourceId"], r.get("PhysicalResourceId"), r["Attempt"])
            for r in step.requests()]


def answered(step: Step) -> list[dict]:
    """Every response body of the step; each must pass CloudFormation's checks."""
    bad = [r for r in step.responses() if r["verdict"] != "valid"]
    assert not bad, f"responses CloudFormation would refuse: {bad}"
    return [r["body"] for r in step.responses()]


def healthy_report(account: str, path: str) -> dict:
    return {
        "Action": "Verify",
        "InstanceProfileName": DEFAULT,
        "InstanceProfileArn": f"arn:aws:iam::{account}:instance-profile{path}{DEFAULT}",
        "RoleName": DEFAULT,
        "RoleArn": f"arn:aws:iam::{account}:role{path}{DEFAULT}",
        "TrustPolicyAllowsEc2": True,
        "ExpectedPolicies": EB_POLICIES,
        "AttachedPolicies": EB_POLICIES,
        "MissingPolicies": [],
        "ExtraPolicies": [],
        "Repaired": [],
        "Problems": [],
        "Verdict": "Healthy",
    }


# One stack per account

def test_each_account_gets_its_own_default_profile(organization, plain):
    for account, step in plain.items():
        assert step.status == "CREATE_COMPLETE", (account, step.status_reason, step.events)
        assert step.stack_id.startswith(f"arn:aws:cloudformation:{HOME}:{account}:stack/{stack_name(account)}/")
        assert created(step) == CREATED
        assert requests(step) == [("Create", LOGICAL_ID, None, 1)]
        [body] = answered(step)
        assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", DEFAULT)
        service_token = step.outputs["ServiceToken"]
        assert service_token.startswith(f"arn:aws:lambda:{HOME}:{account}:function:")
        assert step.outputs == {"InstanceProfileName": DEFAULT, "ServiceToken": service_token}
        assert organization.exports(account) == {
            f"{EXPORT_PREFIX}-InstanceProfileName": DEFAULT,
            f"{EXPORT_PREFIX}-ServiceToken": service_token}
        # In the account's own IAM: the profile holding its role, with the three Elastic Beanstalk
        # policies and the ownership tags of this account's stack, under the function's path.
        assert iam_state(organization.iam[account]) == {
            DEFAULT: owned(step.stack_id, LOGICAL_ID, DEFAULT, EB_POLICIES)}
        snapshot = organization.iam[account].iam_snapshot()
        assert snapshot["instance_profiles"][DEFAULT]["path"] == "/eb-instance-profile/"
        assert snapshot["roles"][DEFAULT]["path"] == "/eb-instance-profile/"
        assert trust_document(snapshot["roles"][DEFAULT]) == EC2_TRUST


def test_each_function_acts_in_its_own_account_only(organization, plain, moto):
    # Every IAM request of the functions was signed for, and forwarded to, their own accounts;
    # the stack-less accounts and moto's default account saw none.
    assert set(organization.router.routed) == set(PLAIN)
    assert DEFAULT not in organization.iam[ADOPTING].iam_snapshot()["instance_profiles"]
    assert DEFAULT not in MotoAccount(moto, authz.ACCOUNT_ID).iam_snapshot()["instance_profiles"]
    for account, step in plain.items():
        function = organization.ministack.client("lambda", account=account).get_function(
            FunctionName=step.outputs["ServiceToken"])["Configuration"]
        role_arn = function["Role"]
        assert role_arn.startswith(f"arn:aws:iam::{account}:role/")
        # The execution role, in the engine's IAM of that account, is organization.yaml's: its
        # statements name that account's entities.
        policy = organization.ministack.client("iam", account=account).get_role_policy(
            RoleName=role_arn.rsplit("/", 1)[1], PolicyName="iam")["PolicyDocument"]
        policy = json.loads(policy) if isinstance(policy, str) else policy
        [create] = [s for s in policy["Statement"] if s.get("Sid") == "CreateOwnedRoles"]
        assert create["Resource"] == f"arn:aws:iam::{account}:role/eb-instance-profile/*"
        assert "AdoptUnownedEntities" not in {s.get("Sid") for s in policy["Statement"]}


def test_verify_reports_each_default_profile_healthy(organization, plain):
    for account, step in plain.items():
        before = organization.iam[account].iam_snapshot()
        report = organization.verify(account, step.outputs["ServiceToken"])
        assert report == healthy_report(account, "/eb-instance-profile/")
        assert organization.iam[account].iam_snapshot() == before


def test_an_untagged_default_profile_is_adopted_with_allow_adoption(organization):
    iam = organization.iam[ADOPTING]
    # As the Elastic Beanstalk console leaves it: untagged, at /, WebTier and a policy of the user's.
    make_role(iam.iam_client(), DEFAULT, policies=(WEB, S3_READ), description=DESCRIPTION)
    make_profile(iam.iam_client(), DEFAULT, role=DEFAULT)

    step = organization.deploy(ADOPTING)

    assert step.status == "CREATE_COMPLETE", (step.status_reason, step.events)
    assert created(step) == CREATED
    [body] = answered(step)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", DEFAULT)
    assert organization.exports(ADOPTING)[f"{EXPORT_PREFIX}-InstanceProfileName"] == DEFAULT
    adopted = {TAG_STACK_ID: step.stack_id, TAG_LOGICAL_ID: LOGICAL_ID, TAG_ADOPTED: "true"}
    snapshot = iam.iam_snapshot()
    assert set(snapshot["roles"]) == set(snapshot["instance_profiles"]) == {DEFAULT}
    role, profile = snapshot["roles"][DEFAULT], snapshot["instance_profiles"][DEFAULT]
    # The missing Elastic Beanstalk policies added, nothing taken away.
    assert role["managed_policies"] == sorted([*EB_POLICIES, S3_READ])
    assert (role["path"], role["description"]) == ("/", DESCRIPTION)
    assert own_tags_but_request(role["tags"]) == adopted
    assert (profile["path"], profile["roles"]) == ("/", [DEFAULT])
    assert adopted.items() <= own_tags(profile["tags"]).items()
    report = organization.verify(ADOPTING, step.outputs["ServiceToken"])
    assert report == {**healthy_report(ADOPTING, "/"), "AttachedPolicies": sorted([*EB_POLICIES, S3_READ]),
                      "ExtraPolicies": [S3_READ]}

    step = organization.delete(ADOPTING)

    assert step.status == "DELETE_COMPLETE", step.events
    assert requests(step) == [("Delete", LOGICAL_ID, DEFAULT, 1)]
    answered(step)
    # Given back: in place with every policy, without the function's tags.
    snapshot = iam.iam_snapshot()
    assert snapshot["roles"][DEFAULT]["managed_policies"] == sorted([*EB_POLICIES, S3_READ])
    assert snapshot["roles"][DEFAULT]["tags"] == {}
    assert snapshot["instance_profiles"][DEFAULT] == {"path": "/", "tags": {}, "roles": [DEFAULT]}
    assert set(snapshot["roles"]) == set(snapshot["instance_profiles"]) == {DEFAULT}


def test_a_stack_outside_the_deployment_region_makes_nothing(organization):
    step = organization.deploy(ELSEWHERE, region=OTHER_REGION)

    assert step.status == "CREATE_COMPLETE", (step.status_reason, step.events)
    assert step.stack_id.startswith(f"arn:aws:cloudformation:{OTHER_REGION}:{ELSEWHERE}:stack/")
    assert created(step) == ["OutsideDeploymentRegion"]
    assert step.outputs == {} and organization.exports(ELSEWHERE, OTHER_REGION) == {}
    assert step.journal == []
    assert ELSEWHERE not in organization.router.routed
    assert organization.iam[ELSEWHERE].iam_snapshot() == {"roles": {}, "instance_profiles": {}}
    lam = organization.ministack.client("lambda", account=ELSEWHERE, region=OTHER_REGION)
    assert lam.list_functions()["Functions"] == []

    assert organization.delete(ELSEWHERE, region=OTHER_REGION).status == "DELETE_COMPLETE"


def test_a_tier_outside_the_allowed_values_is_refused(organization):
    """Each member of the Tiers list is checked against AllowedValues, as CloudFormation checks it."""
    cfn = organization.stacks_of(ELSEWHERE).cfn
    with pytest.raises(ClientError) as refused:
        cfn.create_stack(StackName="StackSet-eb-instance-profile-org-bad-tier",
                         TemplateBody=json.dumps(organization_template()),
                         Parameters=[{"ParameterKey": "CodeBucket", "ParameterValue": "code"},
                                     {"ParameterKey": "CodeKey", "ParameterValue": "bootstrap.zip"},
                                     {"ParameterKey": "Tiers", "ParameterValue": "WebTier,Frontend"}],
                         Capabilities=["CAPABILITY_IAM"])
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "Parameter 'Tiers' value 'WebTier,Frontend' is not in AllowedValues" in str(refused.value)
    assert "StackSet-eb-instance-profile-org-bad-tier" not in {
        s["StackName"] for s in cfn.list_stacks()["StackSummaries"]}


def test_deleting_each_stack_empties_only_its_accounts_iam(organization, plain):
    first, second = PLAIN
    step = organization.delete(first)
    assert step.status == "DELETE_COMPLETE", step.events
    assert requests(step) == [("Delete", LOGICAL_ID, DEFAULT, 1)]
    assert [b["Status"] for b in answered(step)] == ["SUCCESS"]
    deleted = [e["LogicalResourceId"] for e in step.events if e["ResourceStatus"] == "DELETE_COMPLETE"]
    # The profile goes first: the function that deletes it outlives it.
    assert deleted.index(LOGICAL_ID) < deleted.index("InstanceProfileFunction")
    assert organization.iam[first].iam_snapshot() == {"roles": {}, "instance_profiles": {}}
    assert organization.exports(first) == {}
    # The other account's profile is untouched.
    assert iam_state(organization.iam[second]) == {
        DEFAULT: owned(plain[second].stack_id, LOGICAL_ID, DEFAULT, EB_POLICIES)}

    step = organization.delete(second)
    assert step.status == "DELETE_COMPLETE", step.events
    assert requests(step) == [("Delete", LOGICAL_ID, DEFAULT, 1)]
    answered(step)
    assert organization.iam[second].iam_snapshot() == {"roles": {}, "instance_profiles": {}}
