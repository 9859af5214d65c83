"""Snapshot and timestamp: what the TUF function publishes after targets change.

:meth:`Publisher.refresh_snapshot_and_timestamp` makes the newest targets roles
visible to clients, in the order the specification requires (targets roles are
already written; then snapshot; timestamp last):

1. Discover targets roles by walking delegations from ``targets.json`` (team
   roles, then their hash bins). For each, find the newest stored version and
   verify it against the role that delegates it. A version that does not verify
   is held back (the snapshot keeps listing the previous one) and reported.
2. Re-sign team roles and bins that expire within the team signing window
   (when the function may use the teams' keys).
3. Write ``N+1.snapshot.json`` (``If-None-Match``) listing every targets role
   with version, length and sha256 of the exact stored bytes, when a role
   changed or the snapshot is near expiry; entries are never dropped and never
   go back in version.
4. Replace ``timestamp.json`` (``If-Match``) when the snapshot changed or the
   timestamp is near expiry, always with a higher version.

Hints from "targets changed" messages narrow step 1: without hints (the
scheduled run) every role is probed; with hints, the top-level targets role and
the team roles are probed (they are few) and bins only when named or new.

A lost race (another refresher wrote first) restarts the refresh from a fresh
read, a bounded number of times.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tuf.api.metadata import Metadata, MetaFile, Root, Targets

from regseal.errors import (
    PreconditionFailedError,
    RegsealError,
    RetryableError,
    TufError,
)
from regseal.tuf.repository import MetadataRepository, RoleSigners, meta_file, utcnow
from regseal.tuf.settings import TufSettings
from regseal.tuf.store import MetadataStore, versioned_name
from regseal.tuf.teams import team_of_role
from regseal.tuf.updates import TargetsWriter

logger = logging.getLogger(__name__)

OFFLINE_WARNING = timedelta(days=30)


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh did.

    Attributes:
        snapshot_version: the newest snapshot version after the refresh.
        timestamp_version: the timestamp version after the refresh.
        snapshot_written: whether a new snapshot was written.
        timestamp_written: whether a new timestamp was written.
        updated: ``ROLE.json`` -> version newly listed in snapshot.
        resigned: team roles and bins re-signed because they neared expiry.
        held_back: role -> reason, for newest versions that did not verify (or
            could not be re-signed); these need an operator.
        offline_expiring: root or targets when they expire within
            ``OFFLINE_WARNING`` (30 days): only operators can re-sign them.
        teams_expiring: team roles and bins within the team signing window
            that this refresh did not re-sign (``resign_teams`` is off): the
            seal function re-signs only what it writes, so they need an
            operator's ``regseal tuf refresh``.
    """

    snapshot_version: int
    timestamp_version: int
    snapshot_written: bool
    timestamp_written: bool
    updated: Mapping[str, int] = field(default_factory=dict)
    resigned: tuple[str, ...] = ()
    held_back: Mapping[str, str] = field(default_factory=dict)
    offline_expiring: tuple[str, ...] = ()
    teams_expiring: tuple[str, ...] = ()


@dataclass
class _Walk:
    infos: dict[str, MetaFile] = field(default_factory=dict)
    listed: dict[str, Metadata[Targets]] = field(default_factory=dict)
    held_back: dict[str, str] = field(default_factory=dict)


