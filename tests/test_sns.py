"""SNS-backed custom resources: CloudFormation publishes the request to a topic and Lambda delivers
an SNS notification whose Records[].Sns.Message is the request as a JSON string. Each record is
answered on its own ResponseURL."""

from __future__ import annotations

import json
import uuid

from helpers import S3_READ, WEB, WORKER, failed, succeeded
from local.events import EVENTS_DIR, make_event

TOPIC = "arn:aws:sns:us-east-1:123456789012:eb-instance-profile-requests"


def sns_record(message: str) -> dict:
    """One record of the event Lambda sends for an SNS notification."""
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{TOPIC}:{uuid.uuid4()}",
        "Sns": {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Subject": "AWS CloudFormation custom resource request",
            "Message": message,
            "Timestamp": "2026-11-20T10:15:00.412Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
            "UnsubscribeUrl": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC}:x",
            "MessageAttributes": {},
        },
    }


def sns_event(*messages) -> dict:
    """An SNS event with one record per message (a request dict, or a str sent verbatim)."""
    return {"Records": [sns_record(m if isinstance(m, str) else json.dumps(m)) for m in messages]}


def load_sns_event_file(name: str, response_urls: list[str]) -> dict:
    """A sample SNS event from events/ with the ResponseURL inside each record's Message replaced.
    (local.events.load_event_file replaces a top-level ResponseURL, which an SNS event has not.)"""
    event = json.loads((EVENTS_DIR / name).read_text())
    for record, url in zip(event["Records"], response_urls, strict=True):
        request = json.loads(record["Sns"]["Message"])
        request["ResponseURL"] = url
        record["Sns"]["Message"] = json.dumps(request)
    return event


def request(cfn, request_type, props, **kw):
    """A CloudFormation request for `cfn`'s response bucket, and the S3 key of its response."""
    url, key = cfn.response_url()
    return make_event(request_type, props, response_url=url, **kw), key


def test_the_sample_notification_carries_the_sample_create_request():
    """events/sns-create.json is Lambda's SNS envelope around events/create.json's request."""
    event = json.loads((EVENTS_DIR / "sns-create.json").read_text())
    [record] = event["Records"]
    assert record["EventSource"] == "aws:sns"
    assert record["Sns"]["Type"] == "Notification"
    assert record["Sns"]["Subject"] == "AWS CloudFormation custom resource request"
    assert record["EventSubscriptionArn"].startswith(record["Sns"]["TopicArn"] + ":")
    assert json.loads(record["Sns"]["Message"]) == json.loads((EVENTS_DIR / "create.json").read_text())


def test_a_create_delivered_through_sns_is_answered_on_its_response_url(cfn, runtime, moto):
    """The sample SNS notification creates the sample profile and answers SUCCESS on the Message's ResponseURL."""
    cfn.ensure_function()
    url, key = cfn.response_url()
    event = load_sns_event_file("sns-create.json", [url])
    inner = json.loads(event["Records"][0]["Sns"]["Message"])

    result = runtime.invoke(event)

    assert result.kind == "response", (result, result.body)
    assert result.json() == [{"Status": "SUCCESS", "PhysicalResourceId": "demo-eb-ec2-profile"}]
    response = succeeded(cfn.read_response(key), result)
    assert response["RequestId"] == inner["RequestId"]
    assert response["StackId"] == inner["StackId"]
    assert response["LogicalResourceId"] == "Profile"
    assert response["PhysicalResourceId"] == "demo-eb-ec2-profile"
    state = moto.iam_snapshot()
    assert state["instance_profiles"]["demo-eb-ec2-profile"]["roles"] == ["demo-eb-ec2-profile"]
    role = state["roles"]["demo-eb-ec2-profile"]
    assert role["managed_policies"] == sorted([WEB, WORKER, S3_READ])
    assert role["tags"]["team"] == "web"


