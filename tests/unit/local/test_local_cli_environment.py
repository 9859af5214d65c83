"""What ``regseal local up`` tells the operator to export for other commands."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from regseal.local.cli import environment_line
from regseal.local.state import StackState

STATE = StackState(
    registry="127.0.0.1:45001",
    s3_endpoint="http://127.0.0.1:45000",
    bucket="registry",
    region="us-east-1",
    queue_url="http://127.0.0.1:45000/123456789012/regseal-events",
    dlq_url="http://127.0.0.1:45000/123456789012/regseal-events-dlq",
    kms_key_id="0b0e7a1c-0000-4000-8000-000000000001",
    kms_key_alias="alias/regseal-demo",
    policy="s3://registry/regseal/policy.json",
    jwe_private_key=Path("/tmp/w/jwe-private.pem"),
    jwe_public_key=Path("/tmp/w/jwe-public.pem"),
    workdir=Path("/tmp/w"),
    pids={"stack": 10, "moto": 11, "registry": 12},
)


def test_environment_line_names_region_bucket_and_policy_for_other_commands():
    line = environment_line(STATE)

    assert dict(word.split("=", 1) for word in shlex.split(line)) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:45000",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "REGSEAL_BUCKET": "registry",
        "REGSEAL_POLICY": "s3://registry/regseal/policy.json",
    }


def test_environment_line_quotes_a_policy_path_with_spaces():
    state = replace(STATE, policy="file:/tmp/my stack/policy.json")

    line = environment_line(state)

    assert line.endswith("REGSEAL_POLICY='file:/tmp/my stack/policy.json'")
    assert dict(w.split("=", 1) for w in shlex.split(line))["REGSEAL_POLICY"] == (
        "file:/tmp/my stack/policy.json"
    )
