"""The CloudFormation custom-resource protocol as the function speaks it.

What CloudFormation needs from every answer (NOTES.md): a JSON body of at most 4096
bytes with a string Reason, the request's ids echoed verbatim, PUT with no
Content-Type and an exact Content-Length to the presigned ResponseURL, delivered
before the deadline, retried on 5xx, given up on 403. Events that cannot be answered
end the invocation as an error (so that Lambda retries), and never hang. The
ResponseURL's signature never reaches the logs.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass

import pytest

from local.events import DEFAULT_STACK_ID, make_event

# A RequestId that JSON has to escape: echoed verbatim means byte for byte after parsing.
ODD_REQUEST_ID = 'req "quoted" \\ ünïcode / 7'


def object_of(moto, event: dict) -> dict | None:
    """The raw object ({'body', 'content_type'}) PUT to the event's moto ResponseURL."""
    path = urllib.parse.urlsplit(event["ResponseURL"]).path
    bucket, key = path.lstrip("/").split("/", 1)
    return moto.read_response_object(bucket, key)


def assert_echoes(response: dict, event: dict) -> None:
    for field in ("StackId", "RequestId", "LogicalResourceId"):
        assert response[field] == event[field], field


def error_of(result) -> dict:
    """The {errorType, errorMessage} of an invocation that ended as an error."""
    assert result.kind == "error", result
    return json.loads(result.body)


# --- local stand-ins for the ResponseURL -----------------------------------------------


class _QuietServer(http.server.ThreadingHTTPServer):
    """A client that gives up (the function at its deadline) resets the connection: expected here,
    so no traceback."""

    def handle_error(self, request, client_address):
        pass


