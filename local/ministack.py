"""The local CloudFormation engine as a child process: ministack (PyPI, pinned in
requirements-dev.txt) with the harness's additions (local/cfn_engine.py).

    with Ministack(function_env={"AWS_ENDPOINT_URL_IAM": moto_url}) as engine:
        engine.client("cloudformation").create_stack(...)
        engine.journal()          # the invocations and responses the harness saw

It listens on 127.0.0.1 at a free port, keeps all its state in a temp dir that is removed at stop,
and can reach no Docker engine (DOCKER_HOST names a socket that does not exist), so everything it
runs, the function included, runs as a local process. Its environment is built from scratch: the
machine's AWS settings never reach it or the functions it starts, which inherit it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Mapping

import boto3
from botocore.config import Config

from . import _proc
from .cfn_engine import RESPONSE_PATH
from .moto import _free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
# The same account as moto's, so that the ARNs of both read alike.
ACCOUNT_ID = "123456789012"


class Ministack:
    """ministack on 127.0.0.1. function_env is added to the environment of every Lambda function it
    runs (ministack gives functions its own environment plus theirs): that is how the function
    learns the IAM endpoint and the harness's timings without changing the deployed template."""

    def __init__(self, function_env: Mapping[str, str] | None = None, *,
                 start_timeout_s: float = 60.0):
        self.function_env = dict(function_env or {})
        self._start_timeout_s = start_timeout_s
        self._proc = None
        self._dir: Path | None = None
        self.url: str | None = None
        self.log_path = _proc.new_log_path("ministack")
        self._clients: dict[tuple, object] = {}
        self._clients_lock = threading.Lock()

    # lifecycle

    def start(self) -> "Ministack":
        if self._proc is not None:
            raise RuntimeError("Ministack already started")
        self._dir = Path(tempfile.mkdtemp(prefix="ministack-"))
        for sub in ("state", "s3", "tmp", "harness"):
            (self._dir / sub).mkdir()
        # As with moto: a port taken between picking and binding makes ministack exit; try anew.
        for _attempt in range(3):
            port = _free_port()
            self.url = f"http://127.0.0.1:{port}"
            self._proc = _proc.spawn([sys.executable, "-m", "local.cfn_engine"],
                                     self._environment(port), self.log_path)
            if self._wait_until_up():
                return self
            _proc.stop(self._proc)
            self._proc = None
        raise RuntimeError(f"ministack did not start; log:\n{self.logs()}")

    def _environment(self, port: int) -> dict[str, str]:
        tmp = self._dir / "tmp"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT),
            "HOME": str(tmp),
            # Where ministack keeps state, S3 objects, pid file and unpacked function code.
            "TMPDIR": str(tmp), "STATE_DIR": str(self._dir / "state"),
            "S3_DATA_DIR": str(self._dir / "s3"),
            "CFN_HARNESS_DIR": str(self._dir / "harness"),
            "GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1", "MINISTACK_HOST": "127.0.0.1",
            "DOCKER_HOST": f"unix://{self._dir}/no-docker.sock",
            "MINISTACK_ACCOUNT_ID": ACCOUNT_ID, "MINISTACK_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
            "LOG_LEVEL": "INFO",
            # Listeners of services nothing here uses, on fixed ports (IoT's MQTT on 8883) that two
            # engines on one machine would fight over.
            "IOT_MTLS_ENABLED": "0", "SFTP_ENABLED": "0",
        }
        # ministack's AWS_ENDPOINT_URL, if set, would override the function's own endpoints: it
        # stays unset, and the function gets per-service ones (AWS_ENDPOINT_URL_IAM) instead.
        env.update(self.function_env)
        env.pop("AWS_ENDPOINT_URL", None)
        # The function answers only on allowed ResponseURLs; this engine's are plain http.
        env["ALLOWED_RESPONSE_URL_PREFIXES"] = f"http://127.0.0.1:{port}{RESPONSE_PATH}"
        return env

    def _wait_until_up(self) -> bool:
        return _proc.wait_until_healthy(self._proc, f"{self.url}/_ministack/health", self._start_timeout_s)

    def stop(self) -> None:
        if self._proc is not None:
            # ministack stops its function processes on SIGTERM; the timeout covers a slow exit.
            _proc.stop(self._proc, timeout_s=10.0)
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "Ministack":
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # what the harness adds

    @property
    def response_url_prefix(self) -> str:
        """The prefix of every ResponseURL this engine hands out (ministack builds it from
        MINISTACK_HOST and GATEWAY_PORT); the function may answer there."""
        return f"{self.url}{RESPONSE_PATH}"

    def journal(self) -> list[dict]:
        """The invocations ('invoke'), responses ('response') and rollback Deletes
        ('rollback-delete') of custom resources so far, in order (see local/cfn_engine.py)."""
        path = self._harness_dir / "journal.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def inject_response_faults(self, faults: list[dict]) -> None:
        """Make the ResponseURL answer HTTP errors: each fault is {"id", "logical_id",
        "request_type", "status", "times"} (see local/cfn_engine.py). [] removes them."""
        path = self._harness_dir / "faults.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(faults))
        tmp.replace(path)

    @property
    def _harness_dir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("Ministack is not started")
        return self._dir / "harness"

    # clients

    def client(self, service: str, *, account: str | None = None, region: str = REGION):
        """One boto3 client per service, account and region, against this engine (path-style
        S3). ministack takes a 12-digit access key as the account id: `account` signs with it;
        None is ACCOUNT_ID's account."""
        if self.url is None:
            raise RuntimeError("Ministack is not started")
        with self._clients_lock:
            client = self._clients.get((service, account, region))
            if client is None:
                config = Config(s3={"addressing_style": "path"}) if service == "s3" else None
                client = boto3.session.Session().client(
                    service, region_name=region, endpoint_url=self.url, config=config,
                    aws_access_key_id=account or "testing", aws_secret_access_key="testing")
                self._clients[(service, account, region)] = client
            return client
