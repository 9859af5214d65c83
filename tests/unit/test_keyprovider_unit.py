"""Pieces of regseal-keyprovider that need no KMS: bytes, arguments, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regseal.errors import FormatError
from regseal.keyprovider import (
    AllowList,
    RefusedError,
    _parser,
    decode_bytes,
    parse_wrap_argument,
)

EXAMPLE_CONFIG = (
    Path(__file__).resolve().parents[2] / "infra" / "ocicrypt-keyprovider.json"
)
ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_bytes_come_as_go_base64_or_rust_integer_arrays():
    assert decode_bytes("e30=", "x") == b"{}"
    assert decode_bytes([123, 125], "x") == b"{}"
    assert decode_bytes([], "x") == b""
    for bad in ("e30", [True], [-1], 5, None):
        with pytest.raises(FormatError):
            decode_bytes(bad, "x")


@pytest.mark.parametrize(
    ("text", "environ", "region"),
    [
        (f"{ARN}?repository=team-a/app", {"AWS_REGION": "us-east-1"}, "eu-west-1"),
        ("alias/a?repository=team-a/app&region=ap-south-1", {}, "ap-south-1"),
        ("alias/a?repository=team-a/app", {"AWS_REGION": "us-west-2"}, "us-west-2"),
        ("alias/a?repository=x", {"AWS_DEFAULT_REGION": "sa-east-1"}, "sa-east-1"),
    ],
)
def test_wrap_argument_region_comes_from_query_arn_or_environment(
    text, environ, region
):
    assert parse_wrap_argument(text, environ).region == region


def test_wrap_argument_without_any_region_is_refused():
    with pytest.raises(FormatError, match="no region for KMS key alias/a"):
        parse_wrap_argument("alias/a?repository=x", {})


def test_allow_list_takes_arguments_over_the_environment():
    environ = {
        "REGSEAL_KEYPROVIDER_ALLOW_REPOSITORIES": "team-b/*",
        "REGSEAL_KEYPROVIDER_ALLOW_KEYS": "k1, k2",
    }

    assert AllowList.from_sources(["team-a/*"], [], environ) == AllowList(
        ("team-a/*",), ("k1", "k2")
    )
    allow = AllowList(("team-a/*",))
    allow.check_repository("k", "team-a/deep/app")
    with pytest.raises(RefusedError, match="repository 'team-ab/app'"):
        allow.check_repository("k", "team-ab/app")


def test_example_config_is_the_cmd_form_for_the_regseal_name_with_valid_args():
    config = json.loads(EXAMPLE_CONFIG.read_text())

    [(name, provider)] = config["key-providers"].items()
    assert name == "regseal"
    assert set(provider) == {"cmd"}
    assert Path(provider["cmd"]["path"]).is_absolute()
    assert Path(provider["cmd"]["path"]).name == "regseal-keyprovider"
    args = _parser().parse_args(provider["cmd"]["args"])
    assert args.allow_repository == ["team-a/*"]
