"""The sealing policy: which team owns a repository, and its keys.

A policy is a JSON document::

    {"version": "2026-12-04.1",
     "unmatched": "skip",
     "teams": {
       "team-a": {"repositories": ["team-a/*"],
                  "kms_key": "alias/regseal-team-a",
                  "recipients": [{"name": "ops", "public_key": "-----BEGIN ..."}],
                  "signing_key": "awskms:arn:aws:kms:..."}}}

- ``repositories`` are globs matched against the whole repository name;
  ``*`` matches any characters *including* "/" and ``?`` one character, as
  KMS ``StringLike`` does, so one pattern means the same in the policy and
  in a key policy. Nothing else is special: ``[...]`` classes, which KMS
  does not know, are refused.
- Teams are tried in document order; the first match wins.
- ``unmatched`` says what happens to a repository no team claims: "skip"
  (leave it plaintext, log it), "fail" (an error: the event goes to the
  dead-letter queue) or the name of a team that takes it.
- ``version`` is recorded in every sealed manifest.

The policy lives outside the code (S3 object, SSM parameter or file) so that
operators change it without a deployment; :class:`PolicySource` caches it,
:func:`write_location` stores a new one. :func:`policy_schema` describes the
same rules as a JSON Schema for editors (shipped as ``policy.schema.json``);
:func:`parse_policy` stays the validator that counts.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regseal import jwe
from regseal.errors import KeyWrapError, PolicyError

if TYPE_CHECKING:
    from regseal.storage import ObjectStore

logger = logging.getLogger(__name__)

UNMATCHED_SKIP = "skip"
UNMATCHED_FAIL = "fail"
# Each pattern is spelled once, without anchors, and used both by the
# validator (fullmatch) and by the JSON Schema (^(?:…)$).
TEAM_NAME_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
KMS_KEY_PATTERN = (
    r"(alias/[A-Za-z0-9/_-]+|arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/\S+"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
)
REPOSITORY_PATTERN = r"[a-z0-9._/*?-]+"
SIGNING_KEY_PREFIX = "awskms:"
POLICY_FIELDS = ("version", "description", "unmatched", "teams")
TEAM_FIELDS = ("repositories", "kms_key", "recipients", "signing_key")
RECIPIENT_FIELDS = ("name", "public_key")
_TEAM_NAME = re.compile(TEAM_NAME_PATTERN)
_KMS_KEY = re.compile(KMS_KEY_PATTERN)
_REPOSITORY = re.compile(REPOSITORY_PATTERN)


@dataclass(frozen=True)
class Recipient:
    """A JWE recipient: a named public key (PEM)."""

    name: str
    public_key: str


@dataclass(frozen=True)
class Team:
    """A team and the keys its images are sealed for."""

    name: str
    repositories: tuple[str, ...]
    kms_key: str
    recipients: tuple[Recipient, ...]
    signing_key: str | None = None

    def claims(self, repository: str) -> bool:
        return any(fnmatch.fnmatchcase(repository, p) for p in self.repositories)


@dataclass(frozen=True)
class Policy:
    """A validated policy document."""

    version: str
    teams: tuple[Team, ...]
    unmatched: str = UNMATCHED_SKIP

    def team_for(self, repository: str) -> Team | None:
        """The team that owns ``repository``; None means leave it alone.

        Raises:
            PolicyError: no team claims it and ``unmatched`` is "fail".
        """
        for team in self.teams:
            if team.claims(repository):
                return team
        if self.unmatched == UNMATCHED_SKIP:
            return None
        if self.unmatched == UNMATCHED_FAIL:
            raise PolicyError(
                f"repository {repository!r} matches no team of policy "
                f"{self.version!r} and 'unmatched' is 'fail'"
            )
        return self.team(self.unmatched)

    def team(self, name: str) -> Team:
        for team in self.teams:
            if team.name == name:
                return team
        raise PolicyError(f"policy {self.version!r} has no team {name!r}")


def parse_policy(doc: Any) -> Policy:
    """Validate a policy document.

    Raises:
        PolicyError: naming the first bad field, e.g.
            ``policy.teams.team-a.kms_key: expected ...``.
    """
    if not isinstance(doc, Mapping):
        raise PolicyError("policy: expected a JSON object")
    _only(doc, set(POLICY_FIELDS), "policy")
    version = doc.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PolicyError(
            f"policy.version: expected a non-empty string, got {version!r}"
        )
    if "description" in doc and not isinstance(doc["description"], str):
        raise PolicyError("policy.description: expected a string")
    teams_doc = doc.get("teams")
    if not isinstance(teams_doc, Mapping) or not teams_doc:
        raise PolicyError("policy.teams: expected an object with at least one team")
    teams = tuple(_team(name, body) for name, body in teams_doc.items())
    unmatched = doc.get("unmatched", UNMATCHED_SKIP)
    names = {t.name for t in teams}
    if unmatched not in {UNMATCHED_SKIP, UNMATCHED_FAIL, *names}:
        raise PolicyError(
            "policy.unmatched: expected 'skip', 'fail' or a team name "
            f"({', '.join(sorted(names))}), got {unmatched!r}"
        )
    return Policy(version, teams, unmatched)


def _team(name: Any, body: Any) -> Team:
    where = f"policy.teams.{name}"
    if not isinstance(name, str) or not _TEAM_NAME.fullmatch(name):
        raise PolicyError(
            f"{where}: expected a team name of lowercase letters, digits and '-'"
        )
    if not isinstance(body, Mapping):
        raise PolicyError(f"{where}: expected an object")
    _only(body, set(TEAM_FIELDS), where)
    patterns = body.get("repositories")
    if not isinstance(patterns, list) or not patterns:
        raise PolicyError(
            f"{where}.repositories: expected a non-empty list of glob patterns"
        )
    for position, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not _REPOSITORY.fullmatch(pattern):
            raise PolicyError(
                f"{where}.repositories[{position}]: expected a glob of lowercase "
                "letters, digits, '.', '_', '-', '/', '*' and '?' (KMS StringLike "
                f"has no [...] classes), got {pattern!r}"
            )
    kms_key = body.get("kms_key")
    if not isinstance(kms_key, str) or not _KMS_KEY.fullmatch(kms_key):
        raise PolicyError(
            f"{where}.kms_key: expected a KMS key id, key ARN, alias ARN or "
            f"alias/NAME, got {kms_key!r}"
        )
    recipients_doc = body.get("recipients", [])
    if not isinstance(recipients_doc, list):
        raise PolicyError(f"{where}.recipients: expected a list")
    recipients = tuple(
        _recipient(r, f"{where}.recipients[{i}]") for i, r in enumerate(recipients_doc)
    )
    _no_repeated_recipient(recipients, f"{where}.recipients")
    signing_key = body.get("signing_key")
    if signing_key is not None and (
        not isinstance(signing_key, str)
        or not signing_key.startswith(SIGNING_KEY_PREFIX)
    ):
        raise PolicyError(
            f"{where}.signing_key: expected an 'awskms:<key>' URI, got {signing_key!r}"
        )
    return Team(name, tuple(patterns), kms_key, recipients, signing_key)


def _recipient(doc: Any, where: str) -> Recipient:
    if not isinstance(doc, Mapping):
        raise PolicyError(f"{where}: expected an object with 'name' and 'public_key'")
    _only(doc, set(RECIPIENT_FIELDS), where)
    name, pem = doc.get("name"), doc.get("public_key")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{where}.name: expected a non-empty string")
    if not isinstance(pem, str):
        raise PolicyError(f"{where}.public_key: expected a PEM public key string")
    if "PRIVATE KEY-----" in pem:
        # Refused before anything parses it: a policy is not a place for it.
        raise PolicyError(
            f"{where}.public_key: expected a PEM public key, got a private key; "
            "put the recipient's public key here (e.g. openssl pkey -pubout) and "
            "keep the private key with the recipient"
        )
    try:
        jwe.Recipient.from_pem(pem.encode(), source=where)
    except KeyWrapError as exc:
        raise PolicyError(f"{where}.public_key: {exc}") from None
    return Recipient(name, pem)


def _no_repeated_recipient(recipients: tuple[Recipient, ...], where: str) -> None:
    names: dict[str, int] = {}
    keys: dict[str, int] = {}
    for index, recipient in enumerate(recipients):
        key = "".join(recipient.public_key.split())
        for seen, value, what in ((names, recipient.name, "name"), (keys, key, "key")):
            if value in seen:
                raise PolicyError(
                    f"{where}[{index}]: the same {what} as {where}[{seen[value]}]; "
                    "expected each recipient once"
                )
            seen[value] = index


def _only(doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed))
        raise PolicyError(
            f"{where}: unknown field {unknown[0]!r} (expected {expected})"
        )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a key given twice in one object.

    json.loads would keep the last value silently, so an edit that adds a
    second ``teams`` or team entry would hide the first one.
    """
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise PolicyError(
                f"duplicate key {key!r}: expected each key once per JSON object"
            )
        document[key] = value
    return document


