"""A local moto server standing in for IAM and S3, with the boto3 helpers the tests use.

    with MotoServer() as moto:
        url = moto.response_url("cfn-responses", "create-1")   # presigned S3 PUT
        ...                                                     # the function PUTs there
        moto.read_response("cfn-responses", "create-1")         # -> dict | None
        moto.iam_snapshot()                                     # roles and instance profiles
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from . import _proc

REGION = "us-east-1"
# One region of each partition the tests use: moto keeps a separate IAM per partition.
CLEAN_REGIONS = ("us-east-1", "cn-north-1", "us-gov-west-1")
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_command() -> list[str]:
    # Prefer the console script of the interpreter running us (the venv), so a
    # moto_server elsewhere on PATH is never picked up by accident.
    script = Path(sys.executable).parent / "moto_server"
    if script.exists():
        return [str(script)]
    found = shutil.which("moto_server")
    return [found] if found else [sys.executable, "-m", "moto.server"]


class MotoServer:
    """moto_server on 127.0.0.1 at a free port, with AWS managed policies loaded."""

    def __init__(self, port: int | None = None, *, start_timeout_s: float = 30.0):
        self._port = port
        self._start_timeout_s = start_timeout_s
        self._proc = None
        self.url: str | None = None
        self.log_path = _proc.new_log_path("moto")
        self._clients: dict[tuple[str, str, str], object] = {}
        self._clients_lock = threading.Lock()

    # lifecycle

    def start(self) -> "MotoServer":
        if self._proc is not None:
            raise RuntimeError("MotoServer already started")
        # The port is picked before moto binds it, so another process can take it in
        # between: try again with a new one when moto exits at start.
        for _attempt in range(3):
            port = self._port or _free_port()
            env = dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true")
            # Without this, moto's own boto3 calls could pick up machine credentials.
            env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION})
            self._proc = _proc.spawn(
                _moto_command() + ["-H", "127.0.0.1", "-p", str(port)], env, self.log_path)
            self.url = f"http://127.0.0.1:{port}"
            if self._wait_until_up():
                self._warm_up()
                return self
            _proc.stop(self._proc)
            self._proc = None
            if self._port:
                break
        raise RuntimeError(f"moto_server did not start; log:\n{self.logs()}")

    def _wait_until_up(self) -> bool:
        return _proc.wait_until_healthy(self._proc, f"{self.url}/moto-api/", self._start_timeout_s)

    def _warm_up(self) -> None:
        # The first IAM call after start or reset loads the AWS managed policies, and the
        # first CreateRole takes another ~0.7 s. Pay both here, not inside a timed
        # invocation of the function.
        iam = self.iam_client()
        iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
        iam.create_role(RoleName="moto-warm-up", AssumeRolePolicyDocument="{}")
        iam.delete_role(RoleName="moto-warm-up")

    def clean(self) -> None:
        """Delete every role, instance profile and customer managed policy, in each partition
        the tests use, through the IAM API. Much faster than reset(), which reloads the ~1,000
        AWS managed policies; S3 objects stay (tests use fresh keys)."""
        for region in CLEAN_REGIONS:
            iam = self.client("iam", region=region)
            for page in iam.get_paginator("list_instance_profiles").paginate():
                for profile in page["InstanceProfiles"]:
                    name = profile["InstanceProfileName"]
                    for role in profile.get("Roles", []):
                        iam.remove_role_from_instance_profile(
                            InstanceProfileName=name, RoleName=role["RoleName"])
                    iam.delete_instance_profile(InstanceProfileName=name)
            for page in iam.get_paginator("list_roles").paginate():
                for role in page["Roles"]:
                    name = role["RoleName"]
                    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                        iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
                    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                        iam.delete_role_policy(RoleName=name, PolicyName=policy)
                    if role.get("PermissionsBoundary"):
                        iam.delete_role_permissions_boundary(RoleName=name)
                    iam.delete_role(RoleName=name)
            for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
                for policy in page["Policies"]:
                    arn = policy["Arn"]
                    for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
                        if not version["IsDefaultVersion"]:
                            iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
                    iam.delete_policy(PolicyArn=arn)

    def reset(self) -> None:
        """Wipe all state (AWS managed policies are loaded again)."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
        self._warm_up()

    def stop(self) -> None:
        if self._proc is not None:
            _proc.stop(self._proc)
            self._proc = None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> "MotoServer":
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # clients

    def client(self, service: str, region: str = REGION):
        """One client per service and region, made once: building a boto3 client costs a third of
        a second on a busy machine, and a test reads IAM and S3 many times. Clients are
        thread-safe; the lock only keeps two threads from building the same one."""
        if self.url is None:
            raise RuntimeError("MotoServer is not started")
        key = (service, region, self.url)
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                # Path-style S3 (http://host:port/bucket/key): virtual-host names do not resolve here.
                config = Config(s3={"addressing_style": "path"}) if service == "s3" else None
                client = boto3.session.Session().client(
                    service, region_name=region, endpoint_url=self.url, config=config, **CREDENTIALS)
                self._clients[key] = client
            return client

    def iam_client(self):
        return self.client("iam")

    def s3_client(self):
        return self.client("s3")

    # CloudFormation responses

    def response_url(self, bucket: str, key: str) -> str:
        """A presigned S3 PUT URL for bucket/key (bucket created if missing), like the
        ResponseURL CloudFormation hands out. It is signed without a content type."""
        s3 = self.s3_client()
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as err:
            if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        return s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=7200)

    def read_response_object(self, bucket: str, key: str) -> dict | None:
        """The raw object at bucket/key: {'body': bytes, 'content_type': str | None},
        or None if nothing was PUT there."""
        try:
            obj = self.s3_client().get_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if err.response["Error"]["Code"] in ("NoSuchKey", "NoSuchBucket", "404"):
                return None
            raise
        return {"body": obj["Body"].read(), "content_type": obj.get("ContentType")}

    def read_response(self, bucket: str, key: str) -> dict | None:
        """The JSON response the function PUT to bucket/key, or None if absent."""
        obj = self.read_response_object(bucket, key)
        return None if obj is None else json.loads(obj["body"])

    # IAM state

    def iam_snapshot(self) -> dict:
        """All roles and instance profiles as plain data, for before/after comparisons:

            {"roles": {name: {"path", "tags", "managed_policies", "inline_policies",
                              "description", "max_session_duration",
                              "permissions_boundary", "assume_role_policy"}},
             "instance_profiles": {name: {"path", "tags", "roles"}}}
        """
        iam = self.iam_client()
        roles = {}
        for page in iam.get_paginator("list_roles").paginate():
            for listed in page["Roles"]:
                name = listed["RoleName"]
                # ListRoles leaves out tags and the permissions boundary; GetRole has them.
                role = iam.get_role(RoleName=name)["Role"]
                attached = [p["PolicyArn"]
                            for pg in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
                            for p in pg["AttachedPolicies"]]
                inline_names = [n for pg in iam.get_paginator("list_role_policies").paginate(RoleName=name)
                                for n in pg["PolicyNames"]]
                roles[name] = {
                    "path": role["Path"],
                    "tags": _tags(role.get("Tags")),
                    "managed_policies": sorted(attached),
                    "inline_policies": {
                        n: iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"]
                        for n in sorted(inline_names)},
                    "description": role.get("Description"),
                    "max_session_duration": role.get("MaxSessionDuration"),
                    "permissions_boundary": (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn"),
                    "assume_role_policy": role.get("AssumeRolePolicyDocument"),
                }
        profiles = {}
        for page in iam.get_paginator("list_instance_profiles").paginate():
            for listed in page["InstanceProfiles"]:
                name = listed["InstanceProfileName"]
                # moto does not implement ListInstanceProfileTags (HTTP 500); GetInstanceProfile
                # carries the tags.
                profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
                profiles[name] = {
                    "path": profile["Path"],
                    "tags": _tags(profile.get("Tags")),
                    "roles": sorted(r["RoleName"] for r in profile.get("Roles", [])),
                }
        return {"roles": roles, "instance_profiles": profiles}


def _tags(tags: list[dict] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}
