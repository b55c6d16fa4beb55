"""Fault injection for local.proxy.RecordingProxy: Replies and hooks the tests put in `proxy.hooks`.

    hide = HideProfile("p", hidden=range(1, 3))     # reads 1 and 2 of profile p answer NoSuchEntity
    proxy.hooks.append(hide)
    ...
    hide.reads("p")  -> [(1, True), (2, True), (3, False), ...]   # (read number, hidden?)
"""

from __future__ import annotations

import threading
import urllib.parse
import uuid
from typing import Container
from xml.sax.saxutils import escape

from local.proxy import Exchange, Reply, Request


class IamError(Reply):
    """Answers with an IAM (query protocol) error document instead of forwarding."""

    def __init__(self, status: int, code: str, message: str, error_type: str = "Sender"):
        self.status = status
        self.code = code
        self.message = message
        self.error_type = error_type

    def body(self) -> bytes:
        return (
            '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
            f"<Error><Type>{self.error_type}</Type><Code>{self.code}</Code>"
            f"<Message>{escape(self.message)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        ).encode()

    def apply(self, exchange: Exchange) -> str:
        body = self.body()
        exchange.send(self.status, [("Content-Type", "text/xml"),
                                    ("x-amzn-RequestId", str(uuid.uuid4()))], body)
        return f"injected {self.code}"


def no_such_instance_profile(name: str) -> IamError:
    """What IAM answers GetInstanceProfile for a profile it does not (yet) show."""
    return IamError(404, "NoSuchEntity", f"Instance Profile {name} cannot be found.")


def form_value(request: Request, name: str) -> str | None:
    """A parameter of an IAM (query protocol) request's form body."""
    for key, value in urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"),
                                             keep_blank_values=True):
        if key == name:
            return value
    return None


class HideProfile:
    """A proxy hook that makes IAM act eventually consistent for one instance profile: the
    GetInstanceProfile reads of `name` whose number (1-based, per name) is in `hidden` are
    answered NoSuchEntity; all other requests go through. Every GetInstanceProfile read (of
    any name) is recorded as (name, number, hidden)."""

    def __init__(self, name: str, hidden: Container[int]):
        self.name = name
        self.hidden = hidden
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self.log: list[tuple[str, int, bool]] = []

    def __call__(self, request: Request) -> Reply | None:
        if request.action != "GetInstanceProfile":
            return None
        name = form_value(request, "InstanceProfileName") or ""
        with self._lock:
            number = self._counts[name] = self._counts.get(name, 0) + 1
            hide = name == self.name and number in self.hidden
            self.log.append((name, number, hide))
        return no_such_instance_profile(name) if hide else None

    def reads(self, name: str | None = None) -> list[tuple[int, bool]]:
        """(number, hidden) of every GetInstanceProfile read of `name` (default: the hidden one)."""
        name = self.name if name is None else name
        with self._lock:
            return [(n, h) for (p, n, h) in self.log if p == name]


class Always:
    """A container holding every read number: hide for ever."""

    def __contains__(self, _number: object) -> bool:
        return True