def test_create_and_delete_through_sns(cfn, runtime, moto):
    """A Delete delivered through SNS removes what the SNS Create made."""
    cfn.ensure_function()
    props = {"InstanceProfileName": "via-sns", "Tiers": ["WebTier"]}
    create, key = request(cfn, "Create", props)
    runtime.invoke(sns_event(create))
    succeeded(cfn.read_response(key))
    assert moto.iam_snapshot()["roles"]["via-sns"]["managed_policies"] == [WEB]

    delete, key = request(cfn, "Delete", props, physical_id="via-sns")
    result = runtime.invoke(sns_event(delete))

    assert result.kind == "response", (result, result.body)
    succeeded(cfn.read_response(key), result)
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_each_record_of_a_notification_is_answered_on_its_own_url(cfn, runtime, moto):
    """Two records for two resources: both handled, each response on its own ResponseURL."""
    cfn.ensure_function()
    first, first_key = request(cfn, "Create", {"InstanceProfileName": "web", "Tiers": ["WebTier"]},
                               logical_id="WebProfile")
    second, second_key = request(cfn, "Create", {"InstanceProfileName": "worker", "Tiers": ["WorkerTier"]},
                                 logical_id="WorkerProfile")

    result = runtime.invoke(sns_event(first, second))

    assert result.kind == "response", (result, result.body)
    assert sorted(result.json(), key=lambda a: a["PhysicalResourceId"]) == [
        {"Status": "SUCCESS", "PhysicalResourceId": "web"},
        {"Status": "SUCCESS", "PhysicalResourceId": "worker"},
    ]
    for event, key, name in ((first, first_key, "web"), (second, second_key, "worker")):
        response = succeeded(cfn.read_response(key), result)
        assert response["RequestId"] == event["RequestId"]
        assert response["LogicalResourceId"] == event["LogicalResourceId"]
        assert response["PhysicalResourceId"] == name
    state = moto.iam_snapshot()
    assert state["roles"]["web"]["managed_policies"] == [WEB]
    assert state["roles"]["worker"]["managed_policies"] == [WORKER]
    assert state["instance_profiles"]["web"]["tags"]["eb-instance-profile:logical-id"] == "WebProfile"
    assert state["instance_profiles"]["worker"]["tags"]["eb-instance-profile:logical-id"] == "WorkerProfile"


def test_a_failing_record_does_not_stop_the_others(cfn, runtime, moto):
    """A record with an invalid property gets FAILED on its URL; its neighbour still succeeds."""
    cfn.ensure_function()
    good, good_key = request(cfn, "Create", {"InstanceProfileName": "good", "Tiers": ["WebTier"]},
                             logical_id="Good")
    bad, bad_key = request(cfn, "Create", {"InstanceProfileName": "bad", "Tiers": ["Frontend"]},
                           logical_id="Bad")

    result = runtime.invoke(sns_event(bad, good))

    assert result.kind == "response", (result, result.body)
    succeeded(cfn.read_response(good_key), result)
    response = failed(cfn.read_response(bad_key), result)
    assert "Tiers" in response["Reason"]
    assert set(moto.iam_snapshot()["roles"]) == {"good"}


def test_a_record_whose_message_is_not_json_is_an_invocation_error(cfn, runtime, moto):
    """A Message that is not JSON fails the invocation (so Lambda retries) with a clear message."""
    cfn.ensure_function()

    result = runtime.invoke(sns_event("RequestType=Create"))

    assert result.kind == "error", (result, result.body)
    error = result.json()
    assert error["errorType"] == "InvalidRequest"
    assert "not JSON" in error["errorMessage"], error
    assert moto.iam_snapshot() == {"roles": {}, "instance_profiles": {}}


def test_a_bad_record_still_lets_the_good_one_be_answered(cfn, runtime, moto):
    """One good and one non-JSON record: the good one is answered, the invocation still fails."""
    cfn.ensure_function()
    good, key = request(cfn, "Create", {"InstanceProfileName": "good", "Tiers": ["WebTier"]})

    result = runtime.invoke(sns_event(good, "{not json"))

    assert result.kind == "error", (result, result.body)
    assert "not JSON" in result.json()["errorMessage"]
    succeeded(cfn.read_response(key), result)
    assert moto.iam_snapshot()["roles"]["good"]["managed_policies"] == [WEB]


def test_a_record_without_a_message_is_an_invocation_error(cfn, runtime):
    """A record lacking Sns.Message is an invocation error naming it."""
    cfn.ensure_function()
    event = sns_event("{}")
    del event["Records"][0]["Sns"]["Message"]

    result = runtime.invoke(event)

    assert result.kind == "error", (result, result.body)
    assert "Sns.Message" in result.json()["errorMessage"]
