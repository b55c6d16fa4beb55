"""Small helpers shared by the integration tests (names, policies, snapshots, ready-made roles and
profiles). Imported as `helpers` (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import urllib.parse

from local.moto import MotoServer

ACCOUNT = "123456789012"
OWN_TAG_PREFIX = "eb-instance-profile:"
TAG_STACK_ID = "eb-instance-profile:stack-id"
TAG_LOGICAL_ID = "eb-instance-profile:logical-id"
TAG_ADOPTED = "eb-instance-profile:adopted"
TAG_REQUEST_ID = "eb-instance-profile:request-id"

EC2_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def aws_policy(name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::aws:policy/{name}"


def eb_policies(partition: str = "aws") -> dict[str, str]:
    """Tier name -> the Elastic Beanstalk managed policy ARN in `partition`."""
    return {t: aws_policy(f"AWSElasticBeanstalk{t}", partition)
            for t in ("WebTier", "WorkerTier", "MulticontainerDocker")}


WEB, WORKER, DOCKER = eb_policies().values()
S3_READ = aws_policy("AmazonS3ReadOnlyAccess")
READ_ONLY = aws_policy("ReadOnlyAccess")


def succeeded(response, result=None) -> dict:
    assert response is not None, f"no response delivered: {result}"
    assert response["Status"] == "SUCCESS", response
    return response


def failed(response, result=None) -> dict:
    assert response is not None, f"no response delivered: {result}"
    assert response["Status"] == "FAILED", response
    assert response["PhysicalResourceId"], response
    assert isinstance(response["Reason"], str) and response["Reason"], response
    return response


def tag_list(tags: dict[str, str]) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def own_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags of this function (eb-instance-profile:*) among `tags`."""
    return {k: v for k, v in tags.items() if k.startswith(OWN_TAG_PREFIX)}


def own_tags_but_request(tags: dict[str, str], request_id: str | None = None) -> dict[str, str]:
    """`own_tags` without the request-id tag, which must be there: "<RequestId or its digest>
    <delivery mark>", the RequestId's own when `request_id` is given."""
    own = own_tags(tags)
    creation = own.pop(TAG_REQUEST_ID, None)
    assert creation is not None and " " in creation, tags
    if request_id is not None:
        assert creation.rsplit(" ", 1)[0] == request_id, (creation, request_id)
    return own


def trust_document(role_snapshot: dict) -> dict:
    """A role's trust policy from a snapshot, as a dict (IAM may return it URL-encoded)."""
    doc = role_snapshot["assume_role_policy"]
    if isinstance(doc, str):
        doc = json.loads(urllib.parse.unquote(doc))
    return doc


def trusted_services(role_snapshot: dict) -> set[str]:
    """Services that the role's trust policy allows to sts:AssumeRole."""
    services = set()
    for st in trust_document(role_snapshot)["Statement"]:
        actions = st.get("Action")
        actions = [actions] if isinstance(actions, str) else actions or []
        if st.get("Effect") != "Allow" or "sts:AssumeRole" not in actions:
            continue
        principal = (st.get("Principal") or {}).get("Service")
        services.update([principal] if isinstance(principal, str) else principal or [])
    return services


def iam_client(moto: MotoServer, region: str = "us-east-1"):
    """A boto3 IAM client against moto signing for `region`: moto keeps one IAM per partition
    and picks it by the signing region (cn-north-1 -> aws-cn, us-gov-west-1 -> aws-us-gov)."""
    return moto.client("iam", region=region)


class _Regional:
    """Stands in for MotoServer in MotoServer.iam_snapshot, with a client of another region."""

    def __init__(self, moto: MotoServer, region: str):
        self._client = iam_client(moto, region)

    def iam_client(self):
        return self._client


def iam_snapshot(moto: MotoServer, region: str = "us-east-1") -> dict:
    """moto.iam_snapshot() of the partition that `region` belongs to."""
    return MotoServer.iam_snapshot(_Regional(moto, region))


def make_role(iam, name: str, *, trust: dict = EC2_TRUST, policies=(), tags=None,
              description: str | None = None, max_session_duration: int | None = None,
              path: str = "/") -> None:
    kwargs = {"RoleName": name, "AssumeRolePolicyDocument": json.dumps(trust), "Path": path}
    if tags:
        kwargs["Tags"] = tag_list(tags)
    if description is not None:
        kwargs["Description"] = description
    if max_session_duration is not None:
        kwargs["MaxSessionDuration"] = max_session_duration
    iam.create_role(**kwargs)
    for arn in policies:
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)


def make_profile(iam, name: str, *, role: str | None = None, tags=None, path: str = "/") -> None:
    kwargs = {"InstanceProfileName": name, "Path": path}
    if tags:
        kwargs["Tags"] = tag_list(tags)
    iam.create_instance_profile(**kwargs)
    if role:
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
