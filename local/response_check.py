"""The checks CloudFormation makes on a custom resource's response body, as a pure function.

The local engine (ministack) accepts any body PUT to its ResponseURL; CloudFormation does not.
`local/cfn_engine.py` runs every response through `problems()` and turns a body CloudFormation would
reject into the failure CloudFormation shows, so that a wrong answer fails the stack here too.
"""

from __future__ import annotations

import json

# CloudFormation's cap on the whole response object; over it the stack fails with this message.
MAX_BODY_BYTES = 4096
TOO_LONG = "Response object is too long."
# The physical id CloudFormation keeps: non-empty, at most 1 KB.
MAX_PHYSICAL_ID_BYTES = 1024
INVALID_PHYSICAL_ID = "Invalid PhysicalResourceId"
ECHOED = ("StackId", "RequestId", "LogicalResourceId")
STATUSES = ("SUCCESS", "FAILED")


def problems(body: bytes, request: dict) -> list[str]:
    """Why CloudFormation would refuse `body` as the answer to `request` (empty when it accepts it).

    The first entry is the message the stack shows; the rest say what else is wrong."""
    found: list[str] = []
    if len(body) > MAX_BODY_BYTES:
        found.append(f"{TOO_LONG} ({len(body)} bytes, at most {MAX_BODY_BYTES})")
    try:
        response = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return found + [f"Response is not valid JSON: {err}"]
    if not isinstance(response, dict):
        return found + [f"Response is not a JSON object but {type(response).__name__}"]
    status = response.get("Status")
    if status not in STATUSES:
        found.append(f"Invalid Status {status!r}: must be SUCCESS or FAILED")
    for field in ECHOED:
        if response.get(field) != request.get(field):
            found.append(f"{field} {response.get(field)!r} does not match the request's "
                         f"{request.get(field)!r}")
    physical_id = response.get("PhysicalResourceId")
    if not isinstance(physical_id, str) or not physical_id:
        found.append(f"{INVALID_PHYSICAL_ID}: {physical_id!r}")
    elif len(physical_id.encode()) > MAX_PHYSICAL_ID_BYTES:
        found.append(f"{INVALID_PHYSICAL_ID}: {len(physical_id.encode())} bytes, "
                     f"at most {MAX_PHYSICAL_ID_BYTES}")
    data = response.get("Data")
    if data is not None and not isinstance(data, dict):
        found.append(f"Data must be a JSON object, not {type(data).__name__}")
    return found
