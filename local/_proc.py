"""Child processes of the harness (the function, moto): spawn with output to a log
file, stop politely then firmly, and never outlive the Python process that made them."""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
from pathlib import Path

_LIVE: set[subprocess.Popen] = set()


def new_log_path(prefix: str) -> Path:
    """A fresh log file in the temp dir. It is kept after the process ends so that a
    failing test or a person can still read it."""
    fd, path = tempfile.mkstemp(prefix=f"{prefix}-", suffix=".log")
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
