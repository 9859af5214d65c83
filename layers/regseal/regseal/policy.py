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
  ``*`` matches any characters *including* "/", as KMS ``StringLike`` does,
  so one pattern means the same in the policy and in a key policy.
- Teams are tried in document order; the first match wins.
- ``unmatched`` says what happens to a repository no team claims: "skip"
  (leave it plaintext, log it), "fail" (an error: the event goes to the
  dead-letter queue) or the name of a team that takes it.
- ``version`` is recorded in every sealed manifest.

The policy lives outside the code (S3 object, SSM parameter or file) so that
operators change it without a deployment; :class:`PolicySource` caches it.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regseal import jwe
from regseal.errors import KeyWrapError, PolicyError

logger = logging.getLogger(__name__)

UNMATCHED_SKIP = "skip"
UNMATCHED_FAIL = "fail"
_TEAM_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_KMS_KEY = re.compile(
    r"(alias/[A-Za-z0-9/_-]+|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/\S+"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
)


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
    _only(doc, {"version", "unmatched", "teams", "description"}, "policy")
    version = doc.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PolicyError(
            f"policy.version: expected a non-empty string, got {version!r}"
        )
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
    _only(body, {"repositories", "kms_key", "recipients", "signing_key"}, where)
    patterns = body.get("repositories")
    if (
        not isinstance(patterns, list)
        or not patterns
        or not all(isinstance(p, str) and p for p in patterns)
    ):
        raise PolicyError(
            f"{where}.repositories: expected a non-empty list of glob patterns"
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
    signing_key = body.get("signing_key")
    if signing_key is not None and (
        not isinstance(signing_key, str) or not signing_key.startswith("awskms:")
    ):
        raise PolicyError(
            f"{where}.signing_key: expected an 'awskms:<key>' URI, got {signing_key!r}"
        )
    return Team(name, tuple(patterns), kms_key, recipients, signing_key)


def _recipient(doc: Any, where: str) -> Recipient:
    if not isinstance(doc, Mapping):
        raise PolicyError(f"{where}: expected an object with 'name' and 'public_key'")
    _only(doc, {"name", "public_key"}, where)
    name, pem = doc.get("name"), doc.get("public_key")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{where}.name: expected a non-empty string")
    if not isinstance(pem, str):
        raise PolicyError(f"{where}.public_key: expected a PEM public key string")
    try:
        jwe.Recipient.from_pem(pem.encode(), source=where)
    except KeyWrapError as exc:
        raise PolicyError(f"{where}.public_key: {exc}") from None
    return Recipient(name, pem)


def _only(doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed))
        raise PolicyError(
            f"{where}: unknown field {unknown[0]!r} (expected {expected})"
        )


def load_policy_bytes(data: bytes, location: str) -> Policy:
    """Parse and validate policy JSON read from ``location``."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyError(f"{location}: expected policy JSON, got {exc}") from None
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
    """Read raw bytes from an ``s3://``, ``ssm:`` or ``file:`` location."""
    if location.startswith("s3://"):
        import boto3

        bucket, _, key = location[5:].partition("/")
        if not bucket or not key:
            raise PolicyError(f"{location}: expected s3://BUCKET/KEY")
        from regseal.storage import ObjectStore

        return ObjectStore(boto3.client("s3"), bucket).get(key).data
    if location.startswith("ssm:"):
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_parameter(location[4:], max_age=0, decrypt=True)
        return str(value).encode()
    path = location[5:] if location.startswith("file:") else location
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(f"{location}: cannot read policy file: {exc}") from None
