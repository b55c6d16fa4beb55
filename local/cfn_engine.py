"""The local CloudFormation engine: ministack, with what it does differently from CloudFormation made up.

Run as `python -m local.cfn_engine` (local/ministack.py does that); it patches ministack in its own
process and then serves as ministack does. ministack's CloudFormation runs custom resources for
real (its Lambda runs the function's bootstrap natively), but in three ways it is kinder than
CloudFormation and Lambda, and a function that relied on that would pass here and fail in AWS:

- it accepts any body PUT to the ResponseURL. Here every body is checked as CloudFormation checks
  it (local/response_check.py); one CloudFormation would refuse fails the resource with
  CloudFormation's message instead of the function's answer;
- it sends no Delete after a failed Create. CloudFormation does, on rollback, with the
  PhysicalResourceId of the FAILED response: here the rollback sends it too;
- it invokes the function once. Lambda retries a failed asynchronous invocation twice: here a
  function error is followed by up to two more invocations of the same event.

Two more differences stop a template that CloudFormation deploys, and are made up here too: a
condition on a pseudo parameter (`!Equals [!Ref AWS::Region, ...]`) compares the parameter's name,
not its value (here conditions see AWS::Region, AWS::AccountId, AWS::Partition and
AWS::URLSuffix); and the whole value of a list parameter (CommaDelimitedList) is compared with its
AllowedValues, where CloudFormation checks each member (here each member is checked).

Everything the harness sees goes to a journal (JSON lines, `$CFN_HARNESS_DIR/journal.jsonl`) that
the tests read: each invocation with its attempt and outcome, each response with its verdict. A
test can make the ResponseURL answer an HTTP error (`$CFN_HARNESS_DIR/faults.json`, below) to see
the function fail its invocation and Lambda's retry deliver the answer.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from . import response_check

RESPONSE_PATH = "/_ministack/cfn-response/"
# Lambda's default for asynchronous invocations (the template keeps it: MaximumRetryAttempts 2).
ASYNC_RETRIES = 2

_DIR = Path(os.environ.get("CFN_HARNESS_DIR") or ".")
JOURNAL = _DIR / "journal.jsonl"
# A list of {"id", "logical_id", "request_type", "status", "times"}: the first `times` PUTs of
# responses to that resource's requests of that type are answered `status` and not delivered.
FAULTS = _DIR / "faults.json"

_lock = threading.Lock()
# ResponseURL token -> the request event sent with it.
_requests: dict[str, dict] = {}
# (StackId, LogicalResourceId) -> the request and FAILED response of a Create not yet rolled back.
_failed_creates: dict[tuple[str, str], tuple[dict, dict]] = {}
# fault id -> PUTs answered with it so far.
_fault_hits: dict[str, int] = {}


def journal(entry: dict) -> None:
    line = json.dumps({"at": time.time(), **entry}, sort_keys=True)
    with _lock, open(JOURNAL, "a") as out:
        out.write(line + "\n")


def _summary(event: dict) -> dict:
    """The request as the journal keeps it: everything but the ResponseURL's token."""
    return {k: v for k, v in event.items() if k != "ResponseURL"}


def _token(event) -> str | None:
    url = event.get("ResponseURL") if isinstance(event, dict) else None
    if isinstance(url, str) and RESPONSE_PATH in url:
        return url.split(RESPONSE_PATH, 1)[1]
    return None


# Lambda: record each custom-resource invocation and retry failed ones.

def _with_async_retries(execute):
    def execute_with_retries(func, event):
        token = _token(event)
        if token is None:  # not a custom-resource request: ministack's own behaviour
            return execute(func, event)
        with _lock:
            _requests[token] = event
        for attempt in range(1, ASYNC_RETRIES + 2):
            result = execute(func, event)
            error = isinstance(result, dict) and bool(result.get("error"))
            journal({"kind": "invoke", "token": token, "attempt": attempt, "error": error,
                     "result": result.get("body") if isinstance(result, dict) else None,
                     "request": _summary(event)})
            if not error:
                return result
        return result
    return execute_with_retries


# The ResponseURL: faults, CloudFormation's checks, and the failed Creates to roll back.

