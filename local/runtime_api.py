"""A Lambda Runtime API emulator and a wrapper for the function process.

The function binary is a custom runtime: it long-polls
`GET /2018-06-01/runtime/invocation/next`, handles the event and posts to
`.../invocation/{id}/response` or `.../invocation/{id}/error`. This module plays the
Lambda service side of that protocol, so the real binary runs unmodified.

    api = RuntimeApi().start()
    with FunctionProcess(api, moto_url) as fn:
        result = api.invoke({"RequestType": "Create", ...}, timeout_s=30)

Several function processes may poll one RuntimeApi; each queued invocation is handed
to exactly one poller, which makes concurrent and duplicate deliveries testable.
"""

from __future__ import annotations

import collections
import datetime
import http.server
import json
import os
import re
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from . import _proc

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BINARY = REPO_ROOT / "target" / "debug" / "eb-instance-profile"

FUNCTION_NAME = "eb-instance-profile"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{FUNCTION_NAME}"

# Lambda's limit for a synchronous response payload.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024

_API = "/2018-06-01/runtime"
_NEXT = f"{_API}/invocation/next"
_INIT_ERROR = f"{_API}/init/error"
_RESULT = re.compile(rf"^{_API}/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$")


@dataclass(frozen=True)
class InvocationResult:
    """What became of one invocation.

    kind is 'response' (the function posted a result), 'error' (it posted an error, or
    its response was too large) or 'timeout' (nothing arrived before the deadline plus
    the grace period)."""

    kind: str
    body: bytes
    elapsed_s: float
    request_id: str
    # Lambda-Runtime-Function-Error-Type header of an error post.
    error_type: str | None = None
    # time.monotonic() when a poller was handed the event (None if it never was).
    delivered_at: float | None = None

    def json(self):
        return json.loads(self.body)


@dataclass(frozen=True)
class InitError:
    error_type: str | None
    body: bytes


@dataclass
class _Invocation:
    request_id: str
    payload: bytes
    timeout_s: float
    deadline_ms: int
    started: float = field(default_factory=time.monotonic)
    delivered: bool = False
    delivered_at: float | None = None
    result: InvocationResult | None = None
    done: threading.Event = field(default_factory=threading.Event)


class PendingInvocation:
    """A queued invocation; wait() for its result."""

    def __init__(self, api: "RuntimeApi", inv: _Invocation):
        self._api = api
        self._inv = inv

    @property
    def request_id(self) -> str:
        return self._inv.request_id

    def done(self) -> bool:
        return self._inv.done.is_set()

    @property
    def delivered_at(self) -> float | None:
        """time.monotonic() when a poller was handed this invocation, None until then."""
        return self._inv.delivered_at

    def wait(self) -> InvocationResult:
        """Block until the function answers, or until the deadline plus the API's grace
        period has passed (then the result is a 'timeout')."""
        return self._api._wait(self._inv)

    def crashed(self, error_type: str = "Runtime.ExitError") -> InvocationResult:
        """End the invocation as Lambda does when the runtime process exits while handling it:
        an error of `error_type`, after which the same request id may be delivered again (Lambda
        retries an asynchronous invocation that failed). Returns the result it ended with, which
        is the function's own if it answered first."""
        return self._api._crash(self._inv, error_type)


