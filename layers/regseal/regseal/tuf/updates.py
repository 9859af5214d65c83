"""Target updates by the seal function: add or remove a tag's target in its team role.

An update reads the newest targets and team role (and bin) from storage,
checks each against the role that delegates it, applies the change, signs the
new version with the team's online key(s) and writes ``N+1.<role>.json`` with
``If-None-Match: *``. When another writer created ``N+1`` first, the update
starts over from a fresh read (bounded attempts, full-jitter backoff), so
concurrent writers never overwrite each other and no target is lost.

An update that changes nothing (the role already says exactly this) writes
nothing, so redelivered events are harmless. After writing, the update checks
that the top-level targets role did not move while it ran; if it did (a team key
rotation), it re-signs what it wrote with the keys targets now names.

The caller tells the TUF function that targets changed, with the message of
:attr:`TargetUpdate.targets_changed` (see :mod:`regseal.tuf.messages`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    SuccinctRoles,
    TargetFile,
    Targets,
)

from regseal.errors import (
    PolicyError,
    PreconditionFailedError,
    RetryableError,
    TargetRollbackError,
    TufError,
)
from regseal.tuf.bins import partition, succinct_roles
from regseal.tuf.messages import TargetsChanged
from regseal.tuf.paths import DEFAULT_MAX_DEPTH
from regseal.tuf.repository import MetadataRepository, RoleSigners, SignerSource, utcnow
from regseal.tuf.settings import DAY
from regseal.tuf.store import MetadataStore, versioned_name
from regseal.tuf.targets import TargetCustom, TargetRecord, same_target, target_path
from regseal.tuf.teams import TeamDelegation, check_team, find_team, team_of_role

logger = logging.getLogger(__name__)

_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0


@dataclass(frozen=True)
class TeamUpdate:
    """The outcome of one update of a team's targets.

    Attributes:
        team: the team.
        holders: target path -> role that holds it (the team role or a bin).
        versions: role -> its newest version after the update.
        changed: the paths whose target changed.
        written: role -> version, for every file this update wrote.
        split: whether this update split the team role into hash bins.
    """

    team: str
    holders: Mapping[str, str]
    versions: Mapping[str, int]
    changed: tuple[str, ...]
    written: Mapping[str, int]
    split: bool = False

    @property
    def targets_changed(self) -> TargetsChanged | None:
        """The message for the TUF function, or None if nothing was written."""
        return TargetsChanged(dict(self.written)) if self.written else None


@dataclass(frozen=True)
class TargetUpdate:
    """The outcome of :meth:`TargetsWriter.add_target` / ``remove_target``.

    Attributes:
        team: the team.
        path: the target path (``<repository>/tags/<tag>``).
        role: the role that holds the target (the team role or a bin).
        version: that role's version after the call.
        changed: False when the role already said exactly this.
        written: role -> version of every file written (a split writes bins).
    """

    team: str
    path: str
    role: str
    version: int
    changed: bool
    written: Mapping[str, int] = field(default_factory=dict)

    @property
    def targets_changed(self) -> TargetsChanged | None:
        """The message for the TUF function, or None if nothing was written."""
        return TargetsChanged(dict(self.written)) if self.written else None


class _StaleRole(Exception):
    """The newest version of a role does not verify; maybe being re-signed."""


@dataclass
class _Attempt:
    targets_version: int
    holders: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    split: bool = False


def check_newer(current: TargetFile, new: TargetFile) -> None:
    """Refuse to replace ``current`` by a manifest sealed before it.

    Both times are the targets' ``sealedAt`` custom fields: the current one
    is signed by the team key (the caller read it from a verified role), the
    new one comes from regseal's seal record. A current target without the
    field predates it, and is replaced (nothing to compare with). A new
    target without it, or not later than the current one, is refused.

    Raises:
        TargetRollbackError: ``new`` is not known to be sealed later.
    """
    before = _sealed_at(current)
    if before is None:
        logger.debug("%s: no sealedAt in the current target; replacing it", new.path)
        return
    after = _sealed_at(new)
    if after is not None and after > before:
        return
    why = (
        f"it has no seal time, the current target was sealed at {before} ms"
        if after is None
        else f"it was sealed at {after} ms, the current target at {before} ms"
    )
    raise TargetRollbackError(
        new.path, _digest(current), _digest(new), f"{why} (sealedAt)"
    )


def _sealed_at(target: TargetFile) -> int | None:
    custom = target.unrecognized_fields.get("custom")
    value = custom.get("sealedAt") if isinstance(custom, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _digest(target: TargetFile) -> str:
    return f"sha256:{target.hashes.get('sha256', '')}"


def _same_manifest(a: TargetFile, b: TargetFile) -> bool:
    return a.length == b.length and a.hashes == b.hashes


def _apply_changes(
    targets: dict[str, TargetFile],
    changes: Mapping[str, TargetFile | None],
    newer_only: bool = False,
) -> list[str]:
    """Apply changes in place; return the paths that actually changed.

    With ``newer_only``, a target that names the same manifest is kept as it
    is, and one that would move to a manifest sealed earlier raises (see
    :func:`check_newer`).
    """
    changed = []
    for path, target in changes.items():
        if target is None:
            if path in targets:
                del targets[path]
                changed.append(path)
        elif newer_only and path in targets:
            if _same_manifest(targets[path], target):
                continue
            check_newer(targets[path], target)
            targets[path] = target
            changed.append(path)
        elif path not in targets or not same_target(targets[path], target):
            targets[path] = target
            changed.append(path)
    return changed


class TargetsWriter:
    """Adds and removes targets in team roles (see the module docstring).

    One writer can be kept for the life of a process and shared by threads.

    Args:
        store: the metadata store.
        signers: who signs team roles (default: each team key's recorded
            online URI, i.e. the team's KMS key).
        max_attempts: attempts before giving up on a write race.
        clock: the current time.
        trusted_root: root metadata to trust instead of the stored
            ``1.root.json``.
        sleep: how to wait between attempts (tests pass a no-op).
    """

    def __init__(
        self,
        store: MetadataStore,
        *,
        signers: SignerSource | None = None,
        max_attempts: int = 8,
        clock: Callable[[], datetime] = utcnow,
        trusted_root: bytes | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise TufError(f"max attempts: expected >= 1, got {max_attempts}")
        self.store = store
        self._signers = signers or RoleSigners()
        self._max_attempts = max_attempts
        self._clock = clock
        self._trusted_root = trusted_root
        self._sleep = sleep
        self._random = random.SystemRandom()

    def repository(self) -> MetadataRepository:
        """A fresh view of the repository for one attempt."""
        return MetadataRepository(
            self.store,
            self._signers,
            lambda role: 90 * DAY,
            clock=self._clock,
            trusted_root=self._trusted_root,
        )

    # -- the seal function's API ----------------------------------------------

    def add_target(
        self,
        team: str,
        repository: str,
        tag: str,
        manifest_bytes: bytes,
        custom: TargetCustom | Mapping[str, Any],
        *,
        newer_only: bool = False,
    ) -> TargetUpdate:
        """Record that ``repository:tag`` points at the sealed ``manifest_bytes``.

        Args:
            team: the team whose role holds the repository.
            repository: OCI repository name.
            tag: OCI tag.
            manifest_bytes: the sealed manifest exactly as the registry serves it.
            custom: the target's custom fields (a TargetCustom, or a mapping of
                canonical-JSON values).
            newer_only: only move the target forward: keep it as it is when it
                names these bytes already, and refuse a manifest sealed before
                the one it names (``sealedAt``, see :func:`check_newer`). The
                check reads the verified role in the same attempt that writes
                it, so a concurrent writer cannot slip in between.

        Returns:
            What was written; send ``targets_changed`` to the TUF function.

        Raises:
            FormatError: bad repository, tag, manifest or custom values.
            TargetRollbackError: ``newer_only`` and the target names a manifest
                sealed later than this one (nothing is written).
            PolicyError: the repository is not one of the team's.
            TufError: the repository metadata cannot be trusted or signed.
            RetryableError: concurrent writers kept winning; retry the event.
        """
        record = TargetRecord.for_manifest(repository, tag, manifest_bytes, custom)
        update = self.apply(
            team, {record.path: record.to_target_file()}, newer_only=newer_only
        )
        return self._single(update, record.path)

    def remove_target(self, team: str, repository: str, tag: str) -> TargetUpdate:
        """Remove the target of ``repository:tag`` (no change if it is absent).

        Raises:
            the same as :meth:`add_target`.
        """
        path = target_path(repository, tag)
        update = self.apply(team, {path: None})
        return self._single(update, path)

    def add_targets(self, team: str, records: Iterable[TargetRecord]) -> TeamUpdate:
        """Add many targets of one team in one new version per role touched."""
        return self.apply(team, {r.path: r.to_target_file() for r in records})

    def resign(self, role: str) -> TeamUpdate:
        """Write a new version of a team role or bin with the same content."""
        return self.apply(team_of_role(role), {}, resign={role})

    def sync_team_keys(self, team: str) -> TeamUpdate:
        """Re-sign a team's role and bins with the keys targets now delegates to.

        Used by key rotation: the team role's delegation to its bins gets the
        team's current keys, then every file is signed again.
        """
        return self.apply(team, {}, resign={team}, sync_keys=True)

    @staticmethod
    def _single(update: TeamUpdate, path: str) -> TargetUpdate:
        role = update.holders[path]
        return TargetUpdate(
            team=update.team,
            path=path,
            role=role,
            version=update.versions[role],
            changed=path in update.changed,
            written=dict(update.written),
        )

    # -- the update loop ------------------------------------------------------

    def apply(
        self,
        team: str,
        changes: Mapping[str, TargetFile | None],
        *,
        resign: Iterable[str] = (),
        sync_keys: bool = False,
        newer_only: bool = False,
    ) -> TeamUpdate:
        """Apply target changes (path -> new TargetFile, or None to remove).

        ``newer_only`` is :meth:`add_target`'s, for every path changed.

        Raises:
            see :meth:`add_target`.
        """
        check_team(team)
        force = set(resign)
        written: dict[str, int] = {}
        landed: set[str] = set()
        last_error: Exception | None = None
        for attempt in range(self._max_attempts):
            repo = self.repository()
            try:
                outcome = self._attempt(
                    repo, team, changes, force, written, sync_keys, landed, newer_only
                )
            except (PreconditionFailedError, _StaleRole) as exc:
                written.update(repo.written)
                last_error = exc
                logger.debug("attempt %d for team %s lost: %s", attempt + 1, team, exc)
                self._backoff(attempt)
                continue
            written.update(repo.written)
            stale = self._signed_under_old_delegation(team, outcome, repo)
            if stale:
                logger.debug("targets moved under %s; re-signing %s", team, stale)
                force = stale
                continue
            return TeamUpdate(
                team=team,
                holders=outcome.holders,
                versions={
                    role: repo.stored_version(role)
                    for role in {*outcome.holders.values(), *repo.written}
                },
                changed=tuple(path for path in changes if path in landed),
                written=written,
                split=outcome.split,
            )
        if isinstance(last_error, _StaleRole):
            raise TufError(str(last_error)) from last_error
        raise RetryableError(
            f"team {team}: {self._max_attempts} attempts lost to concurrent writers; "
            "deliver the event again"
        ) from last_error

    def _backoff(self, attempt: int) -> None:
        ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)
        self._sleep(self._random.uniform(0, ceiling))

    def _load(
        self, repo: MetadataRepository, role: str, ours: Mapping[str, int]
    ) -> Metadata[Targets]:
        """The newest version of a team role or bin, which must verify.

        A version this update wrote itself is accepted unverified: it is being
        re-signed because the delegation changed under it.
        """
        md = repo.load(role)
        if md is None:
            return repo.open(role)
        if repo.is_trusted(role, md) or ours.get(role) == md.signed.version:
            return md
        raise _StaleRole(
            f"{versioned_name(md.signed.version, role)}: not signed by the keys "
            f"its delegator names; refusing to build on it"
        )

    def _attempt(
        self,
        repo: MetadataRepository,
        team: str,
        changes: Mapping[str, TargetFile | None],
        force: set[str],
        ours: Mapping[str, int],
        sync_keys: bool,
        landed: set[str],
        newer_only: bool = False,
    ) -> _Attempt:
        """One read-modify-write; paths whose change was written go in ``landed``."""
        repo.root_md()
        targets_md = repo.load_trusted("targets")
        if targets_md.signed.version == 0:
            raise TufError(
                f"{self.store.location.url}: no TUF repository; run 'regseal tuf init'"
            )
        targets = targets_md.signed
        role, delegation = find_team(targets, team)
        for path in changes:
            if not role.is_delegated_path(path):
                depth = path.count("/") - 1  # <repository>/tags/<tag>
                why = (
                    f"; the repository has {depth} components and TUF paths cover "
                    f"at most {DEFAULT_MAX_DEPTH} (docs/tuf.md, 'Teams and path "
                    "patterns'): the image is sealed but has no TUF target"
                    if depth > DEFAULT_MAX_DEPTH
                    else "; the TUF delegation names other paths than the policy: "
                    "re-run 'regseal tuf add-team' with the team's repositories"
                )
                raise PolicyError(
                    f"{path}: not a tag of team {team}'s repositories "
                    f"{list(delegation.repositories)} in TUF{why}"
                )
        outcome = _Attempt(targets.version)
        repo.set_delegator(team, targets, delegation.expiry)
        team_md = self._load(repo, team, ours)
        if team_md.signed.version == 0:
            raise TufError(
                f"team {team}: its role has no metadata yet; run 'regseal tuf add-team'"
            )
        delegations = team_md.signed.delegations
        if delegations is None or delegations.succinct_roles is None:
            outcome.changed = _apply_changes(
                team_md.signed.targets, changes, newer_only
            )
            outcome.holders = {path: team for path in changes}
            split = None
            if len(team_md.signed.targets) > delegation.bin_threshold:
                split = self._split(repo, team_md, role, targets, delegation)
            if split is not None:
                outcome.split = True
                outcome.holders = {p: split.get_role_for_target(p) for p in changes}
            elif outcome.changed or team in force:
                repo.close(team, team_md)
            landed.update(outcome.changed)
            return outcome

        succinct = delegations.succinct_roles
        if sync_keys:
            assert targets.delegations is not None
            delegations.keys = {k: targets.delegations.keys[k] for k in role.keyids}
            succinct.keyids = list(role.keyids)
            succinct.threshold = role.threshold
        if sync_keys or team in force:
            repo.close(team, team_md)

        groups: dict[str, dict[str, TargetFile | None]] = {}
        for path, target in changes.items():
            groups.setdefault(succinct.get_role_for_target(path), {})[path] = target
            outcome.holders[path] = succinct.get_role_for_target(path)
        names = set(groups) | {
            name for name in force if succinct.is_delegated_role(name)
        }
        if sync_keys:
            names |= set(succinct.get_roles())
        for name in sorted(names):
            repo.set_delegator(name, team_md.signed, delegation.expiry)
            bin_md = self._load(repo, name, ours)
            changed = _apply_changes(
                bin_md.signed.targets, groups.get(name, {}), newer_only
            )
            outcome.changed.extend(changed)
            if changed or name in force or sync_keys:
                repo.close(name, bin_md)
                landed.update(changed)
        return outcome

    def _split(
        self,
        repo: MetadataRepository,
        team_md: Metadata[Targets],
        role: DelegatedRole,
        targets: Targets,
        delegation: TeamDelegation,
    ) -> SuccinctRoles | None:
        """Move a team role's targets into new hash bins (see regseal.tuf.bins).

        Returns:
            The succinct delegation written, or None when another writer is
            splitting from the same version (``team_md`` is then unchanged and
            the caller writes it flat).
        """
        assert targets.delegations is not None
        team = delegation.name
        version = team_md.signed.version + 1
        succinct = succinct_roles(
            team, version, role.keyids, role.threshold, delegation.bin_bits
        )
        split = Metadata[Targets].from_bytes(team_md.to_bytes())
        split.signed.targets = {}
        split.signed.delegations = Delegations(
            keys={k: targets.delegations.keys[k] for k in role.keyids},
            succinct_roles=succinct,
        )
        # Bins first: the team role must never delegate to a missing bin.
        try:
            for name, content in partition(succinct, team_md.signed.targets).items():
                repo.set_delegator(name, split.signed, delegation.expiry)
                if repo.stored(name) is not None:
                    raise PreconditionFailedError(f"{name}: taken by another split")
                bin_md = repo.open(name)
                bin_md.signed.targets = content
                repo.close(name, bin_md)
        except PreconditionFailedError as exc:
            logger.debug("split of %s v%d taken (%s); writing flat", team, version, exc)
            return None
        repo.close(team, split)
        logger.debug(
            "split team %s: %d targets into %d bins",
            team,
            len(team_md.signed.targets),
            2**delegation.bin_bits,
        )
        return succinct

    def _signed_under_old_delegation(
        self, team: str, outcome: _Attempt, repo: MetadataRepository
    ) -> set[str]:
        """Roles this attempt wrote that no longer verify because targets moved."""
        if not repo.written:
            return set()
        following = versioned_name(outcome.targets_version + 1, "targets")
        if not self.store.exists(following):
            return set()
        check = self.repository()
        targets_md = check.load_trusted("targets")
        _, delegation = find_team(targets_md.signed, team)
        check.set_delegator(team, targets_md.signed, delegation.expiry)
        stale = set()
        team_md = check.load(team)
        if team_md is None or not check.is_trusted(team, team_md):
            stale.add(team)
        if team_md is not None:
            for role in repo.written:
                if role == team or team_of_role(role) != team:
                    continue
                check.set_delegator(role, team_md.signed, delegation.expiry)
                bin_md = check.load(role)
                if bin_md is not None and not check.is_trusted(role, bin_md):
                    stale.add(role)
        return stale & (set(repo.written) | {team})
