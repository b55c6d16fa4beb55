"""Fixtures of the stack tests (test_stacks.py): the local CloudFormation engine with the function's
stack deployed from template.yaml, and the checks every step of an application stack goes through.
Imported by the test module (they use conftest.py's `moto` and `clean_moto`, whose bodies stay as
the other tests need them).

The function runs inside the engine (its Lambda starts the bootstrap from the deployed zip); its IAM
calls go through a recording proxy to the session's moto, so a test reads both what the function
called and what IAM holds afterwards.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from local import authz
from local.ministack import Ministack
from local.proxy import RecordingProxy
from local.runtime_api import resolve_binary
from local.stack import FUNCTION_STACK, Stacks, Step, deploy_function_stack

# The function stack's AllowedPolicyArns: the Elastic Beanstalk policies and, with a wildcard, the
# S3 ones; AmazonS3NoSuchPolicy matches it but does not exist, which is how a test makes IAM refuse.
ALLOWED_POLICY_ARNS = ("arn:aws:iam::aws:policy/AWSElasticBeanstalk*,"
                       "arn:aws:iam::aws:policy/AmazonS3*")


@dataclass
class Engine:
    ministack: Ministack
    stacks: Stacks
    proxy: RecordingProxy
    function_stack: Step


@pytest.fixture(scope="session")
def engine(moto, evaluator):
    """ministack with the function's stack deployed (CREATE_COMPLETE, else the session fails).
    The function's IAM requests are authorized against the execution role it was deployed with
    (local/authz.py), as in every other integration test."""
    with RecordingProxy(moto.url) as proxy, Ministack({
        "AWS_ENDPOINT_URL_IAM": proxy.url,
        # As the other integration tests run the function (conftest.py): moto is consistent at
        # once, and the delay between IAM retries is not what these tests look at.
        "PROPAGATION_INTERVAL_MS": "20",
        "IAM_RETRY_BACKOFF_MS": "50",
        "RUST_LOG": "info",
    }) as ministack:
        if evaluator is not None:
            role = authz.ExecutionRole.from_template({"AllowedPolicyArns": ALLOWED_POLICY_ARNS})
            proxy.authorize = authz.Authorizer(evaluator, role, moto.url,
                                               tag_on_create=authz.mode() == "tag-on-create")
        stacks = Stacks(ministack)
        try:
            step = deploy_function_stack(stacks, resolve_binary(),
                                         {"AllowedPolicyArns": ALLOWED_POLICY_ARNS})
        except Exception:
            print(f"----- ministack log ({ministack.log_path}) -----\n{ministack.logs()[-20000:]}",
                  file=sys.stderr)
            raise
        assert step.status == "CREATE_COMPLETE", (step.status_reason, step.events, ministack.logs())
        yield Engine(ministack, stacks, proxy, step)


@pytest.fixture
def stacks(engine, clean_moto):
    """The engine's Stacks on a clean moto, with no response faults. At teardown, every response
    the function sent during the test must have passed CloudFormation's checks (a test that makes
    the ResponseURL fail sees 'fault' verdicts, which are the harness's own doing)."""
    engine.ministack.inject_response_faults([])
    engine.proxy.take_records()
    seen = len(engine.ministack.journal())
    yield engine.stacks
    engine.ministack.inject_response_faults([])
    # Printed at teardown: pytest shows it only for a failing test.
    print(f"----- ministack log ({engine.ministack.log_path}), last 20,000 characters -----\n"
          f"{engine.ministack.logs()[-20000:]}", file=sys.stderr)
    refused = [e for e in engine.ministack.journal()[seen:] if e["kind"] == "response"
               and not (e["verdict"] == "valid" or e["verdict"].startswith("fault "))]
    assert not refused, f"responses CloudFormation would refuse: {refused}"


__all__ = ["engine", "stacks", "FUNCTION_STACK", "ALLOWED_POLICY_ARNS"]
