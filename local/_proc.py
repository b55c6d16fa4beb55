"""Child processes of the harness (the function, moto): spawn with output to a log
file, stop politely then firmly, and never outlive the Python process that made them."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

_LIVE: set[subprocess.Popen] = set()


# Logs of the function, moto and ministack processes: under the project, where a person finds them,
# and emptied by the first process of a run that writes one, so that runs do not pile up files.
LOG_DIR = Path(__file__).resolve().parent.parent / "target" / "test-logs"
_log_dir_ready = False


def new_log_path(prefix: str) -> Path:
    """A fresh log file in LOG_DIR. It is kept after the process ends so that a failing test or a
    person can still read it; the next run (the next Python process to ask) replaces the lot."""
    global _log_dir_ready
    if not _log_dir_ready:
        shutil.rmtree(LOG_DIR, ignore_errors=True)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        _log_dir_ready = True
    fd, path = tempfile.mkstemp(prefix=f"{prefix}-", suffix=".log", dir=LOG_DIR)
    os.close(fd)
    return Path(path)


def spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start argv with exactly env, stdout and stderr both appended to log_path."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
        )
    _LIVE.add(proc)
    return proc


def stop(proc: subprocess.Popen, timeout_s: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after timeout_s. Returns the exit status."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode
    finally:
        _LIVE.discard(proc)


@atexit.register
def _stop_all() -> None:
    # A test run that dies half-way (Ctrl-C, pytest-timeout) must not leave moto
    # servers or function processes behind on the machine.
    for proc in list(_LIVE):
        stop(proc, timeout_s=2.0)


def wait_until_healthy(proc: subprocess.Popen, url: str, timeout_s: float) -> bool:
    """Poll `url` until it answers 200 (True), `proc` exits or `timeout_s` passes (False)."""
    limit = time.monotonic() + timeout_s
    while time.monotonic() < limit:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    return False
