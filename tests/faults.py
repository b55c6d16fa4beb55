"""Fault injection for local.proxy.RecordingProxy: Replies and hooks the tests put in `proxy.hooks`.

Replies (what a faulty IAM or network answers instead of moto):
    IamError(status, code, message)   IAM's own error document; throttling(), service_failure(),
                                      concurrent_modification(), access_denied(action) build the
                                      ones IAM sends
    Reset()                           the connection is reset, no answer
    Hang(release)                     no answer until `release` is set (or for ever), then a reset
    ForwardThenKill(kill)             the request reaches moto, then the caller is killed before
                                      it reads the answer
    LoseAnswer()                      the request takes effect, its answer is lost (reset)

Hooks (decide which request gets which Reply):
    HideProfile("p", hidden={1, 2})   reads 1 and 2 of profile p answer NoSuchEntity
    FailNth(k)                        the k-th mutating IAM request fails (AccessDenied by default)
    KillAfterNth(k, kill)             the k-th mutating IAM request takes effect, then kill()
    Transient(rate, seed)             that fraction of IAM requests fails transiently, chosen by a
                                      hash of (seed, request, repetition): the same run gets the
                                      same faults whatever the thread timing
    MutatingCalls()                   records the mutating IAM actions, in arrival order
    LoseAnswers({"DeleteRole"})       the first DeleteRole takes effect and loses its answer
"""

from __future__ import annotations

import collections
import hashlib
import re
import threading
import urllib.parse
from typing import Callable, Container, Sequence

from local.iam_error import IamError
from local.proxy import Exchange, Reply, Request
from local.realistic import request_fingerprint


def throttling() -> IamError:
    return IamError(400, "Throttling", "Rate exceeded")


def service_failure() -> IamError:
    return IamError(500, "ServiceFailure", "The request processing has failed because of an "
                    "unknown error, exception or failure.", error_type="Receiver")


def concurrent_modification() -> IamError:
    return IamError(409, "ConcurrentModification", "Cannot perform the operation because the "
                    "entity is being modified by another request.")


def access_denied(action: str | None) -> IamError:
    return IamError(403, "AccessDenied", "User: arn:aws:sts::123456789012:assumed-role/fn/x is "
                    f"not authorized to perform: iam:{action} because no identity-based policy "
                    "allows the action")


class Reset(Reply):
    """The connection is reset before anything reaches moto."""

    def apply(self, exchange: Exchange) -> str:
        exchange.drop(reset=True)
        return "injected reset"


class Hang(Reply):
    """Never answers: holds the request until `release` is set (or `limit_s` passes), then
    resets the connection. Nothing reaches moto."""

    def __init__(self, release: threading.Event | None = None, limit_s: float = 120.0):
        self.release = release or threading.Event()
        self.limit_s = limit_s

    def apply(self, exchange: Exchange) -> str:
        self.release.wait(self.limit_s)
        exchange.drop(reset=True)
        return "injected hang"


class LoseAnswer(Reply):
    """The request takes effect in moto, then the connection is reset before the answer: what a
    caller sees when IAM's answer is lost on the way. The SDK sends the same request again."""

    def apply(self, exchange: Exchange) -> str:
        exchange.forward()
        exchange.drop(reset=True)
        return "forwarded, answer lost"


class LoseAnswers:
    """Hook: the first `times` requests of each action in `actions` lose their answers."""

    def __init__(self, actions: Container[str], times: int = 1):
        self.actions = actions
        self.times = times
        self.lost: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply | None:
        if request.service != "iam" or request.action not in self.actions:
            return None
        with self._lock:
            if self.lost[request.action] >= self.times:
                return None
            self.lost[request.action] += 1
        return LoseAnswer()


class ForwardThenKill(Reply):
    """The request takes effect in moto, then `kill()` ends the caller before it hears back."""

    def __init__(self, kill: Callable[[], None]):
        self.kill = kill

    def apply(self, exchange: Exchange) -> str:
        exchange.forward()
        self.kill()
        exchange.drop(reset=True)
        return "forwarded, then killed the caller"


# Actions that change IAM state. Everything else this function calls is a Get or a List.
MUTATING_PREFIXES = ("Create", "Delete", "Attach", "Detach", "Put", "Add", "Remove", "Tag",
                     "Untag", "Update")


def is_mutating(request: Request) -> bool:
    return request.service == "iam" and (request.action or "").startswith(MUTATING_PREFIXES)


