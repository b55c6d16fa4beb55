"""The benchmark driver behind scripts/bench: this function's release binary and the Python peer
(bench/peer, crhelper + boto3 under awslambdaric), side by side, behind one local Lambda Runtime
API and one moto server.

    .venv/bin/python -m bench.run --binary target-bench/release/eb-instance-profile \
        --peer-python .venv-bench/bin/python [--zip arm64=PATH --zip x86_64=PATH] [--docs docs/performance.md]

The wiring, for both implementations alike:

    function --IAM (AWS_ENDPOINT_URL_IAM)--> RecordingProxy(+25 ms per request) --> moto
    function --response PUT (ResponseURL)--> RecordingProxy(https, no delay)     --> moto (S3)

The response proxy speaks https because crhelper PUTs only over https; both processes get the
same CA bundle (the system's plus a throw-away local CA) through SSL_CERT_FILE.

Measured (times are time.monotonic() of this process: the Runtime API, both proxies and the
spawns all run here):
  cold start   spawn -> first GET /runtime/invocation/next, median of N spawns (after 1 unmeasured)
  lifecycle    Create, Update in place, Delete, each in a fresh process (spawned and polling before
               the Create is handed out): event handed out -> response PUT fully received by the
               proxy; IAM requests and sequential IAM rounds of each; VmHWM after the Delete
  warm run     N events (Create, Update, Delete, ...) in one process, no added IAM latency:
               latency and VmRSS of the first and last events (function only)
  packages     sizes of the zips given with --zip, and of the peer's zip (bench/package_peer.py)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from local.events import make_event
from local.moto import MotoServer
from local.proxy import RecordingProxy, count_rounds, group_rounds, per_service
from local.runtime_api import REPO_ROOT, FunctionProcess, RuntimeApi

BUCKET = "cfn-responses"
PEER_DIR = REPO_ROOT / "bench" / "peer"
ALLOWED_POLICY_ARNS = "arn:*:iam::aws:policy/AWSElasticBeanstalk*,arn:*:iam::aws:policy/AmazonS3ReadOnlyAccess"
S3_READ = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
DOCS_BEGIN = "<!-- bench:begin (written by scripts/bench) -->"
DOCS_END = "<!-- bench:end -->"
KINDS = ("Create", "Update", "Delete")


def lifecycle_properties(name: str) -> dict[str, dict]:
    """Create: the three Elastic Beanstalk policies (the default Tiers) and a tag. Update in place:
    one more managed policy and one more tag. Delete: everything."""
    create = {"InstanceProfileName": name, "Tags": [{"Key": "team", "Value": "web"}]}
    update = {"InstanceProfileName": name, "ManagedPolicyArns": [S3_READ],
              "Tags": [{"Key": "team", "Value": "web"}, {"Key": "env", "Value": "prod"}]}
    return {"Create": create, "Update": update, "Delete": update}


@dataclass
class Impl:
    name: str
    binary: Path
    args: list[str]
    env: dict[str, str]


# Actions that change IAM state; every other request the function makes is a Get or a List.
MUTATING_PREFIXES = ("Create", "Delete", "Attach", "Detach", "Put", "Add", "Remove", "Tag", "Untag", "Update")
# The function's default PROPAGATION_READS: the reads that confirm a new profile before SUCCESS.
PROPAGATION_READS = 3


def _mutating_rounds(invocation) -> int:
    """Rounds of an invocation with at least one request that changes IAM."""
    return sum(1 for group in invocation.rounds if any(a.startswith(MUTATING_PREFIXES) for a in group))


@dataclass
class Invocation:
    kind: str
    latency_ms: float
    iam_requests: int
    iam_rounds: int
    rounds: list[list[str]]
    status: str


@dataclass
class Results:
    cold_ms: dict[str, list[float]] = field(default_factory=dict)
    lifecycles: dict[str, list[dict[str, Invocation]]] = field(default_factory=dict)
    peak_kb: dict[str, list[int]] = field(default_factory=dict)
    warm: dict[str, dict] = field(default_factory=dict)
    zips: dict[str, int] = field(default_factory=dict)


def proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def make_tls(directory: Path) -> tuple[str, str, str]:
    """A local CA and a certificate for 127.0.0.1 signed by it; returns (cert, key, bundle) where
    bundle is the system's CA bundle plus the local CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(hours=1), not_valid_after=now + datetime.timedelta(days=2))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench local CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    cert_path, key_path, bundle_path = directory / "cert.pem", directory / "key.pem", directory / "bundle.pem"
    cert_path.write_bytes(cert.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    system = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    bundle_path.write_bytes(Path(system).read_bytes() + b"\n" + ca.public_bytes(pem))
    return str(cert_path), str(key_path), str(bundle_path)


class Bench:
    def __init__(self, moto: MotoServer, api: RuntimeApi, iam_proxy: RecordingProxy,
                 s3_proxy: RecordingProxy, impls: list[Impl], logs: Path):
        self.moto, self.api, self.iam_proxy, self.s3_proxy = moto, api, iam_proxy, s3_proxy
        self.impls = impls
        self.logs = logs
        self._keys = 0
        # One S3 client for the whole run (moto.response_url makes a new one per call, which costs
        # more wall time than the invocation itself in the warm run).
        self.s3 = moto.s3_client()
        moto.response_url(BUCKET, "bench-bucket")  # creates the bucket

    def spawn(self, impl: Impl, tag: str) -> FunctionProcess:
        process = FunctionProcess(self.api, self.moto.url, impl.env, binary=impl.binary, args=impl.args,
                                  log_path=self.logs / f"{impl.name}-{tag}.log")
        return process.start(wait_ready=True, ready_timeout_s=60)

    # cold start

    def cold_starts(self, impl: Impl, i: int) -> float:
        process = self.spawn(impl, "cold")
        try:
            return (process.ready_at - process.spawned_at) * 1000
        finally:
            process.stop()

    # one invocation

    def response_url(self) -> tuple[str, str]:
        self._keys += 1
        key = f"bench-{self._keys:06d}"
        url = urllib.parse.urlsplit(self.s3.generate_presigned_url(
            "put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=7200))
        proxy = urllib.parse.urlsplit(self.s3_proxy.url)
        return urllib.parse.urlunsplit((proxy.scheme, proxy.netloc, url.path, url.query, "")), key

    def invoke(self, kind: str, props: dict, physical_id: str | None, old: dict | None) -> Invocation:
        url, key = self.response_url()
        event = make_event(kind, props, response_url=url, physical_id=physical_id, old_properties=old)
        self.iam_proxy.take_records()
        self.s3_proxy.take_records()
        result = self.api.invoke(event, timeout_s=60)
        if result.kind != "response":
            raise RuntimeError(f"{kind}: invocation ended as {result.kind}: {result.body[:500]!r}")
        puts = [r for r in self.s3_proxy.take_records() if r.method == "PUT" and r.path.endswith("/" + key)]
        if len(puts) != 1:
            raise RuntimeError(f"{kind}: expected one response PUT, saw {len(puts)}")
        response = json.loads(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        if not response or response.get("Status") != "SUCCESS":
            raise RuntimeError(f"{kind}: response {response}")
        iam = [r for r in self.iam_proxy.take_records()]
        for r in iam:
            if r.finished is None or r.started > puts[0].received:
                raise RuntimeError(f"{kind}: IAM request {r.action} still running or after the response")
        rounds = [[r.action or r.path for r in group] for group in group_rounds(iam)]
        return Invocation(kind, (puts[0].received - result.delivered_at) * 1000, len(iam), count_rounds(iam),
                          rounds, response["Status"])

    # lifecycles

    def lifecycle(self, impl: Impl, i: int) -> tuple[dict[str, Invocation], int]:
        name = f"bench-{impl.name}-{i:02d}"
        props = lifecycle_properties(name)
        process = self.spawn(impl, f"lifecycle-{i:02d}")
        try:
            out = {"Create": self.invoke("Create", props["Create"], None, None)}
            out["Update"] = self.invoke("Update", props["Update"], name, props["Create"])
            out["Delete"] = self.invoke("Delete", props["Delete"], name, None)
            peak = proc_status_kb(process.pid, "VmHWM")
        finally:
            process.stop()
        return out, peak

    # warm run

    def warm_run(self, impl: Impl, events: int) -> dict:
        process = self.spawn(impl, "warm")
        latencies, rss = [], []
        try:
            for n in range(events):
                cycle, step = divmod(n, 3)
                name = f"bench-warm-{impl.name}-{cycle:04d}"
                props = lifecycle_properties(name)
                kind = KINDS[step]
                inv = self.invoke(kind, props[kind], None if kind == "Create" else name,
                                  props["Create"] if kind == "Update" else None)
                latencies.append(inv.latency_ms)
                rss.append(proc_status_kb(process.pid, "VmRSS"))
            if events % 3:  # leave nothing behind
                cycle = events // 3
                name = f"bench-warm-{impl.name}-{cycle:04d}"
                self.invoke("Delete", lifecycle_properties(name)["Delete"], name, None)
            hwm = proc_status_kb(process.pid, "VmHWM")
        finally:
            process.stop()
        return {"latency_ms": latencies, "rss_kb": rss, "hwm_kb": hwm}


# reporting

def med(values):
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(l for l in f if l.startswith("MemTotal")).split()[1])

    def out(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
            "kernel": platform.release(), "rustc": out("rustc", "-V"),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def render(res: Results, args, mach: dict, impls: dict[str, Impl], peer_python_version: str) -> tuple[str, list[str]]:
    fn, peer = "function", "peer"
    rows: list[tuple[str, str, str, str]] = []
    misses: list[str] = []

    def ratio(a, b):
        return f"{b / a:.1f}x" if a else "-"

    cold_f, cold_p = med(res.cold_ms[fn]), med(res.cold_ms[peer])
    rows.append((f"Cold start, spawn to first poll (ms, median of {args.spawns})",
                 f"{cold_f:.1f}", f"{cold_p:.1f}", ratio(cold_f, cold_p)))
    for kind in KINDS:
        lf = med([lc[kind].latency_ms for lc in res.lifecycles[fn]])
        lp = med([lc[kind].latency_ms for lc in res.lifecycles[peer]])
        rows.append((f"{kind} latency, event to response PUT (ms, median of {args.lifecycles})",
                     f"{lf:.1f}", f"{lp:.1f}", ratio(lf, lp)))
    one = res.lifecycles.get("function-1read")
    if one:
        lo = med([lc["Create"].latency_ms for lc in one])
        lp = med([lc["Create"].latency_ms for lc in res.lifecycles[peer]])
        rows.append((f"Create latency, function with PROPAGATION_READS=1 (ms, median of {args.lifecycles})",
                     f"{lo:.1f}", f"{lp:.1f}", ratio(lo, lp)))
    for kind in KINDS:
        def rr(impl):
            reqs = sorted({lc[kind].iam_requests for lc in res.lifecycles[impl]})
            rnds = sorted({lc[kind].iam_rounds for lc in res.lifecycles[impl]})
            show = lambda v: str(v[0]) if len(v) == 1 else f"{v[0]}-{v[-1]}"
            return show(reqs), show(rnds), med([lc[kind].iam_rounds for lc in res.lifecycles[impl]])
        fq, fr, frm = rr(fn)
        pq, pr, prm = rr(peer)
        rows.append((f"{kind}: IAM requests / sequential rounds", f"{fq} / {fr}", f"{pq} / {pr}",
                     ratio(frm, prm) + " rounds"))
        if kind == "Create":
            # The goal: at most 2 rounds that change IAM, plus the propagation reads (3 by
            # default, a product decision: a profile EC2 rejects costs more than two seconds).
            mut = max(_mutating_rounds(lc[kind]) for lc in res.lifecycles[fn])
            reads = max(len(lc[kind].rounds) - _mutating_rounds(lc[kind]) for lc in res.lifecycles[fn])
            if mut > 2:
                misses.append(f"Create takes {mut} mutating IAM rounds (goal: at most 2, plus the propagation reads)")
            if reads > PROPAGATION_READS:
                misses.append(f"Create takes {reads} read rounds (goal: the {PROPAGATION_READS} propagation reads)")
        elif frm > 3:
            misses.append(f"{kind} takes {fr} sequential IAM rounds (goal: at most 3)")
    if one:
        reqs = sorted({lc["Create"].iam_requests for lc in one})
        rnds = sorted({lc["Create"].iam_rounds for lc in one})
        rows.append(("Create with PROPAGATION_READS=1: IAM requests / sequential rounds",
                     f"{'-'.join(map(str, sorted({reqs[0], reqs[-1]})))} / {'-'.join(map(str, sorted({rnds[0], rnds[-1]})))}",
                     "", ""))
    pk_f, pk_p = med(res.peak_kb[fn]) / 1024, med(res.peak_kb[peer]) / 1024
    rows.append((f"Peak RSS over a lifecycle, VmHWM (MiB, median of {args.lifecycles})",
                 f"{pk_f:.1f}", f"{pk_p:.1f}", ratio(pk_f, pk_p)))
    zf = res.zips
    for arch in ("arm64", "x86_64"):
        if arch in zf:
            rows.append((f"Deployment zip, {arch} (bytes)", f"{zf[arch]:,}",
                         f"{zf['peer-crhelper.zip']:,} (crhelper) / {zf['peer-crhelper-boto3.zip']:,} (+boto3)",
                         f"{zf['peer-crhelper.zip'] / zf[arch]:.3f}x / {zf['peer-crhelper-boto3.zip'] / zf[arch]:.1f}x"))
    if "binary" in zf:
        rows.append(("Release binary, host x86_64, as built (bytes)", f"{zf['binary']:,}", "-", "-"))
    warm = res.warm.get(fn)
    if warm:
        lat, rss = warm["latency_ms"], warm["rss_kb"]
        n = len(lat)
        rows.append((f"Warm process (PROPAGATION_READS=1), {n} events, no added latency: "
                     f"latency events 1-10 / {n - 9}-{n} (ms, median)",
                     f"{med(lat[:10]):.1f} / {med(lat[-10:]):.1f}", "-", "-"))
        rows.append((f"Warm process: latency events 11-100 / {n - 89}-{n} (ms, median)",
                     f"{med(lat[10:100]):.1f} / {med(lat[-90:]):.1f}", "-", "-"))
        rows.append((f"Warm process: VmRSS after event 10 / {n} (MiB); VmHWM (MiB)",
                     f"{rss[min(9, n - 1)] / 1024:.1f} / {rss[-1] / 1024:.1f}; {warm['hwm_kb'] / 1024:.1f}", "-", "-"))

    # the performance goals (docs/performance.md)
    if not (cold_f < 15):
        misses.append(f"cold start {cold_f:.1f} ms (goal: under 15 ms)")
    if not (cold_p / cold_f >= 20):
        misses.append(f"cold start only {cold_p / cold_f:.1f}x faster than the peer (goal: 20x)")
    if not (pk_f <= 24):
        misses.append(f"peak memory {pk_f:.1f} MiB (goal: at most 24 MB)")
    if not (pk_p / pk_f >= 3):
        misses.append(f"peak memory only {pk_p / pk_f:.1f}x less than the peer (goal: 3x)")
    if "arm64" in zf and zf["arm64"] > 4 * 1024 * 1024:
        misses.append(f"arm64 zip {zf['arm64']:,} bytes (goal: at most 4 MB = 4,194,304)")
    if warm:
        n = len(lat)
        first, last = med(lat[10:100]), med(lat[-90:])
        if last > first * 1.2:
            misses.append(f"warm latency grows: {first:.1f} ms (events 11-100) -> {last:.1f} ms (last 90)")
        if rss[-1] > rss[min(9, n - 1)] * 1.2 + 1024:
            misses.append(f"warm RSS grows: {rss[min(9, n - 1)] / 1024:.1f} MiB -> {rss[-1] / 1024:.1f} MiB")

    lines = ["| Metric | This function | Peer (crhelper + boto3) | Peer / function |",
             "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines.append("")
    lines.append("IAM rounds of one lifecycle (requests in one round overlapped in time):")
    lines.append("")
    for impl, kinds in ((fn, KINDS), ("function-1read", ("Create",)), (peer, KINDS)):
        if impl not in res.lifecycles:
            continue
        lc = res.lifecycles[impl][-1]
        for kind in kinds:
            shown = " → ".join(" + ".join(_collapse(group)) for group in lc[kind].rounds)
            label = "function (PROPAGATION_READS=1)" if impl == "function-1read" else impl
            lines.append(f"- {label}, {kind}: {shown}")
    lines.append("")
    lines.append(f"Performance goals missed: {len(misses)}" + ("" if misses else " (none)"))
    lines += [f"- {m}" for m in misses]
    lines.append("")
    lines.append(f"Machine: {mach['nproc']} cores, {mach['cpu']}, {mach['memory']} RAM, Linux {mach['kernel']}, "
                 f"{mach['rustc']}, peer on Python {peer_python_version}; load average at start {mach['load']} "
                 f"(the machine is shared).")
    lines.append(f"Run: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {args.revision}, "
                 f"IAM latency added {args.iam_latency_ms:g} ms per request, {args.spawns} spawns, "
                 f"{args.lifecycles} lifecycles, {args.events} warm events.")
    return "\n".join(lines), misses


def _collapse(actions: list[str]) -> list[str]:
    counts = Counter(actions)
    seen, out = set(), []
    for a in actions:
        if a not in seen:
            seen.add(a)
            out.append(a if counts[a] == 1 else f"{a}×{counts[a]}")
    return out


def update_docs(path: Path, block: str, command: str) -> None:
    text = path.read_text() if path.exists() else f"# Performance\n\n{DOCS_BEGIN}\n{DOCS_END}\n"
    if DOCS_BEGIN not in text or DOCS_END not in text:
        text += f"\n{DOCS_BEGIN}\n{DOCS_END}\n"
    head, rest = text.split(DOCS_BEGIN, 1)
    _, tail = rest.split(DOCS_END, 1)
    body = f"{DOCS_BEGIN}\n\n```sh\n{command}\n```\n\n{block}\n\n{DOCS_END}"
    path.write_text(head + body + tail)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, type=Path)
    parser.add_argument("--peer-python", required=True, type=Path)
    parser.add_argument("--spawns", type=int, default=20)
    parser.add_argument("--lifecycles", type=int, default=10)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--iam-latency-ms", type=float, default=25.0)
    parser.add_argument("--zip", action="append", default=[], metavar="ARCH=PATH")
    parser.add_argument("--docs", type=Path, help="replace the bench block of this Markdown file")
    parser.add_argument("--command", default="scripts/bench", help="the command shown in --docs")
    parser.add_argument("--revision", default="unknown", help="what was built (commit), shown in the output")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "target-bench" / "bench")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    mach = machine()
    res = Results()
    for item in args.zip:
        arch, _, path = item.partition("=")
        res.zips[arch] = Path(path).stat().st_size
    res.zips["binary"] = args.binary.stat().st_size
    res.zips.update(json.loads(subprocess.run(
        [str(args.peer_python), str(REPO_ROOT / "bench" / "package_peer.py"), str(args.out)],
        check=True, capture_output=True, text=True).stdout))
    peer_version = subprocess.run([str(args.peer_python), "-c", "import platform; print(platform.python_version())"],
                                  check=True, capture_output=True, text=True).stdout.strip()

    tls_dir = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    cert, key, bundle = make_tls(tls_dir)
    t0 = time.monotonic()
    print(f"bench: logs in {logs}", flush=True)
    with MotoServer() as moto, RuntimeApi() as api, \
            RecordingProxy(moto.url, latency=per_service({"iam": args.iam_latency_ms / 1000})) as iam_proxy, \
            RecordingProxy(moto.url, tls=(cert, key)) as s3_proxy:
        # AWS_DEFAULT_REGION: Lambda sets it beside AWS_REGION, and boto3 reads only it.
        common = {"AWS_ENDPOINT_URL_IAM": iam_proxy.url, "SSL_CERT_FILE": bundle, "AWS_DEFAULT_REGION": "us-east-1",
                  "ALLOWED_RESPONSE_URL_PREFIXES": s3_proxy.url + "/"}
        function_env = {**common, "ALLOWED_POLICY_ARNS": ALLOWED_POLICY_ARNS}
        impls = [
            Impl("function", args.binary.resolve(), [], function_env),
            Impl("peer", args.peer_python.absolute(), ["-m", "awslambdaric", "app.handler"],
                 {**common, "PYTHONPATH": str(PEER_DIR), "LAMBDA_TASK_ROOT": str(PEER_DIR), "_HANDLER": "app.handler"}),
        ]
        # The function confirms a new profile with PROPAGATION_READS consecutive reads a second
        # apart (default 3); the peer reads once (boto3's waiter). With one read the function does
        # the same as the peer: measured besides the default, and used for the warm run.
        one_read = Impl("function-1read", args.binary.resolve(), [], {**function_env, "PROPAGATION_READS": "1"})
        bench = Bench(moto, api, iam_proxy, s3_proxy, impls, logs)

        print(f"bench: cold start, 1 + {args.spawns} spawns each", flush=True)
        for impl in impls:
            bench.cold_starts(impl, -1)  # unmeasured: page cache, .pyc files
            res.cold_ms[impl.name] = []
        for i in range(args.spawns):
            for impl in impls:
                res.cold_ms[impl.name].append(bench.cold_starts(impl, i))

        print(f"bench: {args.lifecycles} lifecycles each, {args.iam_latency_ms:g} ms per IAM request", flush=True)
        for impl in impls + [one_read]:
            res.lifecycles[impl.name], res.peak_kb[impl.name] = [], []
        for i in range(args.lifecycles):
            for impl in impls + [one_read]:
                lc, peak = bench.lifecycle(impl, i)
                res.lifecycles[impl.name].append(lc)
                res.peak_kb[impl.name].append(peak)

        if args.events:
            print(f"bench: {args.events} events in one warm function process, no added latency", flush=True)
            iam_proxy.latency = 0.0
            res.warm["function"] = bench.warm_run(one_read, args.events)

    block, misses = render(res, args, mach, {i.name: i for i in impls}, peer_version)
    print()
    print(block)
    print(f"\nbench: {time.monotonic() - t0:.0f} s of measuring")
    raw = {
        "machine": mach, "zips": res.zips, "cold_ms": res.cold_ms, "peak_kb": res.peak_kb,
        "lifecycles": {k: [{kind: inv.__dict__ for kind, inv in lc.items()} for lc in v] for k, v in res.lifecycles.items()},
        "warm": res.warm,
    }
    (args.out / "results.json").write_text(json.dumps(raw, indent=1))
    (args.out / "results.md").write_text(block + "\n")
    if args.docs:
        update_docs(args.docs, block, args.command)
        print(f"bench: wrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
