"""A recording HTTP proxy for the local harness: it sits between the function and moto.

The function is pointed at the proxy instead of moto (AWS_ENDPOINT_URL_IAM, or a ResponseURL
whose host is the proxy); the proxy forwards every request to one upstream URL, can hold each
request for a fixed latency first (IAM is a remote service, moto answers in a few ms), and
records every request it saw:

    with RecordingProxy(moto.url, latency=per_service({"iam": 0.025})) as proxy:
        ...                                   # function talks to proxy.url
        records = proxy.take_records()        # [Record(started, finished, action, status, ...)]
        count_rounds(r for r in records if r.service == "iam")

Times are time.monotonic() of this process, so they compare directly with the timestamps of a
RuntimeApi running in the same process.

Hook point (for fault injection): `proxy.hooks` is a list of callables `hook(request) -> Reply |
None`, tried in order after the latency; the first Reply returned decides what the client gets,
and None from all of them forwards the request upstream. `proxy.authorize`, a hook of the same
shape, is tried before them (local/authz.py): IAM decides whether a request may run before
anything can happen to it, so a denied request never reaches a fault hook, and a fault that loses
an answer makes the client send the request again through authorization. A Reply is anything with
`apply(exchange) -> str`: it answers through the Exchange (`forward()`, `send(...)`, the raw
`socket`, `drop()`) and returns a short name for the record's `outcome`. Forward is defined here;
the fault Replies (IAM error bodies, resets, hangs) and hooks live in tests/faults.py.

TLS: pass `tls=(certfile, keyfile)` to serve https (the handshake runs in the connection's own
thread); the upstream is plain http either way.

    python -m local.proxy --upstream http://127.0.0.1:5000 --latency-ms iam=25
runs one standalone and prints a line per request.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import re
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

# Headers that describe one connection, not the message: never passed through.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                         "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})
# Credential=AKID/20260101/us-east-1/iam/aws4_request in a SigV4 Authorization header or query.
_SCOPE = re.compile(r"[^/\s,]+/\d{8}/[^/]+/(?P<service>[^/]+)/aws4_request")


@dataclass(frozen=True)
class Request:
    """One request as a hook and the latency function see it."""

    method: str
    target: str                      # path and query, as sent
    headers: Mapping[str, str]       # as received (case-insensitive lookup)
    body: bytes
    service: str | None              # from the SigV4 credential scope: "iam", "s3", ...
    action: str | None               # query protocol Action=..., or the X-Amz-Target operation

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Record:
    """What the proxy saw of one request. finished/status stay None while it is in flight
    (and status stays None when no HTTP answer was given, as after a reset)."""

    seq: int
    method: str
    path: str                        # without the query string (presigned URLs carry secrets)
    service: str | None
    action: str | None
    started: float                   # request line and headers read
    received: float                  # body read as well
    finished: float | None = None    # answer released to the client (taken just before writing it)
    status: int | None = None
    outcome: str = ""                # "forwarded", or the name a Reply gave

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


def parse_request_meta(target: str, headers: Mapping[str, str], body: bytes) -> tuple[str | None, str | None]:
    """(service, action) of an AWS request: the service from the SigV4 scope, the action from the
    query protocol's form body (IAM, STS) or query string, else from X-Amz-Target (JSON protocol)."""
    service = None
    query = urllib.parse.urlsplit(target).query
    for source in (headers.get("Authorization") or "",
                   urllib.parse.unquote(dict(urllib.parse.parse_qsl(query)).get("X-Amz-Credential", ""))):
        match = _SCOPE.search(source)
        if match:
            service = match["service"]
            break
    action = None
    content_type = (headers.get("Content-Type") or "").lower()
    if body and content_type.startswith("application/x-www-form-urlencoded"):
        action = _form_value(body.decode("utf-8", "replace"), "Action")
    if action is None and query:
        action = _form_value(query, "Action")
    if action is None and headers.get("X-Amz-Target"):
        action = headers["X-Amz-Target"].rsplit(".", 1)[-1]
    return service, action


def _form_value(form: str, name: str) -> str | None:
    for key, value in urllib.parse.parse_qsl(form, keep_blank_values=True):
        if key == name:
            return value
    return None


