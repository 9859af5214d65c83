from pathlib import Path

import pytest

from regseal.errors import LocalStackError
from regseal.local.stack import StackOptions


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
