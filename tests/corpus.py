"""A corpus of malformed and hostile events for the function.

Small entries are committed as tests/corpus/<name>.json, one file per entry:

    {
      "about": "why the entry exists",
      "answer": "FAILED" | "error",
      "names": "Tiers[0]",          (FAILED: the property or field the Reason must name)
      "reason_has": "...",          (FAILED: text the Reason must contain)
      "error_has": "...",           (error: text the invocation's errorMessage must contain)
      "raw": "1e400",               (optional: JSON text put verbatim where the event says "${Raw}")
      "event": ...                  (the event; any JSON value)
    }

"names" and "reason_has" may also be lists of alternatives, any one of which will do.
"FAILED" means the event says where to answer: the function must PUT a FAILED response there.
"error" means it does not (or the answer cannot be made): the invocation must end as an error and
nothing be PUT. In every string of the event, "${ResponseURL}" stands for a fresh presigned S3 URL
and "${ResponseURLPath}" for that URL without scheme and host.

Entries too large to commit (1 MB values, 10,000 policies, 10,000 nested arrays) and those whose
bytes are no valid UTF-8 are generated below.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"

RESPONSE_URL = "${ResponseURL}"
RESPONSE_URL_PATH = "${ResponseURLPath}"
RAW = "${Raw}"

FAILED = "FAILED"
ERROR = "error"

SERVICE_TOKEN = "arn:aws:lambda:us-east-1:123456789012:function:eb-instance-profile"
STACK_ID = ("arn:aws:cloudformation:us-east-1:123456789012:stack/hostile/"
            "0f1e2d3c-aaaa-bbbb-cccc-123456789abc")
MB = 1_000_000
MANY = 10_000
DEEP = 10_000
DOC = {"Version": "2012-10-17",
       "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}


@dataclass(frozen=True)
class Entry:
    """One corpus event and what the function must do with it."""

    name: str
    about: str
    answer: str
    event: Any
    names: str | list[str] | None = None
    reason_has: str | list[str] | None = None
    error_has: str | None = None
    # Bytes that replace the JSON string "${Raw}" in the serialized event.
    raw: bytes | None = None
    # The CloudFormation request a response answers, when it is not the event itself (SNS).
    request: dict | None = None

    def __post_init__(self):
        if self.answer not in (FAILED, ERROR):
            raise ValueError(f"{self.name}: answer must be {FAILED} or {ERROR}")
        if self.answer == FAILED and not (self.names or self.reason_has):
            raise ValueError(f"{self.name}: a FAILED entry says what its Reason names")
        if self.answer == FAILED and not isinstance(self.answered_request, dict):
            raise ValueError(f"{self.name}: a FAILED entry needs a request to echo")

    @property
    def answered_request(self) -> dict | None:
        """The request whose ids a response echoes."""
        if self.request is not None:
            return self.request
        return self.event if isinstance(self.event, dict) else None

    def payload(self, response_url: str) -> bytes:
        """The event as sent, with its placeholders filled in."""
        parts = urllib.parse.urlsplit(response_url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        text = json.dumps(_fill(self.event, {RESPONSE_URL: response_url,
                                             RESPONSE_URL_PATH: path}))
        body = text.encode()
        if self.raw is not None:
            token = json.dumps(RAW).encode()
            if body.count(token) != 1:
                raise ValueError(f"{self.name}: raw needs exactly one {RAW} in the event")
            body = body.replace(token, self.raw)
        return body


def _fill(value: Any, placeholders: dict[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, text in placeholders.items():
            value = value.replace(placeholder, text)
        return value
    if isinstance(value, list):
        return [_fill(v, placeholders) for v in value]
    if isinstance(value, dict):
        return {_fill(k, placeholders): _fill(v, placeholders) for k, v in value.items()}
    return value


def load_file(path: Path) -> Entry:
    spec = json.loads(path.read_text())
    raw = spec.get("raw")
    return Entry(name=path.stem, about=spec["about"], answer=spec["answer"], event=spec["event"],
                 names=spec.get("names"), reason_has=spec.get("reason_has"),
                 error_has=spec.get("error_has"), raw=None if raw is None else raw.encode())


# --- generated entries ---------------------------------------------------------------------


def create(properties: dict, **fields) -> dict:
    """A Create request as CloudFormation sends it, answering to "${ResponseURL}"."""
    return {"RequestType": "Create", "ServiceToken": SERVICE_TOKEN, "ResponseURL": RESPONSE_URL,
            "StackId": STACK_ID, "RequestId": "9c0e8d7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f",
            "ResourceType": "Custom::EbInstanceProfile", "LogicalResourceId": "Profile",
            "ResourceProperties": {"ServiceToken": SERVICE_TOKEN, **properties}, **fields}


NAMED = {"InstanceProfileName": "hostile"}


def nested_arrays(depth: int, inner: bytes = b'"WebTier"') -> bytes:
    return b"[" * depth + inner + b"]" * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def sns_record(message: Any) -> dict:
    """One record of an SNS notification; Message is sent as the JSON text of `message` unless it
    is a string already."""
    text = message if isinstance(message, str) else json.dumps(message)
    return {"EventSource": "aws:sns", "EventVersion": "1.0",
            "Sns": {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:123456789012:cfn",
                    "Subject": "AWS CloudFormation custom resource request", "Message": text}}


def generated() -> list[Entry]:
    bad_property = create({**NAMED, "Tiers": 5})
    return [
        # Huge values: the Reason quotes at most a little of them, and the body stays small.
        Entry("description-1mb", "A 1 MB Description.",
              FAILED, create({**NAMED, "Description": "d" * MB}), names="Description"),
        Entry("profile-name-1mb", "A 1 MB InstanceProfileName.",
              FAILED, create({"InstanceProfileName": "p" * MB}), names="InstanceProfileName"),
        Entry("unknown-property-name-1mb", "A property whose name is 1 MB long.",
              FAILED, create({**NAMED, "x" * MB: "1"}), reason_has="unknown property"),
        Entry("tag-value-1mb", "A tag whose Value is 1 MB long.",
              FAILED, create({**NAMED, "Tags": [{"Key": "team", "Value": "v" * MB}]}),
              names="Tags[0]"),
        Entry("inline-policy-1mb", "An inline policy document of 1 MB.",
              FAILED, create({**NAMED, "InlinePolicies": {"p": {
                  **DOC, "Statement": [{**DOC["Statement"][0], "Resource": "r" * MB}]}}}),
              names="InlinePolicies"),
        # 10,000 of something IAM allows a handful of.
        Entry("tags-10000", "10,000 tags; IAM allows 50 per role.",
              FAILED, create({**NAMED, "Tags": [{"Key": f"k{i}", "Value": "v"}
                                                for i in range(MANY)]}), names="Tags"),
        Entry("managed-policy-arns-10000-not-allowed",
              "10,000 managed policies, none allowed by ALLOWED_POLICY_ARNS.",
              FAILED, create({**NAMED, "ManagedPolicyArns": [
                  f"arn:aws:iam::aws:policy/Custom{i:05d}" for i in range(MANY)]}),
              names="ManagedPolicyArns"),
        Entry("managed-policy-arns-10000-allowed",
              "10,000 distinct managed policies that ALLOWED_POLICY_ARNS admits "
              "(AWSElasticBeanstalk*); IAM attaches at most 20 to a role.",
              FAILED, create({**NAMED, "ManagedPolicyArns": [
                  f"arn:aws:iam::aws:policy/AWSElasticBeanstalkCustom{i:05d}"
                  for i in range(MANY)]}),
              names="ManagedPolicyArns"),
        Entry("inline-policies-10000", "10,000 inline policies.",
              FAILED, create({**NAMED, "InlinePolicies": {f"p{i}": DOC for i in range(MANY)}}),
              names="InlinePolicies"),
        # Deep nesting, in the event and in the text of an inline policy.
        Entry("tiers-nested-10000-deep", "Tiers is 10,000 nested lists around a tier name.",
              FAILED, create({**NAMED, "Tiers": RAW}), names="Tiers", raw=nested_arrays(DEEP)),
        Entry("inline-policy-nested-10000-deep",
              "An inline policy document is 10,000 nested objects.",
              FAILED, create({**NAMED, "InlinePolicies": {"p": RAW}}), names="InlinePolicies.p",
              raw=nested_objects(DEEP)),
        Entry("inline-policy-text-nested-10000-deep",
              "An inline policy given as JSON text holding 10,000 nested lists.",
              FAILED, create({**NAMED, "InlinePolicies": {"p": nested_arrays(DEEP).decode()}}),
              names="InlinePolicies.p"),
        Entry("event-nested-10000-deep", "The event is 10,000 nested lists.",
              ERROR, RAW, raw=nested_arrays(DEEP, json.dumps(RESPONSE_URL).encode())),
        # Ids too long to echo in 4096 bytes: no response can be made, so none may be sent.
        Entry("request-id-1mb", "A 1 MB RequestId: no response that echoes it fits in 4096 bytes.",
              ERROR, create({**NAMED, "Tiers": 5}, RequestId="r" * MB), error_has="4096"),
        Entry("logical-resource-id-1mb", "A 1 MB LogicalResourceId, too long to echo.",
              ERROR, create({**NAMED, "Tiers": 5}, LogicalResourceId="L" * MB), error_has="4096"),
        Entry("stack-id-1mb", "A 1 MB StackId, too long to echo.",
              ERROR, create(NAMED, StackId=STACK_ID + "x" * MB), error_has="4096"),
        # Bytes that are no UTF-8, in an event that says where to answer.
        # Bytes that are not UTF-8 make the payload something other than JSON text: Lambda's Invoke
        # refuses such a payload before any function runs, and the runtime client here refuses it
        # too. The invocation ends in an error; nothing can be PUT.
        Entry("invalid-utf8-in-description", "Description holds the bytes FF FE, no UTF-8.",
              ERROR, create({**NAMED, "Description": RAW}), raw=b'"made by \xff\xfe"'),
        Entry("overlong-utf8-in-path", "Path holds C0 AF, an overlong (invalid) encoding of /.",
              ERROR, create({**NAMED, "Path": RAW}), raw=b'"/\xc0\xaf/"'),
        Entry("utf8-encoded-surrogate-in-description",
              "Description holds ED A0 80, the UTF-8 form of a surrogate, which UTF-8 forbids.",
              ERROR, create({**NAMED, "Description": RAW}), raw=b'"\xed\xa0\x80"'),
        Entry("invalid-utf8-in-property-name", "A property name holds the byte FF.",
              ERROR, create({**NAMED, RAW: "x"}), raw=b'"\xff"'),
        # Bodies that are no JSON at all.
        Entry("body-empty", "An empty body.", ERROR, RAW, raw=b""),
        Entry("body-truncated", "A request cut off in the middle.",
              ERROR, RAW, raw=json.dumps(bad_property).encode()[:200]),
        Entry("body-form-encoded", "A form-encoded body instead of JSON.",
              ERROR, RAW, raw=b"RequestType=Create&ResponseURL=" + RESPONSE_URL.encode()),
        # SNS notifications and direct requests that are not what they claim.
        Entry("sns-records-empty", "An SNS notification without records: nothing to answer.",
              ERROR, {"Records": []}),
        Entry("sns-records-not-a-list", "Records is a string.", ERROR, {"Records": "x"}),
        Entry("sns-record-without-message", "A record without Sns.Message.",
              ERROR, {"Records": [{"EventSource": "aws:sns", "Sns": {"Type": "Notification"}}]}),
        Entry("sns-record-message-not-json", "A record whose Message is no JSON.",
              ERROR, {"Records": [sns_record("RequestType=Create")]}),
        Entry("sns-record-message-a-number", "A record whose Message is the JSON text 5.",
              ERROR, {"Records": [sns_record("5")]}),
        Entry("sns-record-with-invalid-property",
              "An SNS-delivered Create with a property of the wrong type.",
              FAILED, {"Records": [sns_record(bad_property)]}, names="Tiers", request=bad_property),
        Entry("request-with-records-field",
              "A Create that also carries Records, the field of SNS notifications.",
              FAILED, {**bad_property, "Records": []}, names="Tiers"),
        Entry("request-with-action-field",
              "A Create that also carries Action, the field of direct requests.",
              FAILED, {**bad_property, "Action": "Verify"}, names="Tiers"),
        Entry("direct-action-unknown", "A direct request for an action that does not exist.",
              ERROR, {"Action": "Explode", "InstanceProfileName": "hostile"}),
        Entry("direct-action-not-a-string", "A direct request whose Action is a number.",
              ERROR, {"Action": 5, "InstanceProfileName": ["hostile"]}),
        Entry("direct-profile-name-1mb", "A direct Verify of a 1 MB instance profile name.",
              ERROR, {"Action": "Verify", "InstanceProfileName": "p" * MB}),
    ]


def entries() -> list[Entry]:
    """Every corpus entry: the committed files, then the generated ones."""
    found = [load_file(p) for p in sorted(CORPUS_DIR.glob("*.json"))] + generated()
    names = [e.name for e in found]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"corpus entries named twice: {sorted(duplicates)}")
    return found
