"""Instruction profile of the function's cold start: the binary under valgrind's callgrind, from
exec to its first poll of /runtime/invocation/next, then stopped.

    .venv/bin/python -m bench.callgrind_cold [--binary target-bench/release/eb-instance-profile] [--out DIR]

Prints the total instruction count and the costliest functions (inclusive and exclusive) with
callgrind_annotate. Instruction counts repeat from run to run, unlike wall-clock times on a shared
machine. No moto is needed: nothing is invoked. The environment is the one the bench gives the
function (SSL_CERT_FILE with the system bundle, as Lambda has it).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from local.runtime_api import REPO_ROOT, FunctionProcess, RuntimeApi


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, default=REPO_ROOT / "target-bench" / "release" / "eb-instance-profile")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "target-bench" / "bench")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / "callgrind.cold.out"
    out_file.unlink(missing_ok=True)

    with RuntimeApi() as api:
        env = FunctionProcess(api, "http://127.0.0.1:9", binary=args.binary).env
        env["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
        before = api.poll_count
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", str(args.binary.resolve())],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        limit = time.monotonic() + 120
        while api.poll_count == before:
            if proc.poll() is not None or time.monotonic() > limit:
                proc.kill()
                print(proc.stderr.read().decode(errors="replace"), file=sys.stderr)
                raise SystemExit("the binary did not poll under valgrind")
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # callgrind writes its profile when the client dies
        _, err = proc.communicate(timeout=60)
    if not out_file.exists():
        print(err.decode(errors="replace"), file=sys.stderr)
        raise SystemExit("callgrind wrote no profile")
    for flag in ("--inclusive=yes", "--inclusive=no"):
        report = subprocess.run(["callgrind_annotate", flag, str(out_file)], capture_output=True, text=True,
                                check=True).stdout
        lines = report.splitlines()
        start = next(i for i, line in enumerate(lines) if "file:function" in line) + 2
        print(f"--- {flag}")
        print("\n".join(l for l in lines[:start] if "PROGRAM TOTALS" in l))
        print("\n".join(l for l in lines[start:start + args.top] if l.strip()))
    print(f"profile: {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
