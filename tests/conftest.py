"""Fixtures for the integration tests: a local moto server, the Lambda Runtime API
emulator, the real function binary, and `cfn` to send CloudFormation requests.

Every function process talks to IAM through an authorizing proxy (local/authz.py) that evaluates
each request against the execution role of template.yaml, deployed with the parameters the test's
environment implies (ALLOWED_POLICY_ARNS, PERMISSIONS_BOUNDARY_ARN, INLINE_POLICIES) and the
`deployment` fixture's (AllowAdoption, RepairableRoleArns; a module overrides that fixture).
IAM_AUTHZ=tag-on-create (default), create-only or off chooses how.

Behind the authorizer, the same proxy runs the realistic IAM (local/realistic.py): eventual
consistency, answers lost after the write, and the quotas and name rules moto does not enforce,
deterministic from IAM_REALISTIC_SEED (default 1); IAM_REALISTIC=off gives plain moto. A test that
counts exact requests opts out with `@pytest.mark.plain_iam` (on a module: `pytestmark`).

    def test_create(cfn, moto):
        result, response = cfn.send("Create", {"InstanceProfileName": "p", "Tiers": ["WebTier"]})
        assert response["Status"] == "SUCCESS"
        assert "p" in moto.iam_snapshot()["instance_profiles"]
"""

from __future__ import annotations

import itertools
import uuid
import sys

import pytest

from local import authz, realistic
from local.events import make_event
from local.moto import MotoServer
from local.proxy import RecordingProxy
from local.runtime_api import FunctionProcess, InvocationResult, RuntimeApi

ALLOWED_POLICY_ARNS = ",".join([
    "arn:*:iam::aws:policy/AWSElasticBeanstalk*",
    "arn:*:iam::aws:policy/AmazonS3ReadOnlyAccess",
    "arn:*:iam::aws:policy/ReadOnlyAccess",
])
RESPONSE_BUCKET = "cfn-responses"


