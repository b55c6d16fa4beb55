"""Checks of the harness itself, independent of the function binary."""

from __future__ import annotations

import json
import sys
import threading
import urllib.request

import pytest

from local.events import make_event
from local.runtime_api import FunctionProcess, RuntimeApi

NEXT = "/2018-06-01/runtime/invocation/next"


def test_presigned_put_round_trip(clean_moto):
    url = clean_moto.response_url("harness-check", "round-trip")
    assert url.startswith(f"{clean_moto.url}/harness-check/round-trip?")
    assert clean_moto.read_response("harness-check", "round-trip") is None

    body = json.dumps({"Status": "SUCCESS", "PhysicalResourceId": "p"}).encode()
    # No content type, as CloudFormation requires (urllib would add a form type itself).
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200

    assert clean_moto.read_response("harness-check", "round-trip") == {
        "Status": "SUCCESS", "PhysicalResourceId": "p"}
    assert clean_moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def _fake_function(address: str, answers: int) -> None:
    """A minimal custom runtime: poll /next, echo the event back as the response,
    or post an error for events that are not JSON objects."""
    for _ in range(answers):
        with urllib.request.urlopen(f"http://{address}{NEXT}", timeout=30) as resp:
            request_id = resp.headers["Lambda-Runtime-Aws-Request-Id"]
            assert int(resp.headers["Lambda-Runtime-Deadline-Ms"]) > 0
            assert resp.headers["Lambda-Runtime-Invoked-Function-Arn"].startswith("arn:aws:lambda:")
            assert resp.headers["Lambda-Runtime-Trace-Id"].startswith("Root=")
            payload = resp.read()
        try:
            body, kind = json.dumps({"echo": json.loads(payload)}).encode(), "response"
        except ValueError:
            body, kind = b'{"errorType":"Bad","errorMessage":"not JSON"}', "error"
        urllib.request.urlopen(urllib.request.Request(
            f"http://{address}/2018-06-01/runtime/invocation/{request_id}/{kind}",
            data=body, method="POST"), timeout=10).read()


def test_runtime_api_hands_out_events():
    with RuntimeApi(grace_s=0.5) as api:
        client = threading.Thread(target=_fake_function, args=(api.address, 2), daemon=True)
        client.start()

        event = make_event("Create", {"MaxSessionDuration": 3600}, response_url="http://x/")
        result = api.invoke(event, timeout_s=10)
        assert result.kind == "response"
        echoed = result.json()["echo"]
        assert echoed["ResourceProperties"] == {"ServiceToken": event["ServiceToken"],
                                                "MaxSessionDuration": "3600"}

        result = api.invoke(b"{not json", timeout_s=10)
        assert result.kind == "error"
        client.join(10)

        # Nobody polls any more: the invocation times out after the grace period.
        assert api.invoke({"late": True}, timeout_s=0.2).kind == "timeout"
        assert api.queued == 0


FAKE_FUNCTION = '''
import json, os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
print("fake function up", flush=True)
while True:
    with urllib.request.urlopen(api + "next") as resp:
        request_id = resp.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(resp.read())
    time.sleep(event.get("sleep", 0))
    body = json.dumps({"pid": os.getpid(), "env": dict(os.environ)}).encode()
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", data=body)).read()
'''


def _fake_binary(tmp_path):
    path = tmp_path / "fake-function"
    path.write_text(f"#!{sys.executable}\n{FAKE_FUNCTION}")
    path.chmod(0o755)
    return path


def test_function_process_env_logs_and_restart(tmp_path):
    binary = _fake_binary(tmp_path)
    with RuntimeApi(grace_s=1) as api:
        first = FunctionProcess(api, "http://127.0.0.1:9", {"EXTRA": "1", "RUST_LOG": None},
                                binary=binary).start()
        env = api.invoke({}, timeout_s=10).json()["env"]
        assert env["AWS_LAMBDA_RUNTIME_API"] == api.address
        assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
        assert env["ALLOWED_RESPONSE_URL_PREFIXES"] == "http://127.0.0.1:9/"
        assert env["EXTRA"] == "1" and "RUST_LOG" not in env
        first.stop()
        assert "fake function up" in first.logs()

        # The stopped process left a /next poll behind; the next invocation must go to
        # the new process, not into that dead connection.
        with FunctionProcess(api, "http://127.0.0.1:9", binary=binary) as second:
            assert api.invoke({}, timeout_s=10).json()["pid"] == second.pid


def test_concurrent_invocations_spread_over_processes(tmp_path):
    binary = _fake_binary(tmp_path)
    with RuntimeApi() as api, \
            FunctionProcess(api, "http://127.0.0.1:9", binary=binary), \
            FunctionProcess(api, "http://127.0.0.1:9", binary=binary):
        pending = [api.submit({"sleep": 1}, timeout_s=10) for _ in range(2)]
        results = [p.wait() for p in pending]
        assert [r.kind for r in results] == ["response", "response"]
        assert len({r.json()["pid"] for r in results}) == 2


def test_missing_binary_fails_loudly(tmp_path):
    with RuntimeApi() as api:
        with pytest.raises(FileNotFoundError, match="cargo build"):
            FunctionProcess(api, "http://127.0.0.1:9", binary=tmp_path / "nope")