@dataclass(frozen=True)
class RecordedPut:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class ResponseServer:
    """An HTTP server standing in for S3: answers each request with the next status of
    `statuses` (then `then` for ever) and records method, path, headers and body."""

    def __init__(self, statuses: list[int], then: int = 200):
        self._statuses = list(statuses)
        self._then = then
        self._lock = threading.Lock()
        self.requests: list[RecordedPut] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.requests.append(RecordedPut(
                        self.command, self.path, list(self.headers.items()), body))
                    status = server._statuses.pop(0) if server._statuses else server._then
                reply = b"" if status < 300 else f"<Error><Code>{status}</Code></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_PUT = do_POST = do_GET = _answer

            def log_message(self, *args):
                pass

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class TcpListener:
    """A bare TCP listener on 127.0.0.1 that counts the connections made to it."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            conn.close()

    def stop(self):
        self._stopping.set()
        self._thread.join(2)
        self._sock.close()


@pytest.fixture
def response_server():
    """Factory: response_server([500, 500], then=200) -> a started ResponseServer."""
    servers = []

    def start(statuses, then=200):
        servers.append(ResponseServer(statuses, then))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def listener():
    tcp = TcpListener()
    yield tcp
    tcp.stop()


def start_with_response_server(start_function, moto, server):
    return start_function({"ALLOWED_RESPONSE_URL_PREFIXES": f"{moto.url}/,{server.url}/"})


def event_for(server, request_type="Create", properties=None, **kwargs) -> dict:
    url = f"{server.url}/cfn-responses/put-target?X-Amz-Signature=sig0123456789abcdef"
    return make_event(request_type, properties or {"InstanceProfileName": "local-put",
                                                   "Tiers": ["WebTier"]},
                      response_url=url, **kwargs)


# --- the response body -------------------------------------------------------------------


SCENARIOS = [
    pytest.param("Create", {"InstanceProfileName": "echo", "Tiers": ["WebTier"]}, {},
                 "SUCCESS", id="create-success"),
    pytest.param("Create", {"Tier": "WebTier"}, {}, "FAILED", id="create-failed"),
    pytest.param("Update", {"MaxSessionDuration": "1"}, {"physical_id": "echo", "old_properties": {}},
                 "FAILED", id="update-failed"),
    pytest.param("Delete", {}, {"physical_id": "nothing-here"}, "SUCCESS", id="delete-success"),
]


@pytest.mark.parametrize(("request_type", "props", "kwargs", "status"), SCENARIOS)
def test_response_has_string_reason_echoed_ids_and_no_content_type(
        cfn, moto, request_type, props, kwargs, status):
    """SUCCESS and FAILED alike: Reason is a string (never null), StackId, RequestId and
    LogicalResourceId come back verbatim, the body is at most 4096 bytes, Data is a flat
    string map, and the PUT carried no Content-Type (moto then stores its default,
    binary/octet-stream; a PUT with any real type is stored with that type)."""
    result, response = cfn.send(request_type, props, request_id=ODD_REQUEST_ID,
                                logical_id="EbProfile", **kwargs)
    assert result.kind == "response", result

    raw = object_of(moto, cfn.last_event)
    assert raw is not None, "nothing was PUT to the ResponseURL"
    assert raw["content_type"] == "binary/octet-stream", raw["content_type"]
    assert len(raw["body"]) <= 4096
    body = json.loads(raw["body"])
    assert body == response
    assert body["Status"] == status, body
    assert isinstance(body["Reason"], str)
    if status == "FAILED":
        assert body["Reason"]
    assert_echoes(body, cfn.last_event)
    assert body["RequestId"] == ODD_REQUEST_ID
    assert isinstance(body["PhysicalResourceId"], str) and body["PhysicalResourceId"]
    assert 0 < len(body["PhysicalResourceId"].encode()) <= 1024
    assert all(isinstance(v, str) for v in body.get("Data", {}).values()), body["Data"]
    # What the invocation returns agrees with what CloudFormation was told.
    assert result.json()["Status"] == status
    assert result.json()["PhysicalResourceId"] == body["PhysicalResourceId"]


HUGE = 1_000_000


@pytest.mark.parametrize(("make", "echo_shortened"), [
    pytest.param(lambda url: make_event("Create", {"x" * HUGE: "1"}, response_url=url), True,
                 id="huge-unknown-property-name"),
    pytest.param(lambda url: make_event("Create", {"Description": "d" * HUGE}, response_url=url),
                 True, id="huge-description"),
    pytest.param(lambda url: make_event("Create", {"Tiers": ["t" * HUGE]}, response_url=url), True,
                 id="huge-tier-name"),
    pytest.param(lambda url: make_event("Create", {"ManagedPolicyArns": [
        "arn:aws:iam::aws:policy/" + "p" * HUGE]}, response_url=url), True, id="huge-policy-arn"),
    # serde's "unknown variant" message quotes the RequestType in full: only the final cut
    # of the Reason keeps this one within the limit.
    pytest.param(lambda url: {**make_event("Create", {}, response_url=url),
                              "RequestType": "Upsert" + "X" * HUGE}, False, id="huge-request-type"),
])
def test_failed_body_stays_within_4096_bytes(cfn, moto, make, echo_shortened):
    """Huge input never makes a response CloudFormation refuses ("Response object is
    too long"): the body stays at most 4096 bytes, valid JSON, with the ids intact.
    Property values are shortened where the Reason quotes them, so their Reason stays
    short instead of being cut."""
    url, key = cfn.response_url()
    event = make(url)
    result, _ = cfn.send_event(event, key)
    assert result.kind == "response", result

    raw = object_of(moto, event)
    assert raw is not None, "nothing was PUT to the ResponseURL"
    assert len(raw["body"]) <= 4096, len(raw["body"])
    body = json.loads(raw["body"])
    assert body["Status"] == "FAILED"
    assert isinstance(body["Reason"], str) and body["Reason"]
    if echo_shortened:
        assert len(body["Reason"]) < 1000, body["Reason"]
    assert_echoes(body, event)
    assert body["PhysicalResourceId"]


def test_reason_too_long_for_the_body_is_cut_not_dropped(cfn, moto):
    """A Reason that would overflow 4096 bytes (here serde echoes an unknown 20,000
    character RequestType in full) is cut with "..." so the body just fits; the start of
    the Reason, which says what is wrong, survives."""
    url, key = cfn.response_url()
    event = {**make_event("Create", {}, response_url=url), "RequestType": "Upsert" + "X" * 20_000}
    result, _ = cfn.send_event(event, key)
    assert result.kind == "response", result

    raw = object_of(moto, event)["body"]
    assert len(raw) <= 4096
    reason = json.loads(raw)["Reason"]
    assert reason.endswith("...")
    assert "Upsert" in reason
    # Cut only as much as needed: the body is close to the limit, not truncated to nothing.
    assert len(raw) > 4000, len(raw)


# --- events the function must still answer ---------------------------------------------


@pytest.mark.parametrize(("mutate", "prop"), [
    pytest.param(lambda e: e["ResourceProperties"].update(Tiers=5), "Tiers", id="tiers-a-number"),
    pytest.param(lambda e: e["ResourceProperties"].update(MaxSessionDuration={"h": 1}),
                 "MaxSessionDuration", id="session-an-object"),
    pytest.param(lambda e: e["ResourceProperties"].update(Tags=[5]), "Tags[0]", id="tag-a-number"),
    pytest.param(lambda e: e["ResourceProperties"].update(InlinePolicies=True), "InlinePolicies",
                 id="inline-a-boolean"),
    pytest.param(lambda e: e.update(ResourceProperties=["x"]), "ResourceProperties",
                 id="properties-a-list"),
])
def test_property_of_the_wrong_json_type_still_gets_failed(cfn, moto, mutate, prop):
    """The event is parsed in two stages: a property of the wrong JSON type does not
    reject the whole event (which would leave CloudFormation waiting an hour); the
    function answers FAILED naming the property."""
    url, key = cfn.response_url()
    event = make_event("Create", {"InstanceProfileName": "typed"}, response_url=url, stringify=False)
    mutate(event)
    before = moto.iam_snapshot()

    result, response = cfn.send_event(event, key)

    assert result.kind == "response", result
    assert response is not None, "nothing was PUT to the ResponseURL"
    assert response["Status"] == "FAILED", response
    reason = response["Reason"]
    # A property is named by stage two; ResourceProperties itself by stage one.
    assert f"invalid property {prop}:" in reason or f"{prop} must be an object" in reason, reason
    assert response["PhysicalResourceId"]
    assert_echoes(response, event)
    assert moto.iam_snapshot() == before


def test_unknown_request_type_is_answered_failed(cfn, moto):
    """RequestType "Upsert" is no request the function knows, but the event says where
    to answer: CloudFormation gets FAILED with a Reason naming the problem, and IAM is
    left alone."""
    url, key = cfn.response_url()
    event = {**make_event("Create", {"InstanceProfileName": "upsert"}, response_url=url),
             "RequestType": "Upsert"}
    result, response = cfn.send_event(event, key)

    assert result.kind == "response", result
    assert response is not None, "nothing was PUT to the ResponseURL"
    assert response["Status"] == "FAILED", response
    assert "Upsert" in response["Reason"], response["Reason"]
    assert response["PhysicalResourceId"]
    assert_echoes(response, event)
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_update_without_old_properties_is_answered_failed_with_its_physical_id(cfn, moto):
    """An Update missing a protocol field is answered FAILED, and with the event's own
    PhysicalResourceId: a new id would tell CloudFormation the resource was replaced."""
    url, key = cfn.response_url()
    event = make_event("Update", {}, response_url=url, physical_id="kept-id", old_properties={})
    del event["OldResourceProperties"]
    result, response = cfn.send_event(event, key)

    assert result.kind == "response", result
    assert response is not None, "nothing was PUT to the ResponseURL"
    assert response["Status"] == "FAILED", response
    assert "OldResourceProperties" in response["Reason"], response["Reason"]
    assert response["PhysicalResourceId"] == "kept-id"


def _without(event, field):
    event = dict(event)
    del event[field]
    return event


@pytest.mark.parametrize("make", [
    pytest.param(lambda url: _without(make_event("Create", {"InstanceProfileName": "never"},
                                                 response_url=url), "ResponseURL"),
                 id="missing-response-url"),
    pytest.param(lambda url: {**make_event("Create", {"InstanceProfileName": "never"},
                                           response_url=url), "StackId": 7},
                 id="stack-id-not-a-string"),
    pytest.param(lambda url: b'{"RequestType": "Create", "ResponseURL": "' + url.encode() + b'",',
                 id="malformed-json"),
    pytest.param(lambda url: json.dumps([make_event("Create", {"InstanceProfileName": "never"},
                                                    response_url=url)]).encode(),
                 id="json-array"),
    pytest.param(lambda url: b'"Create"', id="json-string"),
])
def test_unanswerable_event_ends_the_invocation_as_an_error(cfn, moto, make):
    """An event without a usable ResponseURL, StackId, RequestId and LogicalResourceId
    cannot be answered: the invocation ends promptly as an error (Lambda's retry is the
    only signal left), nothing is PUT or created, and the function serves the next
    request normally."""
    url, key = cfn.response_url()
    result, _ = cfn.send_event(make(url), key, timeout_s=20)

    assert result.kind == "error", result
    assert result.elapsed_s < 5, result.elapsed_s
    assert cfn.read_response(key) is None
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}

    _, after = cfn.send("Delete", {}, physical_id="still-serving")
    assert after is not None and after["Status"] == "SUCCESS", after


# --- where responses may go ----------------------------------------------------------------


@pytest.mark.parametrize("target", [
    pytest.param("https://169.254.169.254/latest/meta-data?X-Amz-Signature=topsecret",
                 id="metadata-address"),
    pytest.param("http://example.com/x?X-Amz-Signature=topsecret", id="plain-http-elsewhere"),
    pytest.param("http://127.0.0.1:{listener}/cfn-responses/k?X-Amz-Signature=topsecret",
                 id="moto-host-other-port"),
    pytest.param("http://127.0.0.1:{moto_port}@127.0.0.1:{listener}/cfn-responses/k"
                 "?X-Amz-Signature=topsecret", id="userinfo-spoofing-the-moto-prefix"),
])
def test_response_url_outside_the_allowed_set_is_not_contacted(cfn, moto, listener, target):
    """A ResponseURL that is neither https on *.amazonaws.com nor under
    ALLOWED_RESPONSE_URL_PREFIXES is refused before any work: the invocation ends as an
    error saying it was not contacted, no connection is made, nothing is created, and
    the URL's query string appears neither in the error nor in the logs."""
    moto_port = urllib.parse.urlsplit(moto.url).port
    url = target.format(listener=listener.port, moto_port=moto_port)
    event = make_event("Create", {"InstanceProfileName": "never-made"}, response_url=url)

    result, _ = cfn.send_event(event)

    error = error_of(result)
    assert "not contacted" in error["errorMessage"], error
    assert "topsecret" not in result.body.decode()
    time.sleep(0.2)  # a connection attempt, had there been one, has arrived by now
    assert listener.connections == 0
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}
    assert "topsecret" not in cfn.function.logs()