class Publisher:
    """Writes snapshot and timestamp (see the module docstring).

    Args:
        store: the metadata store.
        settings: expiry periods, signing windows and key overrides.
        clock: the current time.
        trusted_root: root metadata to trust instead of ``1.root.json``.
        sleep: how to wait between attempts.
    """

    def __init__(
        self,
        store: MetadataStore,
        settings: TufSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        trusted_root: bytes | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.settings = settings
        self._clock = clock
        self._trusted_root = trusted_root
        self._sleep = sleep
        overrides = {
            role: uri
            for role, uri in (
                ("snapshot", settings.snapshot_key),
                ("timestamp", settings.timestamp_key),
            )
            if uri
        }
        self._signers = RoleSigners(uri_for=overrides)
        self._writer = TargetsWriter(
            store,
            max_attempts=settings.max_attempts,
            clock=clock,
            trusted_root=trusted_root,
            sleep=sleep,
        )
        self._random = random.SystemRandom()

    def _repository(self) -> MetadataRepository:
        return MetadataRepository(
            self.store,
            self._signers,
            self.settings.expiry_for,
            clock=self._clock,
            trusted_root=self._trusted_root,
        )

    def refresh_snapshot_and_timestamp(
        self, force: bool = False, hints: Mapping[str, int] | None = None
    ) -> RefreshResult:
        """Publish the newest targets roles and keep online roles fresh.

        Args:
            force: write a new snapshot and timestamp even if nothing changed.
            hints: roles named by "targets changed" messages (None: probe all).

        Returns:
            What was written and what was held back.

        Raises:
            TufError: the repository is not initialized or cannot be signed.
            RetryableError: other refreshers kept winning the write race.
        """
        last: Exception | None = None
        for attempt in range(self.settings.max_attempts):
            try:
                return self._attempt(force, hints)
            except PreconditionFailedError as exc:
                last = exc
                logger.debug("refresh attempt %d lost: %s", attempt + 1, exc)
                ceiling = min(2.0, 0.05 * 2**attempt)
                self._sleep(self._random.uniform(0, ceiling))
        raise RetryableError(
            f"{self.store.location.url}: {self.settings.max_attempts} refresh "
            "attempts lost to concurrent writers"
        ) from last

    def _attempt(self, force: bool, hints: Mapping[str, int] | None) -> RefreshResult:
        repo = self._repository()
        root = repo.root_md().signed
        if root.version == 0 or repo.stored("timestamp") is None:
            raise TufError(
                f"{self.store.location.url}: no TUF repository; run 'regseal tuf init'"
            )
        snapshot_md = repo.open("snapshot")
        walk = self._walk(repo, root, snapshot_md.signed.meta, hints)

        resigned: list[str] = []
        teams_expiring: tuple[str, ...] = ()
        if not self.settings.resign_teams:
            teams_expiring = tuple(self._expiring_team_roles(walk))
        else:
            for role in self._expiring_team_roles(walk):
                try:
                    update = self._writer.resign(role)
                except RegsealError as exc:
                    walk.held_back[role] = f"re-signing failed: {exc}"
                    continue
                resigned.append(role)
                for name, version in update.written.items():
                    walk.infos[f"{name}.json"] = meta_file(
                        self.store.get(versioned_name(version, name)), version
                    )

        now = self._clock()
        window = self.settings.signing_window
        snapshot_due = snapshot_md.signed.version > 0 and (
            snapshot_md.signed.expires - now <= window
        )
        snapshot_written = repo.update_snapshot(walk.infos, force=force or snapshot_due)
        timestamp = repo.open("timestamp").signed
        timestamp_due = timestamp.expires - now <= window
        timestamp_written = repo.update_timestamp(force=force or timestamp_due)

        result = RefreshResult(
            snapshot_version=repo.stored_version("snapshot"),
            timestamp_version=repo.stored_version("timestamp"),
            snapshot_written=snapshot_written,
            timestamp_written=timestamp_written,
            updated={
                name: info.version
                for name, info in sorted(walk.infos.items())
                if snapshot_written
            },
            resigned=tuple(resigned),
            held_back=dict(walk.held_back),
            offline_expiring=self._offline_expiring(root, walk, now),
            teams_expiring=teams_expiring,
        )
        logger.debug(
            "refresh: snapshot v%d (%s), timestamp v%d (%s), %d held back",
            result.snapshot_version,
            "new" if snapshot_written else "kept",
            result.timestamp_version,
            "new" if timestamp_written else "kept",
            len(result.held_back),
        )
        return result

    @staticmethod
    def _offline_expiring(root: Root, walk: _Walk, now: datetime) -> tuple[str, ...]:
        expiring = []
        if root.expires - now <= OFFLINE_WARNING:
            expiring.append("root")
        targets = walk.listed.get("targets")
        if targets is not None and targets.signed.expires - now <= OFFLINE_WARNING:
            expiring.append("targets")
        return tuple(expiring)

    def _walk(
        self,
        repo: MetadataRepository,
        root: Root,
        listed_meta: Mapping[str, MetaFile],
        hints: Mapping[str, int] | None,
    ) -> _Walk:
        """Find the newest trusted version of every targets role."""
        walk = _Walk()
        full = hints is None
        stack: list[tuple[str, Root | Targets, bool]] = [("targets", root, True)]
        seen: set[str] = set()
        while stack:
            role, delegator, needs_content = stack.pop()
            if role in seen:
                continue
            seen.add(role)
            listed = listed_meta.get(f"{role}.json")
            hinted = hints is not None and role in hints
            if listed is not None and not (full or hinted or needs_content):
                continue

            chosen = self._newest_trusted(repo, role, delegator, listed, walk)
            if chosen is None:
                continue
            walk.listed[role] = chosen
            delegations = chosen.signed.delegations
            if delegations is None:
                continue
            # Children of the top-level role are team roles: always probed.
            team_level = role == "targets"
            if delegations.roles:
                for child in reversed(list(delegations.roles)):
                    stack.append((child, chosen.signed, team_level))
            if delegations.succinct_roles is not None:
                for child in delegations.succinct_roles.get_roles():
                    stack.append((child, chosen.signed, team_level))
        return walk

    def _newest_trusted(
        self,
        repo: MetadataRepository,
        role: str,
        delegator: Root | Targets,
        listed: MetaFile | None,
        walk: _Walk,
    ) -> Metadata[Targets] | None:
        """The version of ``role`` the new snapshot lists, with its content."""
        latest = self.store.latest_version(role, listed.version if listed else None)
        if latest is None:
            walk.held_back[role] = "delegated, but no metadata file exists"
            return None
        if listed is not None and latest < listed.version:
            raise TufError(
                f"{role}: newest stored version {latest} is below version "
                f"{listed.version} in snapshot"
            )
        if listed is None or latest > listed.version:
            name = versioned_name(latest, role)
            stored = self.store.get(name)
            reason = self._check(repo, role, delegator, stored.data, latest)
            if reason is None:
                walk.infos[f"{role}.json"] = meta_file(stored, latest)
                return Metadata[Targets].from_bytes(stored.data)
            walk.held_back[role] = f"{name}: {reason}"
            logger.debug("holding back %s: %s", name, reason)
        if listed is None:
            return None
        stored = self.store.get(versioned_name(listed.version, role))
        return Metadata[Targets].from_bytes(stored.data)

    @staticmethod
    def _check(
        repo: MetadataRepository,
        role: str,
        delegator: Root | Targets,
        data: bytes,
        version: int,
    ) -> str | None:
        """Why a stored version cannot be listed, or None if it can."""
        try:
            md = Metadata[Targets].from_bytes(data)
        except Exception:
            return "not parseable TUF metadata"
        if not isinstance(md.signed, Targets):
            return f"expected targets metadata, got {md.signed.type}"
        if md.signed.version != version:
            return f"file name says version {version}, content {md.signed.version}"
        if isinstance(delegator, Targets):
            repo.set_delegator(role, delegator)
        if not repo.is_trusted(role, md):
            return "not signed by a threshold of the keys its delegator names"
        return None

    def _expiring_team_roles(self, walk: _Walk) -> list[str]:
        """Team roles and bins that expire within the team signing window."""
        limit = self._clock() + self.settings.team_signing_window
        due = []
        for role, md in walk.listed.items():
            if role == "targets" or role in walk.held_back:
                continue
            if md.signed.expires <= limit:
                due.append(role)
        # Team roles before their bins: a re-signed team role stays valid.
        return sorted(due, key=lambda r: (team_of_role(r), r != team_of_role(r), r))
