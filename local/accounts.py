"""Several AWS accounts in the local harness: ministack and moto each keep separate state per
account, and pick the account differently; this module joins the two.

- ministack takes the account from the request's access key when it is 12 digits (any other key
  is MINISTACK_ACCOUNT_ID's account), and gives each Lambda function its own account id as
  AWS_ACCESS_KEY_ID (its environment is otherwise the same for every function).
- moto takes the account from an `x-moto-account-id` header (a 12-digit access key means nothing
  to it: keys are looked up among its IAM users' keys, else the default account 123456789012).

So the function of account A signs its IAM requests with access key A; the proxy in front of
moto reads that key, authorizes the request against account A's execution role, and forwards it
with `x-moto-account-id: A`. The tests read and change each account's IAM with clients that send
the header (MotoAccount).

    router = AccountRouter(default_account="123456789012")
    router.add("111111111111", authorizer)          # or None: no authorization
    proxy.authorize = router
    MotoAccount(moto, "111111111111").iam_snapshot()
"""

from __future__ import annotations

import re
import threading
from typing import Callable

from .iam_error import IamError
from .moto import MotoServer
from .proxy import Exchange, Reply, Request

MOTO_ACCOUNT_HEADER = "x-moto-account-id"
_ACCESS_KEY = re.compile(r"Credential=(?P<key>[^/\s,]+)/")
_ACCOUNT_ID = re.compile(r"^\d{12}$")


def account_of(request: Request) -> str | None:
    """The account a request is signed for, as ministack reads it: a 12-digit access key is the
    account id. None for any other key."""
    match = _ACCESS_KEY.search(request.headers.get("Authorization") or "")
    key = match["key"] if match else ""
    return key if _ACCOUNT_ID.match(key) else None


def select_moto_account(client, account: str) -> None:
    """Make a boto3 client's requests to moto act in `account`."""
    def add_header(request, **_kwargs):
        request.headers[MOTO_ACCOUNT_HEADER] = account
    client.meta.events.register("before-sign", add_header)


class ForwardToAccount(Reply):
    """Forward the request to moto's IAM of one account."""

    def __init__(self, account: str):
        self.account = account

    def apply(self, exchange: Exchange) -> str:
        exchange.send(*exchange.forward({MOTO_ACCOUNT_HEADER: self.account}))
        return f"forwarded to account {self.account}"


class AccountRouter:
    """A proxy gate (RecordingProxy.authorize): each request goes to the account its access key
    names, through that account's authorizer (a gate of the same shape, or None for none). A
    request of an account that was not added is refused as IAM refuses an unknown access key.
    `routed` counts the requests forwarded per account."""

    def __init__(self, default_account: str):
        self.default_account = default_account
        self._gates: dict[str, Callable[[Request], Reply | None] | None] = {}
        self._lock = threading.Lock()
        self.routed: dict[str, int] = {}

    def add(self, account: str, authorize: Callable[[Request], Reply | None] | None) -> None:
        with self._lock:
            self._gates[account] = authorize

    def __call__(self, request: Request) -> Reply | None:
        account = account_of(request) or self.default_account
        with self._lock:
            known = account in self._gates
            gate = self._gates.get(account)
        if not known:
            return IamError(403, "InvalidClientTokenId",
                            "The security token included in the request is invalid.")
        reply = gate(request) if gate is not None else None
        if reply is not None:
            return reply
        with self._lock:
            self.routed[account] = self.routed.get(account, 0) + 1
        return ForwardToAccount(account)


class MotoAccount:
    """One account of a MotoServer: its clients act in that account, and MotoServer's snapshot
    and clean-up work on it alone."""

    def __init__(self, moto: MotoServer, account: str):
        self.moto = moto
        self.account = account
        self.url = moto.url
        self._clients: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str = "us-east-1"):
        with self._lock:
            client = self._clients.get((service, region))
            if client is None:
                # Not MotoServer's cached client: the header hook would reach every user of it.
                client = MotoServer.client(_Uncached(self.moto), service, region)
                select_moto_account(client, self.account)
                self._clients[(service, region)] = client
            return client

    def iam_client(self):
        return self.client("iam")

    def iam_snapshot(self) -> dict:
        return MotoServer.iam_snapshot(self)

    def clean(self) -> None:
        MotoServer.clean(self)


class _Uncached:
    """Stands in for a MotoServer in MotoServer.client, so that it builds a new client."""

    def __init__(self, moto: MotoServer):
        self.url = moto.url
        self._clients: dict = {}
        self._clients_lock = threading.Lock()