@pytest.fixture(scope="session")
def moto():
    """The moto server of the session. Most tests want `clean_moto` (or iam, s3,
    function, cfn, which use it) for a wiped state."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def clean_moto(moto):
    """moto with no roles, instance profiles or customer policies (in any partition)."""
    moto.clean()
    return moto


@pytest.fixture
def iam(clean_moto):
    return clean_moto.iam_client()


@pytest.fixture
def s3(clean_moto):
    return clean_moto.s3_client()


@pytest.fixture(scope="session")
def evaluator():
    """The IAM policy evaluator of the session (one Node process), None with IAM_AUTHZ=off."""
    if authz.mode() == "off":
        yield None
        return
    with authz.Evaluator() as running:
        yield running


@pytest.fixture
def deployment() -> dict[str, str]:
    """Template parameters of the function's stack that its environment does not show
    (AllowAdoption, RepairableRoleArns): none by default; a test module overrides this fixture."""
    return {}


@pytest.fixture(scope="session")
def runtime():
    """The Lambda Runtime API emulator of the session."""
    with RuntimeApi() as api:
        yield api


def _dump_logs(process: FunctionProcess) -> None:
    # Printed at teardown: pytest shows it only for a failing test.
    print(f"\n----- function log (pid {process.pid}, {process.log_path}) -----\n{process.logs()}",
          file=sys.stderr)


class FunctionStarter:
    """start_function(extra_env=None, **kwargs) -> FunctionProcess: a started function
    process polling `runtime`. extra_env is merged over the defaults
    (ALLOWED_POLICY_ARNS included; None removes a variable); kwargs go to
    FunctionProcess (binary=, log_path=)."""

    def __init__(self, runtime: RuntimeApi, moto: MotoServer, evaluator: authz.Evaluator | None,
                 deployment: dict[str, str], *, realistic_iam: bool = True):
        self.realistic_iam = realistic_iam and realistic.enabled()
        self.runtime = runtime
        self.moto = moto
        self.evaluator = evaluator
        self.deployment = deployment
        self.started: list[FunctionProcess] = []
        self.authorizers: list[authz.Authorizer] = []
        self.realistic: list[realistic.Realistic] = []
        self._proxies: list[RecordingProxy] = []

    def __call__(self, extra_env: dict | None = None, *, deployment: dict[str, str] | None = None,
                 iam_proxy: RecordingProxy | None = None, **kwargs) -> FunctionProcess:
        env = {"ALLOWED_POLICY_ARNS": ALLOWED_POLICY_ARNS,
               # Propagation reads as in production, but 20 ms apart instead of a second: moto is
               # consistent at once, and the suite creates many profiles.
               "PROPAGATION_INTERVAL_MS": "20",
               # Retries after 50 ms instead of up to a second at first: the fault tests inject
               # hundreds of IAM faults, and the delay between attempts is not what they test.
               "IAM_RETRY_BACKOFF_MS": "50",
               **(extra_env or {})}
        if iam_proxy is not None:
            env["AWS_ENDPOINT_URL_IAM"] = iam_proxy.url
        if self.evaluator is not None or self.realistic_iam:
            env["AWS_ENDPOINT_URL_IAM"] = self._local_iam(env, deployment, iam_proxy)
        process = FunctionProcess(self.runtime, self.moto.url, env, **kwargs)
        self.started.append(process)
        return process.start()

    def running(self) -> list[FunctionProcess]:
        return [p for p in self.started if p.returncode is None]

    def _local_iam(self, env: dict, deployment: dict[str, str] | None,
                   iam_proxy: RecordingProxy | None) -> str:
        """Where the function's IAM requests go: IAM's authorization first, then the realistic IAM,
        then where they were going (moto, or a test's own proxy). With the test's own `iam_proxy`,
        authorization is its gate (before its fault hooks: a lost answer is retried through it) and
        the realistic IAM a proxy in front of it. Returns the URL."""
        authorizer = self._authorizer(env, deployment) if self.evaluator is not None else None
        layer = realistic.Realistic.from_env(self.moto.url) if self.realistic_iam else None
        if layer is not None:
            self.realistic.append(layer)
        if iam_proxy is not None:
            iam_proxy.authorize = authorizer
            if layer is None:
                return iam_proxy.url
            front = RecordingProxy(iam_proxy.url, hooks=[layer]).start()
            self._proxies.append(front)
            return front.url
        upstream = env.get("AWS_ENDPOINT_URL_IAM") or self.moto.url
        proxy = RecordingProxy(upstream, hooks=[layer] if layer is not None else [])
        proxy.authorize = authorizer
        self._proxies.append(proxy.start())
        return proxy.url

    def _authorizer(self, env: dict, deployment: dict[str, str] | None) -> authz.Authorizer:
        parameters = authz.parameters_for(env, **{**self.deployment, **(deployment or {})})
        roles: dict[str, authz.ExecutionRole] = {}

        def role_in(partition: str) -> authz.ExecutionRole:
            if partition not in roles:
                roles[partition] = authz.ExecutionRole.from_template(parameters, partition=partition)
            return roles[partition]

        authorizer = authz.Authorizer(self.evaluator, role_in, self.moto.url,
                                      tag_on_create=authz.mode() == "tag-on-create")
        self.authorizers.append(authorizer)
        return authorizer

    def stop(self) -> None:
        for process in self.started:
            process.stop()
            _dump_logs(process)
        for proxy in self._proxies:
            proxy.stop()

    @property
    def denials(self) -> list[authz.Decision]:
        """Every request the local IAM denied to the test's functions."""
        return [d for a in self.authorizers for d in a.denials]


@pytest.fixture
def start_function(request, runtime, clean_moto, evaluator, deployment):
    """Factory for function processes (see FunctionStarter); all are stopped at
    teardown, and their logs shown if the test fails. `@pytest.mark.plain_iam` turns the
    realistic IAM off for a test."""
    runtime.clear_records()
    plain = request.node.get_closest_marker("plain_iam") is not None
    starter = FunctionStarter(runtime, clean_moto, evaluator, deployment, realistic_iam=not plain)
    yield starter
    starter.stop()
    for layer in starter.realistic:
        if layer.observed:
            print(f"realistic IAM: {dict(layer.observed)}", file=sys.stderr)
    for denial in starter.denials:
        print(f"local IAM denied {denial.action} on {denial.resource} (context {dict(denial.context)})",
              file=sys.stderr)


@pytest.fixture
def proxy(clean_moto):
    """A RecordingProxy in front of moto, for a test's own hooks (a module may override it)."""
    with RecordingProxy(clean_moto.url) as proxy:
        yield proxy


@pytest.fixture
def function(start_function) -> FunctionProcess:
    """One function process with the default test configuration, on a clean moto."""
    return start_function()


class Cfn:
    """Sends CloudFormation requests to the function and fetches what it PUT back.

    It uses the function processes the test started (start_function or function);
    when there are none at the first send, it starts one with the defaults."""

    def __init__(self, runtime: RuntimeApi, moto: MotoServer, starter: FunctionStarter):
        self.runtime = runtime
        self.moto = moto
        self._starter = starter
        self._keys = itertools.count(1)
        # The last request sent, and the S3 key of its response.
        self.last_event: dict | None = None
        self.last_key: str | None = None

    @property
    def function(self) -> FunctionProcess:
        """The first running function process (started now if there is none)."""
        return self.ensure_function()

    def ensure_function(self) -> FunctionProcess:
        running = self._starter.running()
        return running[0] if running else self._starter()

    def response_url(self) -> tuple[str, str]:
        """A fresh presigned ResponseURL and its S3 key."""
        # Unique across tests: clean_moto leaves S3 objects in place.
        key = f"response-{uuid.uuid4().hex[:12]}-{next(self._keys):04d}"
        return self.moto.response_url(RESPONSE_BUCKET, key), key

    def read_response(self, key: str) -> dict | None:
        return self.moto.read_response(RESPONSE_BUCKET, key)

    def send(self, request_type: str, properties: dict, *, timeout_s: float = 30.0,
             **event_kwargs) -> tuple[InvocationResult, dict | None]:
        """Build a request (make_event keywords: physical_id, old_properties,
        request_id, stack_id, logical_id, stringify, service_token), invoke the
        function with deadline now + timeout_s, and return the invocation result with
        the response object PUT to the ResponseURL (None if none arrived)."""
        url, key = self.response_url()
        event = make_event(request_type, properties, response_url=url, **event_kwargs)
        return self.send_event(event, key, timeout_s=timeout_s)

    def send_event(self, event: dict | bytes, key: str | None = None, *,
                   timeout_s: float = 30.0) -> tuple[InvocationResult, dict | None]:
        """Invoke with a prepared event (bytes go verbatim). key is the S3 key its
        ResponseURL points at, if any."""
        self.ensure_function()
        self.last_event = event if isinstance(event, dict) else None
        self.last_key = key
        result = self.runtime.invoke(event, timeout_s=timeout_s)
        return result, (self.read_response(key) if key else None)


@pytest.fixture
def cfn(runtime, clean_moto, start_function) -> Cfn:
    """CloudFormation stand-in; see Cfn. Use start_function first for a function
    with a non-default environment."""
    return Cfn(runtime, clean_moto, start_function)
