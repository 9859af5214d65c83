import json

import pytest

from regseal.errors import PolicyError
from regseal.local.demo_policy import demo_policy, policy_document

PEM = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"


def test_demo_policy_puts_every_repository_in_the_demo_team():
    assert demo_policy(PEM) == {
        "version": "demo-1",
        "unmatched": "skip",
        "teams": {
            "demo": {
                "repositories": ["*"],
                "kms_key": "alias/regseal-demo",
                "recipients": [{"name": "demo", "public_key": PEM}],
            }
        },
    }


def test_without_a_policy_file_the_demo_policy_is_stored():
    assert json.loads(policy_document(None, PEM)) == demo_policy(PEM)


def test_operator_policy_file_is_stored_unchanged(tmp_path):
    path = tmp_path / "policy.json"
    path.write_bytes(b'{"version": "ops-7",\n "teams": {}}\n')

    assert policy_document(path, PEM) == b'{"version": "ops-7",\n "teams": {}}\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2]", "expected a JSON object in policy file .*, got list"),
        (b"{not json", "expected a readable JSON policy file at "),
    ],
)
def test_unusable_policy_file_is_refused(tmp_path, content, message):
    path = tmp_path / "policy.json"
    path.write_bytes(content)

    with pytest.raises(PolicyError, match=message):
        policy_document(path, PEM)


def test_missing_policy_file_is_refused(tmp_path):
    with pytest.raises(PolicyError, match=r"missing\.json"):
        policy_document(tmp_path / "missing.json", PEM)