def _fault_status(request: dict) -> int | None:
    try:
        faults = json.loads(FAULTS.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    for fault in faults:
        if (fault.get("logical_id") == request.get("LogicalResourceId")
                and fault.get("request_type") == request.get("RequestType")):
            with _lock:
                hits = _fault_hits.get(fault["id"], 0)
                if hits < int(fault.get("times", 1)):
                    _fault_hits[fault["id"]] = hits + 1
                    return int(fault["status"])
    return None


def _checked_response(token: str, headers: dict, body: bytes):
    """(status, headers, body) to answer the PUT with instead of delivering it, or (None, body to
    deliver)."""
    with _lock:
        request = _requests.get(token)
    if request is None:
        journal({"kind": "response", "token": token, "verdict": "unknown token"})
        return None, body
    status = _fault_status(request)
    if status is not None:
        journal({"kind": "response", "token": token, "verdict": f"fault {status}",
                 "request": _summary(request)})
        return (status, {"Content-Type": "application/xml"},
                b"<Error><Code>InjectedFault</Code></Error>"), body
    # The ResponseURL is presigned without a content type: S3 refuses a PUT that names one.
    content_type = (headers.get("content-type") or "").strip()
    if content_type:
        journal({"kind": "response", "token": token, "verdict": "rejected",
                 "problems": [f"Content-Type {content_type!r}: S3 answers 403 SignatureDoesNotMatch"],
                 "request": _summary(request)})
        return (403, {"Content-Type": "application/xml"},
                b"<Error><Code>SignatureDoesNotMatch</Code></Error>"), body
    found = response_check.problems(body, request)
    try:
        shown = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        shown = body.decode(errors="replace")
    journal({"kind": "response", "token": token, "verdict": "invalid" if found else "valid",
             "problems": found, "bytes": len(body), "body": shown, "request": _summary(request)})
    if found:
        # CloudFormation fails the resource with its own message, not the function's Reason.
        failed = {"Status": "FAILED", "Reason": found[0], "PhysicalResourceId": "",
                  **{k: request.get(k) for k in response_check.ECHOED}}
        return None, json.dumps(failed).encode()
    if request.get("RequestType") == "Create" and shown.get("Status") == "FAILED":
        with _lock:
            _failed_creates[(request["StackId"], request["LogicalResourceId"])] = (request, shown)
    return None, body


def _with_response_checks(shortcuts):
    async def checked_shortcuts(method, path, headers, body, query_params, request_id):
        if method == "PUT" and path.startswith(RESPONSE_PATH):
            token = path[len(RESPONSE_PATH):]
            answer, body = _checked_response(token, headers, body)
            if answer is not None:
                return answer
        return await shortcuts(method, path, headers, body, query_params, request_id)
    return checked_shortcuts


# Rollback: the Delete CloudFormation sends for a Create that answered FAILED.

def _with_failed_create_delete(roll_back):
    async def roll_back_with_delete(stack_name, stack_id, stack, operation, *args, **kwargs):
        logical_id = operation.get("failed_logical_id")
        with _lock:
            failed = _failed_creates.pop((stack_id, logical_id), None)
        if failed is not None and operation.get("failed_update") is None:
            request, response = failed
            # Recorded as made by this operation, last: the rollback deletes it first, with its
            # DELETE_IN_PROGRESS and DELETE_COMPLETE (or DELETE_FAILED) events, as CloudFormation does.
            stack.setdefault("_resources", {})[logical_id] = {
                "PhysicalResourceId": response["PhysicalResourceId"],
                "ResourceType": request["ResourceType"],
                "LogicalResourceId": logical_id,
                "ResourceStatus": "CREATE_FAILED",
                "Properties": request["ResourceProperties"],
                "Attributes": {},
            }
            operation = {**operation, "created": [*operation.get("created", []), logical_id]}
            journal({"kind": "rollback-delete", "stack_id": stack_id, "logical_id": logical_id,
                     "physical_id": response["PhysicalResourceId"]})
        return await roll_back(stack_name, stack_id, stack, operation, *args, **kwargs)
    return roll_back_with_delete


# Parameters: AllowedValues of a list parameter apply to each of its members.

def _is_list_type(parameter_type: str) -> bool:
    return parameter_type == "CommaDelimitedList" or parameter_type.startswith("List<")


def _with_list_allowed_values(resolve):
    def resolve_parameters(template, provided_params, previous_params=None):
        definitions = template.get("Parameters") or {}
        lists = {name: definition for name, definition in definitions.items()
                 if definition.get("AllowedValues") and _is_list_type(str(definition.get("Type", "")))}
        if not lists:
            return resolve(template, provided_params, previous_params)
        # ministack compares the whole value with AllowedValues: it checks the rest, this the members.
        unchecked = {**template, "Parameters": {**definitions, **{
            name: {k: v for k, v in definition.items() if k != "AllowedValues"}
            for name, definition in lists.items()}}}
        resolved = resolve(unchecked, provided_params, previous_params)
        for name, definition in lists.items():
            value = resolved[name]["Value"]
            allowed = [str(a) for a in definition["AllowedValues"]]
            if any(member not in allowed for member in value.split(",")):
                raise ValueError(f"Parameter '{name}' value '{value}' is not in AllowedValues: "
                                 f"{definition['AllowedValues']}")
        return resolved
    return resolve_parameters


# Conditions: pseudo parameters (AWS::Region, AWS::AccountId, ...) have their values there too.

def _with_pseudo_parameters_in_conditions(evaluate):
    def evaluate_conditions(template, params):
        from ministack.core.responses import get_account_id, get_region
        # As ministack's own Rules section sees them; a template parameter cannot take these names.
        pseudo = {"AWS::Region": get_region(), "AWS::AccountId": get_account_id(),
                  "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
        return evaluate(template, {**{k: {"Value": v} for k, v in pseudo.items()}, **params})
    return evaluate_conditions


def install() -> None:
    """Patch ministack (imported here, so that its settings come from this process's environment)."""
    import ministack.app as app
    import ministack.services.cloudformation.stacks as stacks
    import ministack.services.lambda_svc as lambda_svc

    lambda_svc._execute_function_with_config_scope = _with_async_retries(
        lambda_svc._execute_function_with_config_scope)
    app._handle_post_body_shortcuts = _with_response_checks(app._handle_post_body_shortcuts)
    stacks._roll_back_operation = _with_failed_create_delete(stacks._roll_back_operation)
    import ministack.services.cloudformation.changesets as changesets
    import ministack.services.cloudformation.engine as engine
    import ministack.services.cloudformation.handlers as handlers
    resolve = _with_list_allowed_values(engine._resolve_parameters)
    evaluate = _with_pseudo_parameters_in_conditions(engine._evaluate_conditions)
    # Each module that imported them by name.
    for module in (engine, handlers, changesets, stacks):
        if hasattr(module, "_resolve_parameters"):
            module._resolve_parameters = resolve
        if hasattr(module, "_evaluate_conditions"):
            module._evaluate_conditions = evaluate


def main() -> None:
    install()
    import ministack.app as app
    app.main()


if __name__ == "__main__":
    main()
