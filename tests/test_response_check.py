"""The checks local/cfn_engine.py makes on every response body, as CloudFormation makes them: each
rule refuses what CloudFormation refuses, and a correct body passes."""

from __future__ import annotations

import json

import pytest

from local import response_check

REQUEST = {"StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/app/1",
           "RequestId": "r-1", "LogicalResourceId": "Profile", "RequestType": "Create"}


def body(**changes) -> bytes:
    response = {"Status": "SUCCESS", "PhysicalResourceId": "app-Profile-1", "Data": {"Arn": "a"},
                **{k: REQUEST[k] for k in response_check.ECHOED}}
    for key, value in changes.items():
        if value is None:
            response.pop(key, None)
        else:
            response[key] = value
    return json.dumps(response).encode()


def test_a_correct_body_passes():
    assert response_check.problems(body(), REQUEST) == []
    assert response_check.problems(body(Status="FAILED", Reason="no"), REQUEST) == []


@pytest.mark.parametrize("changes, message", [
    ({"PhysicalResourceId": None}, "Invalid PhysicalResourceId"),
    ({"PhysicalResourceId": ""}, "Invalid PhysicalResourceId"),
    ({"PhysicalResourceId": "x" * 1025}, "Invalid PhysicalResourceId"),
    ({"Status": "OK"}, "Invalid Status"),
    ({"Status": None}, "Invalid Status"),
    ({"RequestId": "r-2"}, "RequestId"),
    ({"StackId": None}, "StackId"),
    ({"LogicalResourceId": "Other"}, "LogicalResourceId"),
    ({"Data": ["a"]}, "Data must be a JSON object"),
])
def test_each_rule_refuses(changes, message):
    found = response_check.problems(body(**changes), REQUEST)
    assert len(found) == 1 and found[0].startswith(message), found


def test_over_4096_bytes_is_too_long():
    long = body(Data={"Arn": "a" * 4096})
    assert response_check.problems(long, REQUEST)[0].startswith(response_check.TOO_LONG)
    exact = body(Data={"Arn": ""})
    fits = body(Data={"Arn": "a" * (response_check.MAX_BODY_BYTES - len(exact))})
    assert len(fits) == response_check.MAX_BODY_BYTES
    assert response_check.problems(fits, REQUEST) == []


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1]", b"\xff"])
def test_a_body_that_is_no_json_object_is_refused(raw):
    assert response_check.problems(raw, REQUEST)