def load_policy_json(data: bytes, location: str) -> Any:
    """The JSON document in ``data``, refusing duplicate keys.

    Raises:
        PolicyError: ``data`` is not JSON, or an object repeats a key.
    """
    try:
        return json.loads(data, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyError(f"{location}: expected policy JSON, got {exc}") from None
    except PolicyError as exc:
        raise PolicyError(f"{location}: {exc}") from None


def canonical_json(document: Any) -> bytes:
    """``document`` in one spelling: sorted keys, no whitespace (to compare)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def load_policy_bytes(data: bytes, location: str) -> Policy:
    """Parse and validate policy JSON read from ``location``."""
    doc = load_policy_json(data, location)
    try:
        return parse_policy(doc)
    except PolicyError as exc:
        raise PolicyError(f"{location}: {exc}") from None


class PolicySource:
    """Loads the policy from its location and caches it for ``max_age`` seconds.

    Locations: ``s3://bucket/key``, ``ssm:/parameter/name`` or
    ``file:/path`` (a bare path is a file too).

    Args:
        location: where the policy lives.
        reader: returns the raw bytes at the location; the default handles
            all three schemes with boto3 and Powertools parameters.
        max_age: seconds a loaded policy is reused.
    """

    def __init__(
        self,
        location: str,
        reader: Callable[[str], bytes] | None = None,
        max_age: float = 60.0,
    ) -> None:
        self.location = location
        self._reader = reader or read_location
        self._max_age = max_age
        self._cached: tuple[float, Policy] | None = None
        self._lock = threading.Lock()

    def get(self) -> Policy:
        with self._lock:
            now = time.monotonic()
            if self._cached and now - self._cached[0] < self._max_age:
                return self._cached[1]
            policy = load_policy_bytes(self._reader(self.location), self.location)
            logger.debug("loaded policy %s from %s", policy.version, self.location)
            self._cached = (now, policy)
            return policy


def read_location(location: str) -> bytes:
    """Read raw bytes from an ``s3://``, ``ssm:`` or ``file:`` location.

    Raises:
        PolicyError: The location is malformed or cannot be read.
        NotFoundError: The S3 object does not exist.
        StorageError: S3 failed otherwise.
    """
    data = read_location_if_exists(location)
    if data is None:
        raise PolicyError(f"{location}: no policy is stored there")
    return data


def read_location_if_exists(location: str) -> bytes | None:
    """Like :func:`read_location`, but None when nothing is stored there."""
    return read_location_versioned(location)[0]


def read_location_versioned(location: str) -> tuple[bytes | None, str | None]:
    """The bytes stored at ``location`` (None if nothing) and, for S3, the ETag.

    The ETag makes a later :func:`write_location` a compare-and-swap.
    """
    check_scheme(location)
    if location.startswith("s3://"):
        from regseal.errors import NotFoundError

        store, key = _s3(location)
        try:
            stored = store.get(key)
        except NotFoundError:
            return None, None
        return stored.data, stored.etag
    return _read_other(location), None


LOCATION_FORMS = "s3://BUCKET/KEY, ssm:/NAME, file:PATH or a plain path"
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def check_scheme(location: str) -> None:
    """Refuse a URL whose scheme is not one a policy can be stored under.

    Without this, ``ftp://host/p.json`` would be taken for a relative path.

    Raises:
        PolicyError: ``location`` starts with another ``SCHEME://``.
    """
    match = _URL_SCHEME.match(location)
    if match and match.group(1) != "s3":
        raise PolicyError(
            f"{location}: unsupported location scheme {match.group(1)!r}; "
            f"expected {LOCATION_FORMS}"
        )


def _read_other(location: str) -> bytes | None:
    if location.startswith("ssm:"):
        from aws_lambda_powertools.utilities import parameters
        from aws_lambda_powertools.utilities.parameters.exceptions import (
            GetParameterError,
        )

        try:
            value = parameters.get_parameter(location[4:], max_age=0, decrypt=True)
        except GetParameterError as exc:
            if "ParameterNotFound" in str(exc):
                return None
            raise PolicyError(f"{location}: cannot read the parameter: {exc}") from None
        return str(value).encode()
    path = _path(location)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PolicyError(f"{location}: cannot read policy file: {exc}") from None


def write_location(
    location: str,
    data: bytes,
    *,
    if_match: str | None = None,
    create_only: bool = False,
) -> None:
    """Store policy bytes at an ``s3://``, ``ssm:`` or ``file:`` location.

    S3 objects are written as ``application/json``, with ``If-Match`` when
    ``if_match`` is given and ``If-None-Match: *`` when ``create_only``. SSM
    parameters keep their type (``String`` for a new one) and use the
    Intelligent-Tiering tier, so that a policy above 4 KB becomes an advanced
    parameter. Files are replaced in one step.

    NOTE: SSM has no compare-and-swap; two operators writing at the same
    time race, and the last write wins.

    Raises:
        PolicyError: The location is malformed or the write failed.
        PreconditionFailedError: The S3 object changed since ``if_match``,
            or exists although ``create_only``.
    """
    check_scheme(location)
    if location.startswith("s3://"):
        store, key = _s3(location)
        store.put(
            key,
            data,
            content_type="application/json",
            if_match=if_match,
            create_only=create_only,
        )
        return
    if location.startswith("ssm:"):
        _write_ssm(location, data)
        return
    path = _path(location)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise PolicyError(f"{location}: cannot write policy file: {exc}") from None


def _write_ssm(location: str, data: bytes) -> None:
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import (
        SetParameterError,
    )
    from botocore.exceptions import BotoCoreError, ClientError

    name = location[4:]
    parameter_type: Any = "String"
    try:
        current = boto3.client("ssm").describe_parameters(
            ParameterFilters=[{"Key": "Name", "Values": [name]}]
        )["Parameters"]
    except (ClientError, BotoCoreError) as exc:
        raise PolicyError(f"{location}: cannot look up the parameter: {exc}") from None
    if current:
        parameter_type = current[0].get("Type", "String")
    try:
        parameters.set_parameter(
            name,
            data.decode("utf-8"),
            overwrite=True,
            parameter_type=parameter_type,
            tier="Intelligent-Tiering",
            description="regseal sealing policy",
        )
    except SetParameterError as exc:
        raise PolicyError(f"{location}: cannot write the parameter: {exc}") from None


def _s3(location: str) -> tuple[ObjectStore, str]:
    import boto3

    from regseal.storage import ObjectStore

    bucket, _, key = location[5:].partition("/")
    if not bucket or not key:
        raise PolicyError(f"{location}: expected s3://BUCKET/KEY")
    return ObjectStore(boto3.client("s3"), bucket), key


def _path(location: str) -> Path:
    return Path(location[5:] if location.startswith("file:") else location)


# --------------------------------------------------------------------------
# The JSON Schema, built from the validator's own constants


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


def policy_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the policy, for editors and linters.

    It is built from the constants :func:`parse_policy` uses, so the two
    cannot drift apart. It checks the document's shape; two rules only
    :func:`parse_policy` checks: ``unmatched`` must name a team of the
    document, and each ``public_key`` must load as an RSA or EC key.
    """
    recipient = {
        "type": "object",
        "description": "A JWE recipient: who holds the private key, and the key.",
        "required": list(RECIPIENT_FIELDS),
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "public_key": {
                "type": "string",
                "pattern": "-----BEGIN ",
                "description": "PEM public key: RSA (2048 bits or more) or EC "
                "P-256/P-384/P-521.",
            },
        },
    }
    team = {
        "type": "object",
        "required": ["repositories", "kms_key"],
        "additionalProperties": False,
        "properties": {
            "repositories": {
                "type": "array",
                "minItems": 1,
                "description": "Globs over the whole repository name: '*' matches "
                "any characters including '/', '?' one character (KMS StringLike).",
                "items": {"type": "string", "pattern": _anchored(REPOSITORY_PATTERN)},
            },
            "kms_key": {
                "type": "string",
                "pattern": _anchored(KMS_KEY_PATTERN),
                "description": "The team's KMS key: key id, key ARN, alias ARN or "
                "alias/NAME.",
            },
            "recipients": {"type": "array", "items": {"$ref": "#/$defs/recipient"}},
            "signing_key": {
                "anyOf": [
                    {"type": "null"},
                    {"type": "string", "pattern": f"^{SIGNING_KEY_PREFIX}"},
                ],
                "description": "The team's TUF signing key, 'awskms:<key>'.",
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "regseal sealing policy",
        "description": "Which team owns a repository, and the keys its images are "
        "sealed for. Validate with 'regseal policy validate FILE', which also "
        "loads the public keys and checks that 'unmatched' names a team.",
        "type": "object",
        "required": ["version", "teams"],
        "additionalProperties": False,
        "properties": {
            "version": {
                "type": "string",
                "pattern": "\\S",
                "description": "Recorded in every sealed manifest; change it with "
                "every edit.",
            },
            "description": {"type": "string"},
            "unmatched": {
                "type": "string",
                "description": "'skip', 'fail' or the name of a team that takes "
                "repositories no team claims.",
                "anyOf": [
                    {"enum": [UNMATCHED_SKIP, UNMATCHED_FAIL]},
                    {"pattern": _anchored(TEAM_NAME_PATTERN)},
                ],
            },
            "teams": {
                "type": "object",
                "minProperties": 1,
                "description": "Teams by name, tried in document order.",
                "propertyNames": {"pattern": _anchored(TEAM_NAME_PATTERN)},
                "additionalProperties": {"$ref": "#/$defs/team"},
            },
        },
        "$defs": {"team": team, "recipient": recipient},
    }


def schema_json() -> bytes:
    """The schema as the shipped ``policy.schema.json`` holds it."""
    return (json.dumps(policy_schema(), indent=2) + "\n").encode()
