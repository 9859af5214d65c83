"""What ``regseal local up`` tells the operator to export for other commands."""

from __future__ import annotations

import shlex
from dataclasses import replace

from regseal.local.cli import environment_line
from tests.unit.local.test_local_state import STATE


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
