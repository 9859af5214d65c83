import json
from pathlib import Path

import pytest

from regseal.errors import LocalStackError
from regseal.local.stack import Stack, StackOptions


@pytest.mark.parametrize(
    ("write_back", "auth", "expected"),
    [
        ("storage", None, "none"),
        ("api", None, "htpasswd"),
        ("api", "token", "token"),
        ("api", "none", "none"),
        ("storage", "htpasswd", "htpasswd"),
    ],
)
def test_registry_auth_defaults_to_htpasswd_in_api_mode(write_back, auth, expected):
    options = StackOptions(Path("s.json"), write_back=write_back, registry_auth=auth)

    assert options.auth_kind == expected


def test_unknown_mode_and_auth_are_refused():
    with pytest.raises(LocalStackError, match="write_back: expected one of"):
        StackOptions(Path("s.json"), write_back="harbor")
    with pytest.raises(LocalStackError, match="registry_auth: expected one of"):
        StackOptions(Path("s.json"), registry_auth="oauth")


def test_tags_in_database_needs_api_mode():
    assert StackOptions(Path("s.json"), write_back="api", tags_in_database=True)
    with pytest.raises(LocalStackError, match="tags_in_database: expected write_back"):
        StackOptions(Path("s.json"), tags_in_database=True)


def test_a_policy_file_the_stack_cannot_use_is_named_with_its_option(tmp_path):
    policy = tmp_path / "badkms.json"
    document = {
        "version": "bad-1",
        "teams": {"demo": {"repositories": ["*"], "kms_key": "not a key"}},
    }
    policy.write_text(json.dumps(document))
    stack = Stack(StackOptions(tmp_path / "s.json", policy_file=policy))

    with pytest.raises(LocalStackError) as refused:
        stack._tuf_teams(policy.read_bytes())

    message = str(refused.value)
    assert message.startswith(f"--policy {policy}: ")
    assert "policy.teams.demo.kms_key: expected a KMS key id" in message
