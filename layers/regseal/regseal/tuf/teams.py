"""Team delegations: one delegated targets role per team, named after the team.

The top-level targets role delegates each team's repositories (see
:mod:`regseal.tuf.paths`) to a role named after the team, signed by the team's
online KMS key. Delegations are terminating, so a target path that belongs to a
team is looked up in that team's role only.

Team names are lowercase words joined by single hyphens (``team-a``): no ``/``
(ngclient would quote it into ``%2F``) and no ``.``, which is kept for the names
of a team's hash bins (``team-a.bins-v8-0f``, see :mod:`regseal.tuf.bins`).

A team's own settings travel in its delegation as custom fields, so every
writer agrees on them without configuration:

- ``x-regseal-repositories``: the repository globs as the operator gave them;
- ``x-regseal-expiry-hours``: lifetime of a new version of the team's role;
- ``x-regseal-bin-threshold``: number of targets above which the role is split
  into hash bins; ``x-regseal-bin-bits``: how many (2**bits).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from tuf.api.metadata import DelegatedRole, Targets

from regseal.errors import PolicyError, TufError
from regseal.tuf.paths import DEFAULT_MAX_DEPTH, path_patterns
from regseal.tuf.repository import TOP_LEVEL

_TEAM = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_TEAM_LENGTH = 64
FIELD_REPOSITORIES = "x-regseal-repositories"
FIELD_EXPIRY_HOURS = "x-regseal-expiry-hours"
FIELD_BIN_THRESHOLD = "x-regseal-bin-threshold"
FIELD_BIN_BITS = "x-regseal-bin-bits"


def check_team(name: str) -> str:
    """Return ``name`` if it can name a team role.

    Raises:
        PolicyError: it cannot.
    """
    if (
        not isinstance(name, str)
        or len(name) > MAX_TEAM_LENGTH
        or not _TEAM.fullmatch(name)
        or name in TOP_LEVEL
    ):
        raise PolicyError(
            "expected a team name of lowercase words joined by '-' (like "
            f"'team-a'), at most {MAX_TEAM_LENGTH} characters and not a top-level "
            f"role name, got {name!r}"
        )
    return name


def team_of_role(role: str) -> str:
    """The team a team role or one of its bins belongs to."""
    return role.split(".", 1)[0]


@dataclass(frozen=True)
class TeamDelegation:
    """What the top-level targets role says about one team.

    Attributes:
        name: team (and role) name.
        repositories: the team's repository globs.
        keyids: keys allowed to sign the team's role.
        threshold: signatures needed.
        expiry: lifetime of a new version of the team's role and bins.
        bin_threshold: targets above which the role is split into bins.
        bin_bits: 2**bin_bits bins when it is split.
        max_depth: deepest repository a trailing ``**`` covers.
    """

    name: str
    repositories: tuple[str, ...]
    keyids: tuple[str, ...]
    threshold: int
    expiry: timedelta
    bin_threshold: int
    bin_bits: int
    max_depth: int = DEFAULT_MAX_DEPTH

    def __post_init__(self) -> None:
        check_team(self.name)
        if not self.keyids or not 1 <= self.threshold <= len(self.keyids):
            raise PolicyError(
                f"team {self.name}: expected 1 <= threshold <= {len(self.keyids)} "
                f"keys, got {self.threshold}"
            )
        if self.expiry < timedelta(hours=1):
            raise PolicyError(
                f"team {self.name}: expected an expiry of at least one hour, got "
                f"{self.expiry}"
            )
        if self.bin_threshold < 1 or not 1 <= self.bin_bits <= 14:
            raise PolicyError(
                f"team {self.name}: expected bin threshold >= 1 and 1 <= bin bits "
                f"<= 14, got {self.bin_threshold} and {self.bin_bits}"
            )

    def patterns(self) -> list[str]:
        """The TUF path patterns of the team's repositories."""
        return path_patterns(self.repositories, self.max_depth)

    def to_role(self) -> DelegatedRole:
        """The delegation as python-tuf writes it into targets."""
        return DelegatedRole(
            name=self.name,
            keyids=list(self.keyids),
            threshold=self.threshold,
            terminating=True,
            paths=self.patterns(),
            unrecognized_fields={
                FIELD_REPOSITORIES: list(self.repositories),
                FIELD_EXPIRY_HOURS: int(self.expiry / timedelta(hours=1)),
                FIELD_BIN_THRESHOLD: self.bin_threshold,
                FIELD_BIN_BITS: self.bin_bits,
            },
        )

    def with_keyids(self, keyids: Sequence[str]) -> TeamDelegation:
        """The same delegation with other keys (threshold kept if possible)."""
        return TeamDelegation(
            name=self.name,
            repositories=self.repositories,
            keyids=tuple(keyids),
            threshold=min(self.threshold, len(keyids)),
            expiry=self.expiry,
            bin_threshold=self.bin_threshold,
            bin_bits=self.bin_bits,
            max_depth=self.max_depth,
        )

    @classmethod
    def from_role(cls, role: DelegatedRole) -> TeamDelegation:
        """Read a delegation written by :meth:`to_role`.

        Raises:
            TufError: the delegation lacks regseal's fields.
        """
        fields = role.unrecognized_fields
        repositories = fields.get(FIELD_REPOSITORIES)
        hours = fields.get(FIELD_EXPIRY_HOURS)
        threshold = fields.get(FIELD_BIN_THRESHOLD)
        bits = fields.get(FIELD_BIN_BITS)
        if (
            not isinstance(repositories, list)
            or not all(isinstance(r, str) for r in repositories)
            or not all(isinstance(v, int) for v in (hours, threshold, bits))
        ):
            raise TufError(
                f"delegation {role.name!r}: expected regseal's fields "
                f"{FIELD_REPOSITORIES}, {FIELD_EXPIRY_HOURS}, {FIELD_BIN_THRESHOLD} "
                f"and {FIELD_BIN_BITS}"
            )
        assert isinstance(hours, int)
        assert isinstance(threshold, int)
        assert isinstance(bits, int)
        return cls(
            name=role.name,
            repositories=tuple(repositories),
            keyids=tuple(role.keyids),
            threshold=role.threshold,
            expiry=timedelta(hours=hours),
            bin_threshold=threshold,
            bin_bits=bits,
        )


def find_team(targets: Targets, team: str) -> tuple[DelegatedRole, TeamDelegation]:
    """The delegation of ``team`` in top-level targets.

    Raises:
        TufError: targets does not delegate to the team.
    """
    roles = targets.delegations.roles if targets.delegations else None
    if not roles or team not in roles:
        raise TufError(
            f"team {team!r}: targets v{targets.version} has no delegation for it; "
            "add it with 'regseal tuf add-team'"
        )
    role = roles[team]
    return role, TeamDelegation.from_role(role)


def teams_of(targets: Targets) -> list[TeamDelegation]:
    """Every team delegation in top-level targets, in delegation order."""
    roles = targets.delegations.roles if targets.delegations else None
    return [TeamDelegation.from_role(role) for role in (roles or {}).values()]