def per_service(latencies_s: Mapping[str, float]) -> Callable[[Request], float]:
    """A latency function: latencies_s[service] seconds for that service's requests, 0 for others."""
    table = dict(latencies_s)
    return lambda request: table.get(request.service or "", 0.0)


def count_rounds(records: Iterable[Record]) -> int:
    """Sequential rounds among finished requests: sorted by start, a request opens a new round
    when it starts after every earlier request has finished; overlapping ones share a round."""
    rounds = 0
    horizon = None
    for record in sorted(records, key=lambda r: r.started):
        if record.finished is None:
            raise ValueError(f"request {record.seq} ({record.action}) has not finished")
        if horizon is None or record.started >= horizon:
            rounds += 1
            horizon = record.finished
        else:
            horizon = max(horizon, record.finished)
    return rounds


def group_rounds(records: Iterable[Record]) -> list[list[Record]]:
    """The rounds of count_rounds, each a list of its requests in start order."""
    groups: list[list[Record]] = []
    horizon = None
    for record in sorted(records, key=lambda r: r.started):
        if horizon is None or record.started >= horizon:
            groups.append([record])
            horizon = record.finished
        else:
            groups[-1].append(record)
            horizon = max(horizon, record.finished)
    return groups


class Exchange:
    """One request being answered; what a Reply works with."""

    def __init__(self, handler: "_Handler", request: Request):
        self._handler = handler
        self.request = request

    @property
    def socket(self):
        """The client connection, for replies that misbehave at the transport level."""
        return self._handler.connection

    def forward(self, extra_headers: Mapping[str, str] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request upstream, with `extra_headers` added, and return (status, headers,
        body) without answering."""
        return self._handler.forward_upstream(self.request, extra_headers)

    def send(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        """Answer the client (Content-Length is set here; hop-by-hop headers are dropped)."""
        self._handler.send_reply(status, headers, body)

    def drop(self, reset: bool = True) -> None:
        """Close the client connection without an answer: with `reset`, abortively (TCP RST, as a
        crashed peer or a middlebox does), else with an orderly FIN."""
        self._handler.close_connection = True
        sock = self.socket
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass


class Reply:
    """What a hook returns to take over a request: apply() answers it and names the outcome."""

    def apply(self, exchange: Exchange) -> str:
        raise NotImplementedError


class Forward(Reply):
    """Pass the request upstream and its answer back: what happens when no hook intervenes."""

    def apply(self, exchange: Exchange) -> str:
        exchange.send(*exchange.forward())
        return "forwarded"


Hook = Callable[[Request], "Reply | None"]


class RecordingProxy:
    """The proxy on 127.0.0.1 (port 0 picks a free one), forwarding to `upstream` (http)."""

    def __init__(self, upstream: str, *, latency: Callable[[Request], float] | float = 0.0,
                 host: str = "127.0.0.1", port: int = 0, tls: tuple[str, str] | None = None,
                 hooks: Sequence[Hook] = (), upstream_timeout_s: float = 60.0):
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        # Seconds to hold a request before it is handled; a number or a function of the Request.
        # May be changed while running.
        self.latency = latency
        self.hooks: list[Hook] = list(hooks)
        self.authorize: Hook | None = None
        self.upstream_timeout_s = upstream_timeout_s
        self._host, self._port = host, port
        self._tls = tls
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._seq = 0
        self._server: http.server.ThreadingHTTPServer | None = None

    # lifecycle

    def start(self) -> "RecordingProxy":
        server = _Server((self._host, self._port), _Handler)
        server.daemon_threads = True
        server.proxy = self
        if self._tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._tls)
            server.tls_context = context
        self._server = server
        threading.Thread(target=server.serve_forever, name="recording-proxy",
                         kwargs={"poll_interval": 0.2}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "RecordingProxy":
        return self if self._server is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("RecordingProxy is not started")
        host, port = self._server.server_address[:2]
        return f"{'https' if self._tls else 'http'}://{host}:{port}"

    # records

    @property
    def records(self) -> list[Record]:
        """A copy of the records kept so far, in arrival order."""
        with self._lock:
            return list(self._records)

    def take_records(self) -> list[Record]:
        """The records kept so far, which are then forgotten."""
        with self._lock:
            taken, self._records = self._records, []
            return taken

    def _new_record(self, request: Request, started: float, received: float) -> Record:
        with self._lock:
            self._seq += 1
            record = Record(self._seq, request.method, request.path, request.service,
                            request.action, started, received)
            self._records.append(record)
            return record

    def _delay_for(self, request: Request) -> float:
        latency = self.latency
        return float(latency(request) if callable(latency) else latency)


class _Server(http.server.ThreadingHTTPServer):
    tls_context: ssl.SSLContext | None = None

    def get_request(self):
        sock, address = super().get_request()
        if self.tls_context is not None:
            # The handshake waits for the handler thread (setup), not the accept loop.
            sock = self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RecordingProxy/1"
    # TCP_NODELAY: headers and body go out in two writes; with Nagle on, the body waits for the
    # client's delayed ACK of the headers (up to 40 ms per response on a kept-alive connection).
    disable_nagle_algorithm = True
    _upstream: http.client.HTTPConnection | None = None

    @property
    def proxy(self) -> RecordingProxy:
        return self.server.proxy

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()

    def _handle(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        received = time.monotonic()
        headers = self.headers
        service, action = parse_request_meta(self.path, headers, body)
        request = Request(self.command, self.path, headers, body, service, action)
        record = self.proxy._new_record(request, started, received)
        self._record = record
        delay = self.proxy._delay_for(request)
        if delay > 0:
            time.sleep(delay)
        reply: Reply | None = None
        gate = self.proxy.authorize
        for hook in ([gate] if gate else []) + list(self.proxy.hooks):
            reply = hook(request)
            if reply is not None:
                break
        try:
            record.outcome = (reply or Forward()).apply(Exchange(self, request))
        except Exception as err:  # upstream down, or a hook that failed: answer 502, keep going
            record.outcome = f"error: {type(err).__name__}: {err}"
            if record.status is None:
                try:
                    self.send_reply(502, [("Content-Type", "text/plain")],
                                    f"proxy: {type(err).__name__}: {err}".encode())
                except OSError:
                    self.close_connection = True
        finally:
            if record.finished is None:
                record.finished = time.monotonic()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def forward_upstream(self, request: Request, extra_headers: Mapping[str, str] | None = None
                         ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers.update(extra_headers or {})
        headers["Content-Length"] = str(len(request.body))
        for attempt in (1, 2):
            reused = self._upstream is not None
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(*self.proxy.upstream,
                                                            timeout=self.proxy.upstream_timeout_s)
            try:
                self._upstream.request(request.method, request.target, body=request.body, headers=headers)
                response = self._upstream.getresponse()
                body = response.read()
                return response.status, response.getheaders(), body
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._upstream.close()
                self._upstream = None
                # A kept-alive upstream connection may have been closed by the server: one retry.
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def send_reply(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        # Finished as the answer is released, not after: a request the client sends because of
        # this answer must start after it finished, or two sequential rounds would look like one.
        self._record.status = status
        self._record.finished = time.monotonic()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, format, *args) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recording proxy in front of moto.")
    parser.add_argument("--upstream", required=True, help="http://host:port to forward to")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", action="append", default=[], metavar="SERVICE=MS",
                        help="hold requests of SERVICE (iam, s3, ...) for MS milliseconds; repeatable")
    args = parser.parse_args(argv)
    latencies = {}
    for item in args.latency_ms:
        service, _, ms = item.partition("=")
        latencies[service] = float(ms) / 1000
    proxy = RecordingProxy(args.upstream, latency=per_service(latencies), port=args.port).start()
    print(f"proxy at {proxy.url} -> {args.upstream}", flush=True)
    try:
        while True:
            time.sleep(0.5)
            for r in proxy.take_records():
                while r.finished is None:
                    time.sleep(0.05)
                print(f"{r.seq:5d} {r.method} {r.path} {r.service or '-'} {r.action or '-'} "
                      f"{r.status} {r.duration * 1000:.1f}ms {r.outcome}", flush=True)
    except KeyboardInterrupt:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
