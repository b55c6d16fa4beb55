"""Plain-text views of a stack operation (local/stack.py's Step) and of IAM, at most 100 columns,
for people reading `scripts/demo`: keys in a stable order, long values shortened the same way
everywhere, long reasons wrapped.

Shortened: a stack ARN to `stack/<name>/<first 8 of its id>`, an AWS managed policy ARN to
`aws/<name>`, and the three ownership tags of an entity to one `owner <stack>/<logical id>`.
"""

from __future__ import annotations

import re
import textwrap

WIDTH = 100
OWN_PREFIX = "eb-instance-profile:"
_STACK_ARN = re.compile(r"arn:aws[a-z-]*:cloudformation:[^:]*:\d*:stack/(?P<name>[^/\s]+)/(?P<id>[0-9a-f-]+)")
_AWS_POLICY = re.compile(r"arn:aws[a-z-]*:iam::aws:policy/")
_ACCOUNT_ARN = re.compile(r"arn:aws[a-z-]*:(?P<service>iam|lambda)::?(?:[a-z0-9-]*:)?\d{12}:")


def short(text: str) -> str:
    """Stack ARNs, AWS managed policy ARNs and account ARNs, shortened."""
    text = _STACK_ARN.sub(lambda m: f"stack/{m['name']}/{m['id'][:8]}", str(text))
    text = _AWS_POLICY.sub("aws/", text)
    return _ACCOUNT_ARN.sub(lambda m: f"{m['service']}:", text)


def wrapped(text: str, indent: int) -> list[str]:
    """text shortened, in lines of at most WIDTH columns, each indented by `indent` columns. A
    comma-separated list (no space after its commas) may break after a comma."""
    marked = re.sub(r",(?! )", ",\x00 ", short(text))
    lines = textwrap.wrap(marked, WIDTH - indent, break_long_words=True, break_on_hyphens=False)
    return [" " * indent + line.replace("\x00 ", "").replace("\x00", "") for line in lines]


def item(head: str, detail: str = "", indent: int = 2) -> list[str]:
    """`head` on one line, `detail` (if any) below it, indented by two more columns."""
    return [" " * indent + short(head)] + (wrapped(detail, indent + 4) if detail else [])


def step_lines(step) -> list[str]:
    """The stack status, events, custom-resource answers and Outputs of one operation."""
    lines = [f"stack {step.stack_name}: {step.status}"
             + (f" ({short(step.status_reason)})" if step.status_reason else "")]
    lines.append("events:")
    for event in step.events:
        lines += item(f"{event['LogicalResourceId']:<28} {event['ResourceStatus']}",
                      event.get("ResourceStatusReason") or "")
    answers = [r for r in step.journal if r["kind"] == "response" and isinstance(r.get("body"), dict)]
    if answers:
        lines.append("the function's answers (each checked as CloudFormation checks it):")
        for response in answers:
            body, request = response["body"], response["request"]
            lines += item(f"{request['RequestType']} {request['LogicalResourceId']}: "
                          f"{body.get('Status')} {body.get('PhysicalResourceId')}",
                          body.get("Reason") or "")
            if response["verdict"] != "valid":
                lines += item("refused by the check:", "; ".join(response.get("problems") or []), 4)
    if step.status == "DELETE_COMPLETE":
        return lines
    lines.append("outputs:" + ("" if step.outputs else " (none)"))
    for key in sorted(step.outputs):
        lines += _pair(key, step.outputs[key])
    return lines


def _pair(key: str, value: str, indent: int = 2, width: int = 20) -> list[str]:
    """`key  value` with the value's continuation lines under its start."""
    body = wrapped(value, indent + width + 1)
    first = body[0].lstrip() if body else ""
    return [f"{' ' * indent}{key:<{width}} {first}"] + body[1:]


def iam_lines(snapshot: dict) -> list[str]:
    """moto's roles and instance profiles (local/moto.py iam_snapshot), by name."""
    lines = ["IAM (moto):" + ("" if snapshot["roles"] or snapshot["instance_profiles"] else " empty")]
    for name, profile in sorted(snapshot["instance_profiles"].items()):
        lines += item(f"instance profile {profile['path']}{name}",
                      f"role {', '.join(profile['roles']) or '(none)'}; {_tags(profile['tags'])}")
    for name, role in sorted(snapshot["roles"].items()):
        lines += item(f"role {role['path']}{name}", _tags(role["tags"]))
        lines += wrapped("policies " + (", ".join(role["managed_policies"]) or "(none)"), 6)
        if role["inline_policies"]:
            lines += wrapped("inline policies " + ", ".join(sorted(role["inline_policies"])), 6)
    return lines


def _tags(tags: dict[str, str]) -> str:
    own = {k[len(OWN_PREFIX):]: v for k, v in tags.items() if k.startswith(OWN_PREFIX)}
    parts = []
    if "stack-id" in own:
        stack = _STACK_ARN.search(own["stack-id"])
        parts.append(f"owner {stack['name'] if stack else own['stack-id']}/{own.get('logical-id', '?')}")
    if own.get("adopted"):
        parts.append("adopted")
    parts += [f"{k}={v}" for k, v in sorted(tags.items()) if not k.startswith(OWN_PREFIX)]
    return ", ".join(parts) or "no tags"