class MutatingCalls:
    """Records the mutating IAM actions in arrival order; passes every request on."""

    def __init__(self):
        self._lock = threading.Lock()
        self.actions: list[str] = []

    def __call__(self, request: Request) -> Reply | None:
        if is_mutating(request):
            with self._lock:
                self.actions.append(request.action or "")
        return None


class _NthMutating:
    """Counts mutating IAM requests; the k-th (1-based) gets `reply(request)`."""

    def __init__(self, k: int):
        self.k = k
        self._lock = threading.Lock()
        self._seen = 0
        self.hit: str | None = None       # the action of the k-th request, once it came

    def reply(self, request: Request) -> Reply:
        raise NotImplementedError

    def __call__(self, request: Request) -> Reply | None:
        if not is_mutating(request):
            return None
        with self._lock:
            self._seen += 1
            if self._seen != self.k:
                return None
            self.hit = request.action
        return self.reply(request)


class FailNth(_NthMutating):
    """The k-th mutating IAM request fails for good (AccessDenied unless `error` says otherwise):
    IAM refuses it and the SDK does not retry."""

    def __init__(self, k: int, error: Callable[[Request], IamError] = lambda r: access_denied(r.action)):
        super().__init__(k)
        self.error = error

    def reply(self, request: Request) -> Reply:
        return self.error(request)


class KillAfterNth(_NthMutating):
    """The k-th mutating IAM request takes effect, then `kill()` runs (the function process dies
    before it hears the answer)."""

    def __init__(self, k: int, kill: Callable[[], None]):
        super().__init__(k)
        self.kill = kill

    def reply(self, request: Request) -> Reply:
        return ForwardThenKill(self.kill)


TRANSIENT_FAULTS: Sequence[Callable[[], Reply]] = (throttling, service_failure,
                                                   concurrent_modification, Reset)


class Transient:
    """A fraction `rate` of IAM requests (matching `actions`, default all) fails with one of
    `faults`. Which request fails and how is a hash of the seed, the request (action and form
    body) and how many times that same request came before: deterministic for a given sequence
    of requests, independent of thread timing, and a retry draws again. `injected` counts the
    faults by kind."""

    def __init__(self, rate: float, seed: int, faults: Sequence[Callable[[], Reply]] = TRANSIENT_FAULTS,
                 actions: Callable[[Request], bool] = lambda r: r.service == "iam"):
        self.rate = rate
        self.seed = seed
        self.faults = list(faults)
        self.actions = actions
        self._lock = threading.Lock()
        self._repeats: collections.Counter[bytes] = collections.Counter()
        self.injected: collections.Counter[str] = collections.Counter()
        self.requests = 0

    def __call__(self, request: Request) -> Reply | None:
        if not self.actions(request):
            return None
        key = request_fingerprint(request)
        with self._lock:
            self.requests += 1
            repeat = self._repeats[key]
            self._repeats[key] += 1
        digest = hashlib.sha256(f"{self.seed}:{repeat}:".encode() + key).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        if draw >= self.rate:
            return None
        reply = self.faults[digest[8] % len(self.faults)]()
        kind = reply.code if isinstance(reply, IamError) else type(reply).__name__
        with self._lock:
            self.injected[kind] += 1
        return reply


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


class StaleOwnTags:
    """A proxy hook that makes the first GetRole of `role` come from a replica that has not seen
    the function's tags yet (as IAM's eventual consistency allows right after a TagRole): the
    answer goes through without the eb-instance-profile:* tags. Counts the reads it served so
    (those that had such tags to leave out)."""

    _OWN_TAG = re.compile(rb"<member>\s*<Key>eb-instance-profile:[^<]*</Key>\s*<Value>[^<]*</Value>\s*</member>")

    def __init__(self, role: str):
        self.role = role
        self.served = 0

    def __call__(self, request: Request) -> Reply | None:
        if request.action != "GetRole" or form_value(request, "RoleName") != self.role or self.served:
            return None
        return _WithoutOwnTags(self)


class _WithoutOwnTags(Reply):
    def __init__(self, hook: StaleOwnTags):
        self.hook = hook

    def apply(self, exchange: Exchange) -> str:
        status, headers, body = exchange.forward()
        body, stripped = StaleOwnTags._OWN_TAG.subn(b"", body)
        if stripped:
            self.hook.served += 1
        exchange.send(status, headers, body)
        return "injected stale tags"