def test_allowed_prefix_without_trailing_slash_does_not_admit_other_hosts(
        start_function, cfn, moto, listener):
    """An operator may list a prefix without the trailing slash ("http://127.0.0.1:PORT",
    like "http://localhost:4566"). It allows that origin only: a ResponseURL that merely
    starts with the same characters but names another host through userinfo
    ("http://127.0.0.1:PORT@other-host/") is refused and never contacted."""
    start_function({"ALLOWED_RESPONSE_URL_PREFIXES": moto.url})
    url = f"{moto.url}@127.0.0.1:{listener.port}/cfn-responses/k"
    event = make_event("Delete", {}, response_url=url, physical_id="not/a/name")

    result, _ = cfn.send_event(event, timeout_s=5)

    time.sleep(0.2)
    assert listener.connections == 0, "the response went to a host outside the allowed prefix"
    error = error_of(result)
    assert "not contacted" in error["errorMessage"], error


def test_listener_counts_connections(listener):
    """The listener used above does see a connection when one is made."""
    socket.create_connection(("127.0.0.1", listener.port), timeout=2).close()
    deadline = time.monotonic() + 2
    while listener.connections == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listener.connections == 1


# --- delivery ----------------------------------------------------------------------------------


def test_put_is_retried_after_5xx_with_the_same_body(start_function, cfn, moto, response_server):
    """S3 answering 500 twice is retried: three PUTs to exactly the given URL, each with
    the same body, an exact Content-Length and no Content-Type; the third succeeds and
    the invocation ends normally."""
    server = response_server([500, 500], then=200)
    start_with_response_server(start_function, moto, server)
    event = event_for(server)

    result, _ = cfn.send_event(event, timeout_s=30)

    assert result.kind == "response", result
    assert len(server.requests) == 3, server.requests
    expected_path = urllib.parse.urlsplit(event["ResponseURL"])
    for put in server.requests:
        assert put.method == "PUT"
        assert put.path == f"{expected_path.path}?{expected_path.query}"
        assert put.body == server.requests[0].body
        assert put.header_values("Content-Length") == [str(len(put.body))]
        assert put.header_values("Content-Type") in ([], [""]), put.headers
        assert not put.header_values("Transfer-Encoding")
    body = json.loads(server.requests[0].body)
    assert body["Status"] == "SUCCESS", body
    assert_echoes(body, event)
    assert "sig0123456789abcdef" not in cfn.function.logs()


