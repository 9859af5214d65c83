"""The shipped JSON Schema and the validator agree.

``parse_policy`` is the validator that counts; ``policy.schema.json`` is
generated from its constants for editors. Every document of the corpus must
get the same verdict from both, except the rules the schema cannot express
(documented in ``policy_schema``): ``unmatched`` naming a team that does not
exist, a ``public_key`` that does not load or is a private key, and a
recipient listed twice.
"""

from __future__ import annotations

import copy
import json
from importlib import resources

import jsonschema
import pytest

from regseal.errors import PolicyError
from regseal.policy import parse_policy, policy_schema, schema_json

PEM_PLACEHOLDER = "<pem>"


def good_documents() -> dict[str, dict]:
    base = {
        "version": "2026-12-04.1",
        "teams": {
            "team-a": {
                "repositories": ["team-a/*"],
                "kms_key": "alias/regseal-team-a",
            }
        },
    }
    full = {
        "version": "v2",
        "description": "two teams",
        "unmatched": "team-b",
        "teams": {
            "team-a": {
                "repositories": ["team-a/*", "shared/team-a-?"],
                "kms_key": "arn:aws:kms:eu-west-1:111122223333:key/"
                "1234abcd-12ab-34cd-56ef-1234567890ab",
                "recipients": [{"name": "ops", "public_key": PEM_PLACEHOLDER}],
                "signing_key": "awskms:arn:aws:kms:eu-west-1:111122223333:key/x",
            },
            "team-b": {
                "repositories": ["*"],
                "kms_key": "mrk-" + "0" * 32,
                "recipients": [],
                "signing_key": None,
            },
        },
    }
    return {
        "minimal": base,
        "full": full,
        "unmatched-fail": {**base, "unmatched": "fail"},
        "alias-arn": {
            **base,
            "teams": {
                "t1": {
                    "repositories": ["a.b/c_d-e/*"],
                    "kms_key": "arn:aws:kms:us-east-1:111122223333:alias/x",
                }
            },
        },
    }


def _set(doc: dict, path: tuple, value) -> dict:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()
TEAM = ("teams", "team-a")

# name: (path, value, the field the validator's error must name)
BAD_SHAPES = {
    "not-an-object": None,
    "no-version": (("version",), _DELETE, "policy.version"),
    "blank-version": (("version",), "  ", "policy.version"),
    "version-number": (("version",), 3, "policy.version"),
    "unknown-top-level": (("colour",), "red", "'colour'"),
    "description-number": (("description",), 1, "policy.description"),
    "no-teams": (("teams",), {}, "policy.teams"),
    "teams-list": (("teams",), [], "policy.teams"),
    "unmatched-bad": (("unmatched",), "Skip!", "policy.unmatched"),
    "team-name-upper": (("teams", "Team-A"), {}, "policy.teams.Team-A"),
    "team-unknown-field": ((*TEAM, "owner"), "me", "'owner'"),
    "no-repositories": ((*TEAM, "repositories"), _DELETE, "team-a.repositories"),
    "empty-repositories": ((*TEAM, "repositories"), [], "team-a.repositories"),
    "pattern-class": ((*TEAM, "repositories"), ["team-[ab]/*"], "repositories[0]"),
    "pattern-upper": ((*TEAM, "repositories"), ["Team-A/*"], "repositories[0]"),
    "pattern-empty": ((*TEAM, "repositories"), [""], "repositories[0]"),
    "pattern-number": ((*TEAM, "repositories"), ["ok/*", 7], "repositories[1]"),
    "no-kms-key": ((*TEAM, "kms_key"), _DELETE, "team-a.kms_key"),
    "kms-key-name": ((*TEAM, "kms_key"), "regseal-team-a", "team-a.kms_key"),
    "kms-key-s3-arn": ((*TEAM, "kms_key"), "arn:aws:s3:::bucket", "team-a.kms_key"),
    "recipients-object": ((*TEAM, "recipients"), {}, "team-a.recipients"),
    "recipient-no-name": (
        (*TEAM, "recipients"),
        [{"public_key": PEM_PLACEHOLDER}],
        "recipients[0].name",
    ),
    "recipient-extra": (
        (*TEAM, "recipients"),
        [{"name": "a", "public_key": PEM_PLACEHOLDER, "kid": "1"}],
        "'kid'",
    ),
    "recipient-key-number": (
        (*TEAM, "recipients"),
        [{"name": "a", "public_key": 5}],
        "recipients[0].public_key",
    ),
    "signing-key-scheme": ((*TEAM, "signing_key"), "arn:aws:kms:x", "signing_key"),
}

# Well-formed for the schema; only the validator knows better.
SEMANTIC_ONLY = {
    "unmatched-unknown-team": (("unmatched",), "team-z", "policy.unmatched"),
    "public-key-garbage": (
        (*TEAM, "recipients"),
        [{"name": "a", "public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n"}],
        "recipients[0].public_key",
    ),
    "public-key-is-a-private-key": (
        (*TEAM, "recipients"),
        [
            {
                "name": "a",
                "public_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                "-----END PRIVATE KEY-----\n",
            }
        ],
        "recipients[0].public_key: expected a PEM public key, got a private key",
    ),
    "recipient-name-twice": (
        (*TEAM, "recipients"),
        [
            {"name": "ops", "public_key": PEM_PLACEHOLDER},
            {"name": "ops", "public_key": PEM_PLACEHOLDER},
        ],
        "recipients[1]: the same name as",
    ),
    "recipient-key-twice": (
        (*TEAM, "recipients"),
        [
            {"name": "ops", "public_key": PEM_PLACEHOLDER},
            {"name": "nodes", "public_key": PEM_PLACEHOLDER},
        ],
        "recipients[1]: the same key as",
    ),
}


@pytest.fixture(scope="module")
def validator():
    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture
def pem(rsa_keypair) -> str:
    return rsa_keypair.public_pem.decode()


def _with_pem(doc, pem):
    return json.loads(json.dumps(doc).replace(PEM_PLACEHOLDER, json.dumps(pem)[1:-1]))


def _bad(name, spec, pem):
    if spec is None:
        return ["not", "an", "object"], "policy: expected a JSON object"
    path, value, field = spec
    return _with_pem(_set(good_documents()["minimal"], path, value), pem), field


def test_shipped_schema_file_is_the_generated_schema():
    shipped = resources.files("regseal").joinpath("policy.schema.json").read_bytes()

    assert shipped == schema_json()


@pytest.mark.parametrize("name", sorted(good_documents()))
def test_good_documents_pass_both(validator, pem, name):
    doc = _with_pem(good_documents()[name], pem)

    assert list(validator.iter_errors(doc)) == []
    assert parse_policy(doc).version == doc["version"]


@pytest.mark.parametrize("name", sorted(BAD_SHAPES))
def test_bad_shapes_fail_both_and_the_error_names_the_field(validator, pem, name):
    doc, field = _bad(name, BAD_SHAPES[name], pem)

    assert list(validator.iter_errors(doc)) != []
    with pytest.raises(PolicyError) as raised:
        parse_policy(doc)
    assert field in str(raised.value)


@pytest.mark.parametrize("name", sorted(SEMANTIC_ONLY))
def test_rules_beyond_the_schema_fail_only_the_validator(validator, pem, name):
    doc, field = _bad(name, SEMANTIC_ONLY[name], pem)

    assert list(validator.iter_errors(doc)) == []
    with pytest.raises(PolicyError) as raised:
        parse_policy(doc)
    assert field in str(raised.value)
