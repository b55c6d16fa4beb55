"""Every event of the hostile corpus (tests/corpus.py, tests/corpus/) through the real binary.

Whatever arrives, the function must end the invocation, stay alive and serve the next event, and
make nothing in IAM. An event that says where to answer gets a FAILED response there: valid JSON
of at most 4096 bytes, with the fields CloudFormation requires and a Reason that names what is
wrong, since a custom resource that stays silent keeps its stack waiting for an hour. An event that
does not ends as an invocation error (Lambda's retry is the only signal left), and nothing is PUT.

One function process serves the whole corpus, as one Lambda execution environment serves many
events. It is replaced only after an entry that did not prove it still serves, so that the entries
after a crash or a hang are still judged on their own.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
import uuid

import pytest

import corpus
from conftest import RESPONSE_BUCKET, FunctionStarter
from local.events import make_event
from local.moto import MotoServer
from local.runtime_api import FunctionProcess, InvocationResult, RuntimeApi

ENTRIES = corpus.entries()
# Ample for any honest answer, 1 MB entries included; a hang shows as a 'timeout' result instead.
INVOCATION_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 10.0
# What CloudFormation requires in every response body.
REQUIRED_FIELDS = ("Status", "Reason", "PhysicalResourceId", "StackId", "RequestId",
                   "LogicalResourceId")
# The signature some corpus ResponseURLs carry: refused or not, it is never echoed.
CORPUS_SECRET = "0123456789abcdef"


def names_property(reason: str, prop: str) -> bool:
    """True when `prop` appears in `reason` as a whole property path: "Tags" does not count as
    naming "Tags[1]", but "ResourceProperties.Tags" and serde's `Tags` do."""
    reason = re.sub(r"(?<![\w.])(Old)?ResourceProperties\.", "", reason)
    return re.search(rf"(?<![\w.\[]){re.escape(prop)}(?![\w.\[])", reason) is not None


def alternatives(expected: str | list[str]) -> list[str]:
    """A corpus expectation as a list of alternatives, any one of which will do."""
    return [expected] if isinstance(expected, str) else expected