def test_put_answered_403_is_not_retried(start_function, cfn, moto, response_server):
    """A 403 from the presigned URL is final: one PUT, then the invocation ends as an
    error (so Lambda retries the whole request), without the signature in the error."""
    server = response_server([], then=403)
    start_with_response_server(start_function, moto, server)

    result, _ = cfn.send_event(event_for(server), timeout_s=30)

    error = error_of(result)
    assert "403" in error["errorMessage"], error
    assert "sig0123456789abcdef" not in result.body.decode()
    time.sleep(0.3)  # no late retry either
    assert len(server.requests) == 1, server.requests


def test_put_failing_until_the_deadline_gives_up_before_it(start_function, cfn, moto,
                                                            response_server):
    """When S3 keeps answering 500, the function retries several times and then ends
    the invocation as an error before the Lambda deadline (4 s here), rather than
    being killed by the timeout."""
    server = response_server([], then=500)
    start_with_response_server(start_function, moto, server)

    result, _ = cfn.send_event(event_for(server), timeout_s=4)

    error = error_of(result)
    assert "deadline" in error["errorMessage"], error
    assert result.elapsed_s < 4 + 0.5, result.elapsed_s
    assert len(server.requests) >= 3, server.requests
    assert len({put.body for put in server.requests}) == 1
    assert "sig0123456789abcdef" not in cfn.function.logs()


