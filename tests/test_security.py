"""Attacks on a function that can create IAM roles: privilege escalation through the roles it makes,
SSRF through the ResponseURL, and leaks through its logs. Each is refused with a clear Reason and
changes nothing."""

from __future__ import annotations

import http.server
import json
import threading
from urllib.parse import urlparse

import pytest

from local.events import make_event

EMPTY = {"roles": {}, "instance_profiles": {}}
ADMIN_DOC = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]}
READ_DOC = {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "iam:GetRole"], "Resource": "*"}]}


def test_an_inline_policy_granting_iam_is_refused_by_default(cfn, moto):
    result, response = cfn.send("Create", {"InstanceProfileName": "esc", "InlinePolicies": {"admin": ADMIN_DOC}})
    assert response["Status"] == "FAILED", result
    assert "InlinePolicies.admin" in response["Reason"]
    assert '"iam:*"' in response["Reason"] and "INLINE_POLICIES=restricted" in response["Reason"]
    assert moto.iam_snapshot() == EMPTY


def test_a_harmless_inline_policy_passes_the_default(cfn, moto):
    _, response = cfn.send("Create", {"InstanceProfileName": "ok", "InlinePolicies": {"read": READ_DOC}})
    assert response["Status"] == "SUCCESS", response
    assert list(moto.iam_snapshot()["roles"]["ok"]["inline_policies"]) == ["read"]


def test_inline_policies_deny_refuses_every_inline_policy(start_function, cfn, moto):
    start_function({"INLINE_POLICIES": "deny"})
    _, response = cfn.send("Create", {"InstanceProfileName": "x", "InlinePolicies": {"read": READ_DOC}})
    assert response["Status"] == "FAILED"
    assert "INLINE_POLICIES is deny" in response["Reason"]
    assert moto.iam_snapshot() == EMPTY


def test_inline_policies_any_trusts_the_template(start_function, cfn, moto):
    start_function({"INLINE_POLICIES": "any"})
    _, response = cfn.send("Create", {"InstanceProfileName": "x", "InlinePolicies": {"admin": ADMIN_DOC}})
    assert response["Status"] == "SUCCESS", response
    assert "admin" in moto.iam_snapshot()["roles"]["x"]["inline_policies"]


def test_a_misconfigured_inline_policy_setting_refuses_with_the_reason(start_function, cfn, moto):
    start_function({"INLINE_POLICIES": "sometimes"})
    _, response = cfn.send("Create", {"InstanceProfileName": "x", "InlinePolicies": {"read": READ_DOC}})
    assert response["Status"] == "FAILED"
    assert '"sometimes"' in response["Reason"]


@pytest.fixture
def boundary(iam):
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    return iam.create_policy(PolicyName="Boundary", PolicyDocument=json.dumps(doc))["Policy"]["Arn"]


def test_a_required_permissions_boundary_goes_on_every_role(start_function, cfn, moto, boundary):
    start_function({"PERMISSIONS_BOUNDARY_ARN": boundary})
    _, response = cfn.send("Create", {"InstanceProfileName": "bounded"})
    assert response["Status"] == "SUCCESS", response
    assert moto.iam_snapshot()["roles"]["bounded"]["permissions_boundary"] == boundary

    other = boundary.replace("Boundary", "Other")
    _, response = cfn.send("Create", {"InstanceProfileName": "escape", "PermissionsBoundary": other})
    assert response["Status"] == "FAILED"
    assert "PermissionsBoundary" in response["Reason"] and "PERMISSIONS_BOUNDARY_ARN" in response["Reason"]
    assert "escape" not in moto.iam_snapshot()["roles"]


def test_a_required_boundary_cannot_be_removed_by_an_update(start_function, cfn, moto, boundary):
    start_function({"PERMISSIONS_BOUNDARY_ARN": boundary})
    props = {"InstanceProfileName": "bounded", "PermissionsBoundary": boundary}
    assert cfn.send("Create", props)[1]["Status"] == "SUCCESS"
    _, response = cfn.send("Update", {"InstanceProfileName": "bounded"}, physical_id="bounded",
                           old_properties=props)
    assert response["Status"] == "SUCCESS", response
    assert moto.iam_snapshot()["roles"]["bounded"]["permissions_boundary"] == boundary


def test_a_one_megabyte_property_is_refused_with_a_short_answer(cfn, moto):
    result, response = cfn.send("Create", {"InstanceProfileName": "big", "Description": "d" * 1_000_000})
    assert response["Status"] == "FAILED", result
    assert "Description" in response["Reason"] and "1000" in response["Reason"]
    assert len(json.dumps(response)) <= 4096
    assert moto.iam_snapshot() == EMPTY


class _Redirect(http.server.BaseHTTPRequestHandler):
    """Answers every PUT with a redirect to the metadata address; counts requests."""
    hits: list[str] = []

    def do_PUT(self):
        type(self).hits.append(self.path)
        self.send_response(307)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_redirecting_response_url_is_not_followed(start_function, cfn, moto):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    _Redirect.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        start_function({"ALLOWED_RESPONSE_URL_PREFIXES": f"{moto.url}/,{base}"})
        url = base + "bucket/key?Signature=secret"
        result, _ = cfn.send_event(make_event("Delete", {}, response_url=url, physical_id="nothing"))
        assert result.kind == "error", result
        assert "307" in result.body.decode()
        assert _Redirect.hits == ["/bucket/key?Signature=secret"]
    finally:
        server.shutdown()
        server.server_close()


def test_logs_of_a_whole_lifecycle_never_show_the_signature(cfn, moto):
    """The presigned URL's query string is a credential; the logs show the URL without it."""
    secrets = []
    props = {"InstanceProfileName": "logged", "Tags": [{"Key": "t", "Value": "v"}]}
    steps = [
        ("Create", props, {}),
        ("Update", props | {"Tiers": ["WebTier"]}, {"physical_id": "logged", "old_properties": props}),
        ("Delete", props | {"Tiers": ["WebTier"]}, {"physical_id": "logged"}),
    ]
    for request_type, properties, kw in steps:
        _, response = cfn.send(request_type, properties, **kw)
        assert response["Status"] == "SUCCESS", response
        query = urlparse(cfn.last_event["ResponseURL"]).query
        secrets += [part.split("=", 1)[1] for part in query.split("&") if part.startswith("Signature=")]
    logs = cfn.function.logs()
    assert "request received" in logs and urlparse(cfn.last_event["ResponseURL"]).path in logs
    assert secrets and all(secret not in logs for secret in secrets)
    for marker in ("Signature=", "X-Amz-Signature", "AWSAccessKeyId="):
        assert marker not in logs