def signature_of(url: str) -> str:
    """The signature of a presigned URL (SigV2 Signature= or SigV4 X-Amz-Signature=)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return (query.get("Signature") or query["X-Amz-Signature"])[0]


class Bench:
    """The function process the corpus runs through, and the services around it. The boto3
    clients are made once: making one costs more than most entries."""

    def __init__(self, runtime: RuntimeApi, moto: MotoServer, evaluator):
        self.runtime = runtime
        self.moto = moto
        self._starter = FunctionStarter(runtime, moto, evaluator, {})
        self.process: FunctionProcess | None = None
        # Set once the current entry has shown that the process still serves.
        self.proven = False
        # Set once the current entry has shown that IAM holds no role or instance profile.
        self.iam_empty = False
        self._log_mark = 0
        self._s3 = moto.s3_client()
        moto.response_url(RESPONSE_BUCKET, "hostile-bucket")  # creates the bucket
        # The function signs for AWS_REGION (us-east-1), so the aws partition is all it can write.
        self._iam = moto.iam_client()

    def ready(self) -> FunctionProcess:
        """The shared process; a new one if the last entry did not prove the old one serves."""
        if self.process is None or not self.proven or self.process.returncode is not None:
            self.stop()
            self.process = self._starter()
        self.proven = False
        self.iam_empty = False
        self._log_mark = self.process.log_path.stat().st_size
        return self.process

    def new_logs(self) -> str:
        """What the process logged since the current entry began."""
        if self.process is None:
            return ""
        with open(self.process.log_path, "rb") as log:
            log.seek(self._log_mark)
            return log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def close(self) -> None:
        self.stop()
        self._starter.stop()

    def response_url(self, name: str) -> tuple[str, str]:
        """A fresh presigned ResponseURL and its S3 key (S3 objects outlive moto.clean())."""
        key = f"hostile-{name[:80]}-{uuid.uuid4().hex[:12]}"
        url = self._s3.generate_presigned_url(
            "put_object", Params={"Bucket": RESPONSE_BUCKET, "Key": key}, ExpiresIn=7200)
        return url, key

    def response_object(self, key: str) -> dict | None:
        """The raw object PUT at key, {'body', 'content_type'}, or None."""
        try:
            obj = self._s3.get_object(Bucket=RESPONSE_BUCKET, Key=key)
        except self._s3.exceptions.NoSuchKey:
            return None
        return {"body": obj["Body"].read(), "content_type": obj.get("ContentType")}

    def iam_entities(self) -> list[str]:
        """The roles and instance profiles in IAM."""
        iam = self._iam
        return ([f"role {r['RoleName']}"
                 for page in iam.get_paginator("list_roles").paginate() for r in page["Roles"]]
                + [f"instance profile {p['InstanceProfileName']}"
                   for page in iam.get_paginator("list_instance_profiles").paginate()
                   for p in page["InstanceProfiles"]])


@pytest.fixture(scope="module")
def bench(runtime, moto, evaluator):
    moto.clean()
    shared = Bench(runtime, moto, evaluator)
    yield shared
    shared.close()


@pytest.fixture
def served(bench: Bench):
    """The shared process, ready for one entry. Its log of the entry is shown if the test fails,
    and IAM is cleaned after an entry that left something there."""
    bench.runtime.clear_records()
    process = bench.ready()
    yield process
    # Printed at teardown: pytest shows it only for a failing test. Lines quoting 1 MB values
    # are cut.
    lines = [line if len(line) <= 2000 else f"{line[:2000]}... ({len(line)} characters)"
             for line in bench.new_logs().splitlines()]
    print(f"\n----- function log of this entry (pid {process.pid}, {process.log_path}) -----\n"
          + "\n".join(lines), file=sys.stderr)
    if not bench.iam_empty and bench.iam_entities():
        bench.moto.clean()


def probe(bench: Bench) -> None:
    """Sends a Delete of an id the function never makes, answered SUCCESS without any IAM call:
    the process still serves."""
    url, key = bench.response_url("probe")
    event = make_event("Delete", {}, response_url=url, physical_id="hostile/probe")
    result = bench.runtime.invoke(event, timeout_s=PROBE_TIMEOUT_S)
    assert result.kind == "response", f"the next event was not served: {result}"
    raw = bench.response_object(key)
    assert raw is not None and json.loads(raw["body"])["Status"] == "SUCCESS", raw


def check_answered(entry: corpus.Entry, result: InvocationResult, raw: dict | None) -> None:
    """A FAILED response within CloudFormation's limits, naming what is wrong."""
    assert result.kind == "response", f"the invocation did not end normally: {result}"
    returned = result.json()
    for item in returned if isinstance(returned, list) else [returned]:
        assert item["Status"] == "FAILED", returned
    assert raw is not None, "nothing was PUT to the ResponseURL"
    assert len(raw["body"]) <= 4096, f"a response body of {len(raw['body'])} bytes"
    body = json.loads(raw["body"])
    assert isinstance(body, dict), body
    missing = [f for f in REQUIRED_FIELDS if not isinstance(body.get(f), str)]
    assert not missing, f"missing or not strings: {missing}; {body}"
    assert body["Status"] == "FAILED", body
    reason = body["Reason"]
    assert reason, body
    assert not reason.startswith("internal error"), reason  # a panic, caught
    if entry.names:
        assert any(names_property(reason, p) for p in alternatives(entry.names)), (
            f"Reason does not name {entry.names}: {reason}")
    if entry.reason_has:
        assert any(text in reason for text in alternatives(entry.reason_has)), reason
    assert 0 < len(body["PhysicalResourceId"].encode()) <= 1024, body["PhysicalResourceId"]
    request = entry.answered_request
    for field in ("StackId", "RequestId", "LogicalResourceId"):
        assert body[field] == request[field], field
    kept = request.get("PhysicalResourceId")
    if request.get("RequestType") in ("Update", "Delete") and isinstance(kept, str) and kept:
        # Another id on a failed Update would tell CloudFormation the resource was replaced.
        assert body["PhysicalResourceId"] == kept, body