# --- logs --------------------------------------------------------------------------------------


def test_logs_never_contain_the_response_url_signature(cfn):
    """After a Create and a Delete the function log mentions where it answered (the
    URL without its query string) but never the presigned signature."""
    _, created = cfn.send("Create", {"InstanceProfileName": "logged", "Tiers": ["WebTier"]})
    assert created is not None and created["Status"] == "SUCCESS", created
    create_url = urllib.parse.urlsplit(cfn.last_event["ResponseURL"])
    _, deleted = cfn.send("Delete", {"InstanceProfileName": "logged", "Tiers": ["WebTier"]},
                          physical_id=created["PhysicalResourceId"])
    assert deleted is not None and deleted["Status"] == "SUCCESS", deleted
    delete_url = urllib.parse.urlsplit(cfn.last_event["ResponseURL"])

    logs = cfn.function.logs()
    for url in (create_url, delete_url):
        # moto's boto3 presigns with SigV2 (Signature=...), AWS today with SigV4
        # (X-Amz-Signature=...); look for whichever the URL carries, raw and decoded.
        raw = dict(p.split("=", 1) for p in url.query.split("&"))
        raw_signature = raw.get("Signature") or raw["X-Amz-Signature"]
        assert len(raw_signature) >= 16, url.query
        assert raw_signature not in logs
        assert urllib.parse.unquote(raw_signature) not in logs
        assert url.query not in logs
        assert url.path in logs  # the URL is logged, redacted
    assert "Signature=" not in logs
    assert "X-Amz-Signature" not in logs


