"""Settings of regseal's TUF repository: where it lives, expiry periods, windows.

The TUF function reads them from the environment (:meth:`TufSettings.from_env`);
the CLI builds them from its options. Team roles keep their own expiry period
and hash-bin settings in their delegation (see :mod:`regseal.tuf.teams`), so the
seal function needs no TUF settings besides the metadata location.

Environment (all optional except the bucket):

========================================= ======================================
``REGSEAL_TUF_BUCKET``                    metadata bucket (default
                                          ``REGSEAL_BUCKET``, the registry's)
``REGSEAL_TUF_PREFIX``                    key prefix (default ``tuf/``)
``REGSEAL_TUF_SNAPSHOT_KEY``              ``awskms:`` URI of the snapshot key
                                          (default: the URI recorded in root)
``REGSEAL_TUF_TIMESTAMP_KEY``             the same for timestamp
``REGSEAL_TUF_SNAPSHOT_EXPIRY_HOURS``     snapshot lifetime (default 168)
``REGSEAL_TUF_TIMESTAMP_EXPIRY_HOURS``    timestamp lifetime (default 24)
``REGSEAL_TUF_SIGNING_WINDOW_HOURS``      re-sign snapshot/timestamp when they
                                          expire within this (default 12)
``REGSEAL_TUF_TEAM_SIGNING_WINDOW_HOURS`` re-sign team roles and bins expiring
                                          within this (default 720)
``REGSEAL_TUF_RESIGN_TEAMS``              ``true``/``false``: whether the TUF
                                          function re-signs team roles with the
                                          teams' KMS keys (default true)
``REGSEAL_TUF_MAX_ATTEMPTS``              attempts per conditional write race
                                          (default 8)
========================================= ======================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from regseal.errors import TufError
from regseal.tuf.store import DEFAULT_PREFIX, MetadataLocation

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class TufSettings:
    """How regseal's TUF repository is signed and refreshed.

    Attributes:
        location: bucket and prefix of the metadata.
        root_expiry: lifetime of a root version.
        targets_expiry: lifetime of a top-level targets version.
        snapshot_expiry: lifetime of a snapshot version.
        timestamp_expiry: lifetime of a timestamp version.
        team_expiry: default lifetime of team role and bin versions (each team
            records its own in its delegation).
        signing_window: snapshot and timestamp are re-signed when they expire
            sooner than this.
        team_signing_window: team roles and bins are re-signed by the TUF
            function when they expire sooner than this.
        resign_teams: whether the TUF function re-signs team roles.
        snapshot_key: URI of the snapshot signer, overriding the one in root.
        timestamp_key: URI of the timestamp signer, overriding the one in root.
        bin_threshold: default number of targets above which a team role is
            split into hash bins.
        bin_bits: default number of hash-bin bits (2**bits bins).
        max_attempts: attempts of one update when concurrent writers conflict.
    """

    location: MetadataLocation
    root_expiry: timedelta = 365 * DAY
    targets_expiry: timedelta = 365 * DAY
    snapshot_expiry: timedelta = 7 * DAY
    timestamp_expiry: timedelta = DAY
    team_expiry: timedelta = 90 * DAY
    signing_window: timedelta = 12 * HOUR
    team_signing_window: timedelta = 30 * DAY
    resign_teams: bool = True
    snapshot_key: str | None = None
    timestamp_key: str | None = None
    bin_threshold: int = 2048
    bin_bits: int = 8
    max_attempts: int = 8

    def __post_init__(self) -> None:
        for name in ("root", "targets", "snapshot", "timestamp", "team"):
            period = getattr(self, f"{name}_expiry")
            if period <= timedelta(0):
                raise TufError(
                    f"{name} expiry: expected a positive period, got {period}"
                )
        for name, window, period in (
            ("signing window", self.signing_window, self.timestamp_expiry),
            ("signing window", self.signing_window, self.snapshot_expiry),
            ("team signing window", self.team_signing_window, self.team_expiry),
        ):
            if not timedelta(0) < window < period:
                raise TufError(
                    f"{name}: expected more than 0 and less than the expiry period "
                    f"{period}, got {window}"
                )
        if self.bin_threshold < 1:
            raise TufError(f"bin threshold: expected >= 1, got {self.bin_threshold}")
        if not 1 <= self.bin_bits <= 14:
            raise TufError(f"bin bits: expected 1 to 14, got {self.bin_bits}")
        if self.max_attempts < 1:
            raise TufError(f"max attempts: expected >= 1, got {self.max_attempts}")

    def expiry_for(self, role: str) -> timedelta:
        """The lifetime of a new version of a top-level role."""
        periods = {
            "root": self.root_expiry,
            "targets": self.targets_expiry,
            "snapshot": self.snapshot_expiry,
            "timestamp": self.timestamp_expiry,
        }
        return periods.get(role, self.team_expiry)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TufSettings:
        """Settings from ``REGSEAL_TUF_*`` variables (see the module docstring).

        Raises:
            TufError: a variable is missing or malformed.
        """
        env = os.environ if env is None else env
        bucket = env.get("REGSEAL_TUF_BUCKET") or env.get("REGSEAL_BUCKET", "")
        if not bucket:
            raise TufError(
                "REGSEAL_TUF_BUCKET: expected the metadata bucket name "
                "(or REGSEAL_BUCKET), got nothing"
            )
        prefix = env.get("REGSEAL_TUF_PREFIX", DEFAULT_PREFIX)
        return cls(
            location=MetadataLocation(bucket, prefix),
            snapshot_expiry=_hours(env, "REGSEAL_TUF_SNAPSHOT_EXPIRY_HOURS", 168),
            timestamp_expiry=_hours(env, "REGSEAL_TUF_TIMESTAMP_EXPIRY_HOURS", 24),
            signing_window=_hours(env, "REGSEAL_TUF_SIGNING_WINDOW_HOURS", 12),
            team_signing_window=_hours(
                env, "REGSEAL_TUF_TEAM_SIGNING_WINDOW_HOURS", 720
            ),
            resign_teams=_bool(env, "REGSEAL_TUF_RESIGN_TEAMS", True),
            snapshot_key=env.get("REGSEAL_TUF_SNAPSHOT_KEY") or None,
            timestamp_key=env.get("REGSEAL_TUF_TIMESTAMP_KEY") or None,
            max_attempts=_int(env, "REGSEAL_TUF_MAX_ATTEMPTS", 8),
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise TufError(f"{name}: expected an integer, got {raw!r}") from None


def _hours(env: Mapping[str, str], name: str, default: int) -> timedelta:
    return timedelta(hours=_int(env, name, default))


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes"}:
        return True
    if raw in {"0", "false", "no"}:
        return False
    raise TufError(f"{name}: expected true or false, got {raw!r}")