def check_refused(entry: corpus.Entry, result: InvocationResult, raw: dict | None) -> None:
    """An invocation error, and no response anywhere."""
    assert result.kind == "error", f"expected an invocation error: {result}"
    error = json.loads(result.body)
    assert isinstance(error.get("errorType"), str) and error["errorType"], error
    assert isinstance(error.get("errorMessage"), str) and error["errorMessage"], error
    if entry.error_has:
        assert entry.error_has in error["errorMessage"], error
    assert raw is None, f"a response was PUT: {raw['body'][:500]!r}"


@pytest.mark.parametrize("entry", [pytest.param(e, id=e.name) for e in ENTRIES])
def test_hostile_event(bench: Bench, served: FunctionProcess, entry: corpus.Entry):
    """The entry's invocation ends as the corpus says, the process serves the next event, nothing
    is made in IAM, and no signature leaks into the answer or the log."""
    url, key = bench.response_url(entry.name)
    result = bench.runtime.invoke(entry.payload(url), timeout_s=INVOCATION_TIMEOUT_S)
    raw = bench.response_object(key)

    assert served.returncode is None, f"the function exited ({served.returncode}) on this event"
    probe(bench)
    assert served.returncode is None
    bench.proven = True
    assert bench.runtime.rejected == [], "the function broke the Runtime API protocol"
    assert bench.runtime.init_errors == []
    made = bench.iam_entities()
    assert made == [], (f"the event made something in IAM: {made}; invocation {result}; "
                        f"response {raw and raw['body'][:1000]!r}")
    bench.iam_empty = True

    if entry.answer == corpus.FAILED:
        check_answered(entry, result, raw)
    else:
        check_refused(entry, result, raw)

    logs = bench.new_logs()
    assert "panicked" not in logs
    answer = result.body.decode(errors="replace")
    for secret in (signature_of(url), urllib.parse.unquote(signature_of(url)), CORPUS_SECRET):
        assert secret not in answer, "a signature in the invocation result"
        assert secret not in logs, "a signature in the log"


EXAMPLE_URL = "https://cfn.s3.amazonaws.com/k?X-Amz-Signature=s"


def test_corpus_is_broad():
    """The corpus keeps the kinds of events it exists for: answerable and unanswerable ones,
    events that are no object, broken protocol fields, huge and deeply nested values, and escapes
    and bytes that are no Unicode text."""
    by_name = {e.name: e for e in ENTRIES}
    assert len(ENTRIES) >= 100
    assert {e.answer for e in ENTRIES} == {corpus.FAILED, corpus.ERROR}
    for name in ("event-null", "event-string", "event-empty-object", "request-type-unknown",
                 "resource-properties-string", "old-resource-properties-number",
                 "missing-response-url", "response-url-relative", "response-url-http-on-s3",
                 "description-1mb", "managed-policy-arns-10000-allowed", "tiers-nested-10000-deep",
                 "lone-high-surrogate-in-description", "invalid-utf8-in-description"):
        assert name in by_name, name
    assert len(by_name["description-1mb"].payload(EXAMPLE_URL)) > corpus.MB
    assert b"[" * corpus.DEEP in by_name["tiers-nested-10000-deep"].payload(EXAMPLE_URL)
    assert b"\xff" in by_name["invalid-utf8-in-description"].payload(EXAMPLE_URL)
    assert b"\\ud800" in by_name["lone-high-surrogate-in-description"].payload(EXAMPLE_URL)


def test_placeholders_are_filled():
    """"${ResponseURL}" becomes the URL, "${ResponseURLPath}" its path and query, and "${Raw}" the
    raw bytes, verbatim."""
    entry = corpus.Entry("t", "t", corpus.FAILED,
                         corpus.create({"Description": corpus.RAW},
                                       Other=corpus.RESPONSE_URL_PATH),
                         names="Description", raw=b'"\xff"')
    body = entry.payload("http://127.0.0.1:1/bucket/key?Signature=abc")
    assert b'"ResponseURL": "http://127.0.0.1:1/bucket/key?Signature=abc"' in body
    assert b'"Other": "/bucket/key?Signature=abc"' in body
    assert b'"Description": "\xff"' in body