# --- Delete of ids the function never made ------------------------------------------------


@pytest.mark.parametrize("physical_id", [
    "demo-stack-Profile-1ABCDEFGHIJ",
    "not/a/name",
])
def test_delete_of_a_made_up_physical_id_succeeds_and_touches_nothing(cfn, moto, physical_id):
    """CloudFormation sends Delete with an id it invented for a Create it cancelled: the
    function answers SUCCESS with that same id, and leaves every entity alone."""
    _, created = cfn.send("Create", {"InstanceProfileName": "bystander", "Tiers": ["WebTier"]})
    assert created is not None and created["Status"] == "SUCCESS", created
    before = moto.iam_snapshot()
    assert "bystander" in before["instance_profiles"]

    result, response = cfn.send("Delete", {"Tiers": ["WebTier"]}, physical_id=physical_id)

    assert result.kind == "response", result
    assert response is not None, "nothing was PUT to the ResponseURL"
    assert response["Status"] == "SUCCESS", response
    assert response["PhysicalResourceId"] == physical_id
    assert moto.iam_snapshot() == before


def test_delete_of_a_made_up_id_naming_a_foreign_profile_leaves_it(cfn, moto, iam):
    """The invented id may happen to name a profile and role someone else made (not
    tagged as this resource's): the Delete succeeds without removing them."""
    name = "demo-stack-Profile-1ABCDEFGHIJ"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    iam.attach_role_policy(RoleName=name,
                           PolicyArn="arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier")
    iam.create_instance_profile(InstanceProfileName=name)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    before = moto.iam_snapshot()

    result, response = cfn.send("Delete", {}, physical_id=name)

    assert response is not None, f"nothing was PUT to the ResponseURL; {result}"
    assert response["Status"] == "SUCCESS", response
    assert response["PhysicalResourceId"] == name
    assert response["StackId"] == DEFAULT_STACK_ID
    assert moto.iam_snapshot() == before


# --- Unreadable properties ------------------------------------------------------------------


def test_a_delete_whose_properties_cannot_be_read_still_deletes(cfn, moto):
    """The rollback Delete of a Create refused for a property nested too deep carries the same
    property: the Delete is still answered and done (its properties only hint at the role's name),
    so the stack's rollback can finish."""
    _, created = cfn.send("Create", {"InstanceProfileName": "deep"})
    assert created is not None and created["Status"] == "SUCCESS", created
    url, key = cfn.response_url()
    event = make_event("Delete", {"InstanceProfileName": "deep", "Tiers": "PLACEHOLDER"},
                       response_url=url, physical_id="deep")
    raw = json.dumps(event).replace('"PLACEHOLDER"', "[" * 10_000 + '"WebTier"' + "]" * 10_000)

    result, response = cfn.send_event(raw.encode(), key)

    assert result.kind == "response", result
    assert response is not None and response["Status"] == "SUCCESS", response
    assert response["PhysicalResourceId"] == "deep"
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_a_create_whose_property_cannot_be_read_is_refused_naming_it(cfn, moto):
    url, key = cfn.response_url()
    event = make_event("Create", {"InstanceProfileName": "deep", "Tiers": "PLACEHOLDER"},
                       response_url=url)
    raw = json.dumps(event).replace('"PLACEHOLDER"', "[" * 10_000 + '"WebTier"' + "]" * 10_000)

    result, response = cfn.send_event(raw.encode(), key)

    assert result.kind == "response", result
    assert response is not None and response["Status"] == "FAILED", response
    assert "property Tiers in ResourceProperties cannot be read" in response["Reason"]
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}