class RuntimeApi:
    """Lambda Runtime API on 127.0.0.1 (port 0 picks a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 function_arn: str = FUNCTION_ARN, grace_s: float = 3.0):
        self._host, self._port = host, port
        self.function_arn = function_arn
        # How long past an invocation's deadline invoke() still waits for an answer.
        self.grace_s = grace_s
        self._cond = threading.Condition()
        self._queue: collections.deque[_Invocation] = collections.deque()
        self._invocations: dict[str, _Invocation] = {}
        self._polls = 0
        self._poll_times: list[float] = []
        self._stopping = False
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Init errors reported by function processes (POST /runtime/init/error).
        self.init_errors: list[InitError] = []
        # Protocol violations seen: posts for unknown, undelivered or finished invocations.
        self.rejected: list[str] = []

    # lifecycle

    def start(self) -> "RuntimeApi":
        server = http.server.ThreadingHTTPServer((self._host, self._port), _Handler)
        server.daemon_threads = True
        server.api = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="runtime-api",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "RuntimeApi":
        return self if self._server is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """host:port, the value of AWS_LAMBDA_RUNTIME_API."""
        if self._server is None:
            raise RuntimeError("RuntimeApi is not started")
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def clear_records(self) -> None:
        """Forget the init errors and rejected posts recorded so far."""
        with self._cond:
            self.init_errors.clear()
            self.rejected.clear()

    @property
    def poll_count(self) -> int:
        """How many /next requests have arrived so far."""
        with self._cond:
            return self._polls

    @property
    def poll_times(self) -> list[float]:
        """time.monotonic() of every /next request so far, as it arrived (for start-up timing)."""
        with self._cond:
            return list(self._poll_times)

    @property
    def queued(self) -> int:
        """Invocations waiting for a poller."""
        with self._cond:
            return sum(1 for inv in self._queue if inv.result is None)

    # invoking

    def submit(self, event, timeout_s: float = 30.0, request_id: str | None = None) -> PendingInvocation:
        """Queue an invocation (dict as JSON, bytes verbatim) and return at once.
        request_id defaults to a new UUID."""
        payload = event if isinstance(event, (bytes, bytearray)) else json.dumps(event).encode()
        inv = _Invocation(
            request_id=request_id or str(uuid.uuid4()),
            payload=bytes(payload),
            timeout_s=timeout_s,
            deadline_ms=int((time.time() + timeout_s) * 1000),
        )
        with self._cond:
            previous = self._invocations.get(inv.request_id)
            # Lambda retries an asynchronous invocation under the same request id, so an
            # id may come again once its earlier invocation has ended.
            if previous is not None and previous.result is None:
                raise ValueError(f"request id {inv.request_id} is still in flight")
            self._invocations[inv.request_id] = inv
            self._queue.append(inv)
            self._cond.notify_all()
        return PendingInvocation(self, inv)

    def invoke(self, event, timeout_s: float = 30.0, request_id: str | None = None) -> InvocationResult:
        """Queue an invocation with deadline now + timeout_s and wait for its result."""
        return self.submit(event, timeout_s, request_id).wait()

    def _wait(self, inv: _Invocation) -> InvocationResult:
        remaining = inv.started + inv.timeout_s + self.grace_s - time.monotonic()
        inv.done.wait(max(0.0, remaining))
        with self._cond:
            if inv.result is None:
                # Too late: a poller skips it from now on, and a late answer is rejected.
                inv.result = InvocationResult("timeout", b"", time.monotonic() - inv.started,
                                              inv.request_id, delivered_at=inv.delivered_at)
                inv.done.set()
            return inv.result

    def _crash(self, inv: _Invocation, error_type: str) -> InvocationResult:
        with self._cond:
            if inv.result is None:
                body = json.dumps({"errorType": error_type,
                                   "errorMessage": "the runtime exited during the invocation"}).encode()
                inv.result = InvocationResult("error", body, time.monotonic() - inv.started,
                                              inv.request_id, error_type, inv.delivered_at)
                inv.done.set()
            return inv.result

    # the protocol side, called from handler threads

    def _next(self, handler: "_Handler", arrived: float) -> None:
        with self._cond:
            self._polls += 1
            self._poll_times.append(arrived)
            self._cond.notify_all()
            inv = None
            while inv is None:
                if self._stopping or _peer_closed(handler.connection):
                    # A stopped function leaves its /next poll behind; this thread must
                    # not hand it an invocation meant for a live process.
                    handler.close_connection = True
                    return
                inv = self._take_locked()
                if inv is None:
                    self._cond.wait(0.2)
            inv.delivered = True
            inv.delivered_at = time.monotonic()
        try:
            handler.send(200, inv.payload, {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
                "Lambda-Runtime-Trace-Id": _trace_id(),
            })
        except OSError:
            # The poller vanished mid-delivery: give the invocation to the next one.
            with self._cond:
                inv.delivered = False
                if inv.result is None:
                    self._queue.appendleft(inv)
                    self._cond.notify_all()
            handler.close_connection = True

    def _take_locked(self) -> _Invocation | None:
        while self._queue:
            inv = self._queue.popleft()
            if inv.result is None:  # skip invocations that already timed out
                return inv
        return None

    def _complete(self, handler: "_Handler", request_id: str, kind: str, body: bytes) -> None:
        error_type = handler.headers.get("Lambda-Runtime-Function-Error-Type")
        with self._cond:
            inv = self._invocations.get(request_id)
            problem = None
            if inv is None:
                problem = ("InvalidRequestID", f"unknown request id {request_id}")
            elif not inv.delivered:
                problem = ("InvalidRequestID", f"request id {request_id} was never handed out")
            elif inv.result is not None:
                problem = ("InvalidStateTransition",
                           f"{kind} for request id {request_id}, which already ended as {inv.result.kind}")
            if problem is None:
                elapsed = time.monotonic() - inv.started
                if kind == "response" and len(body) > MAX_RESPONSE_BYTES:
                    inv.result = InvocationResult("error", body, elapsed, request_id,
                                                  "Function.ResponseSizeTooLarge", inv.delivered_at)
                    status = 413
                else:
                    inv.result = InvocationResult(kind, body, elapsed, request_id, error_type,
                                                  inv.delivered_at)
                    status = 202
                inv.done.set()
            else:
                self.rejected.append(problem[1])
        if problem is not None:
            handler.send_json(400, {"errorType": problem[0], "errorMessage": problem[1]})
        elif status == 413:
            handler.send_json(413, {"errorType": "RequestEntityTooLarge",
                                    "errorMessage": "response payload too large"})
        else:
            handler.send_json(202, {"status": "OK"})

    def _init_error(self, handler: "_Handler", body: bytes) -> None:
        with self._cond:
            self.init_errors.append(InitError(handler.headers.get("Lambda-Runtime-Function-Error-Type"), body))
        handler.send_json(202, {"status": "OK"})


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive, like the real endpoint; every answer carries Content-Length.
    protocol_version = "HTTP/1.1"
    server_version = "LocalRuntimeApi/1"
    # TCP_NODELAY: headers and body go out in two writes; with Nagle on, the body can wait for
    # the function's delayed ACK of the headers (up to 40 ms per event on a kept-alive connection).
    disable_nagle_algorithm = True

    @property
    def api(self) -> RuntimeApi:
        return self.server.api

    def do_GET(self) -> None:
        arrived = time.monotonic()
        self.read_body()
        if self.path == _NEXT:
            self.api._next(self, arrived)
        else:
            self.send_json(404, {"errorType": "NotFound", "errorMessage": self.path})

    def do_POST(self) -> None:
        body = self.read_body()
        match = _RESULT.match(self.path)
        if match:
            self.api._complete(self, match["id"], match["kind"], body)
        elif self.path == _INIT_ERROR:
            self.api._init_error(self, body)
        else:
            self.send_json(404, {"errorType": "NotFound", "errorMessage": self.path})

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        # Streaming responses arrive chunked, possibly with trailers.
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status: int, obj) -> None:
        self.send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def log_message(self, format, *args) -> None:
        pass  # one line per poll would drown the test output


def _peer_closed(sock: socket.socket) -> bool:
    """True when the client has closed its end (a readable socket with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"


def resolve_binary(binary: str | os.PathLike | None = None) -> Path:
    """The function binary: the argument, else $EB_BINARY, else the debug build.
    Relative paths are taken from the repo root."""
    path = Path(binary or os.environ.get("EB_BINARY") or DEFAULT_BINARY)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        raise FileNotFoundError(
            f"function binary {path} does not exist: build it with `cargo build` "
            f"or point EB_BINARY at it")
    if not os.access(path, os.X_OK):
        raise PermissionError(f"function binary {path} is not executable")
    return path


class FunctionProcess:
    """The function binary running as a custom runtime against a RuntimeApi.

    Its environment is built from scratch (only PATH is inherited), so credentials or
    profiles of the machine never reach it. extra_env adds or overrides variables; a
    value of None removes one. args follow the binary on its command line (an
    interpreter as binary and a runtime's module as args run a non-Rust function)."""

    def __init__(self, api: RuntimeApi, moto_url: str,
                 extra_env: Mapping[str, str | None] | None = None, *,
                 binary: str | os.PathLike | None = None, log_path: str | os.PathLike | None = None,
                 args: Sequence[str] = ()):
        self.api = api
        self.binary = resolve_binary(binary)
        self.args = list(args)
        # time.monotonic() just before the spawn, and of the first /next poll after it (set by
        # start(wait_ready=True)): their difference is the start-up time.
        self.spawned_at: float | None = None
        self.ready_at: float | None = None
        moto_url = moto_url.rstrip("/")
        now = datetime.datetime.now(datetime.timezone.utc)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{now:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            # Without credentials the SDK would fall back to the instance metadata
            # service, a non-loopback address: never let it try.
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": moto_url,
            "ALLOWED_RESPONSE_URL_PREFIXES": f"{moto_url}/",
            "RUST_LOG": "info",
        }
        for key, value in (extra_env or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        self.env = env
        self.log_path = Path(log_path) if log_path else _proc.new_log_path(FUNCTION_NAME)
        self._proc = None

    def start(self, wait_ready: bool = True, ready_timeout_s: float = 10.0) -> "FunctionProcess":
        """Spawn the binary. With wait_ready, return only once it polls /next, and raise
        (with its logs) if it exits or stays silent first."""
        if self._proc is not None:
            raise RuntimeError("FunctionProcess already started")
        polls_before = self.api.poll_count
        self.spawned_at = time.monotonic()
        self._proc = _proc.spawn([str(self.binary), *self.args], self.env, self.log_path)
        if wait_ready:
            limit = time.monotonic() + ready_timeout_s
            # With several processes on one API another one's poll can count too; the
            # check is for a binary that dies at start, not for exact readiness.
            while self.api.poll_count == polls_before:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"function exited with status {self._proc.returncode} "
                                       f"before polling for work; log:\n{self.logs()}")
                if time.monotonic() > limit:
                    self.stop()
                    raise RuntimeError(f"function did not poll for work within {ready_timeout_s}s; "
                                       f"log:\n{self.logs()}")
                time.sleep(0.02)
            self.ready_at = self.api.poll_times[polls_before]
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """Exit status once the process has ended, else None."""
        return self._proc.poll() if self._proc else None

    def wait(self, timeout_s: float | None = None) -> int:
        return self._proc.wait(timeout_s)

    def logs(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as when the sandbox dies: no handler runs, nothing is flushed or answered."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    def stop(self) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL). Returns its exit status."""
        if self._proc is None:
            return None
        return _proc.stop(self._proc)

    def __enter__(self) -> "FunctionProcess":
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
