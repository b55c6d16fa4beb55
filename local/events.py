"""CloudFormation custom-resource requests, in the shape CloudFormation sends them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from .runtime_api import FUNCTION_ARN, REPO_ROOT

EVENTS_DIR = REPO_ROOT / "events"
DEFAULT_STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo-stack/0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
RESOURCE_TYPE = "Custom::EbInstanceProfile"
SERVICE_TOKEN = FUNCTION_ARN


def cfn_strings(value):
    """Convert scalars the way CloudFormation does before it sends properties:
    3600 -> "3600", True -> "true". Lists and maps keep their shape."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return [cfn_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: cfn_strings(v) for k, v in value.items()}
    return value


def make_event(request_type: str, properties: dict, *, response_url: str,
               stack_id: str = DEFAULT_STACK_ID, logical_id: str = "Profile",
               request_id: str | None = None, physical_id: str | None = None,
               old_properties: dict | None = None, service_token: str = SERVICE_TOKEN,
               stringify: bool = True) -> dict:
    """A Create, Update or Delete request.

    ServiceToken is added to ResourceProperties (and OldResourceProperties), where
    CloudFormation always puts it. With stringify (the default) scalar properties are
    turned into strings as CloudFormation does; pass stringify=False to send other
    JSON types on purpose."""
    if request_type not in ("Create", "Update", "Delete"):
        raise ValueError(f"unknown RequestType {request_type!r}")
    if request_type in ("Update", "Delete") and physical_id is None:
        raise ValueError(f"{request_type} needs physical_id")
    if request_type == "Update" and old_properties is None:
        raise ValueError("Update needs old_properties")
    convert = cfn_strings if stringify else (lambda v: v)
    event = {
        "RequestType": request_type,
        "ServiceToken": service_token,
        "ResponseURL": response_url,
        "StackId": stack_id,
        "RequestId": request_id or str(uuid.uuid4()),
        "LogicalResourceId": logical_id,
        "ResourceType": RESOURCE_TYPE,
        "ResourceProperties": {"ServiceToken": service_token, **convert(properties)},
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = physical_id
    if request_type == "Update":
        event["OldResourceProperties"] = {"ServiceToken": service_token, **convert(old_properties)}
    return event


def load_event_file(path: str | Path, response_url: str) -> dict:
    """A request from events/ (a bare name like "create" or "create.json" is looked up
    there) with its ResponseURL replaced."""
    path = Path(path)
    if not path.exists() and not path.is_absolute():
        path = EVENTS_DIR / (path.name if path.suffix == ".json" else f"{path.name}.json")
    event = json.loads(path.read_text())
    event["ResponseURL"] = response_url
    return event
