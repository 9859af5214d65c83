"""Operator actions on the TUF repository: create it, add teams, rotate keys.

These run from the ``regseal tuf`` CLI with offline keys (key files or KMS keys
the operator may use). Each returns what it wrote; the caller then runs (or
triggers) a snapshot/timestamp refresh so clients see the change.

- :func:`init_repository`: root (offline keys, threshold), top-level targets
  (offline keys, threshold), snapshot and timestamp (online KMS keys); first
  snapshot and timestamp.
- :func:`add_team`: the team's role (signed by its KMS key) first, then a new
  targets version delegating the team's repositories to it.
- :func:`rotate_root`, :func:`rotate_targets`, :func:`rotate_online_role`,
  :func:`rotate_team`: see each. Root changes are signed by a threshold of the
  old root keys and of the new ones, as clients require.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import Delegations, Root

from regseal.errors import PolicyError, TufError
from regseal.tuf.paths import DEFAULT_MAX_DEPTH, globs_overlap, path_patterns
from regseal.tuf.repository import MetadataRepository, RoleSigners, utcnow
from regseal.tuf.settings import TufSettings
from regseal.tuf.signers import probe_signer, public_key_for, signer_for_key
from regseal.tuf.store import MetadataStore, versioned_name
from regseal.tuf.teams import TeamDelegation, check_team, find_team, teams_of
from regseal.tuf.updates import TargetsWriter

logger = logging.getLogger(__name__)

ONLINE_ROLES = ("snapshot", "timestamp")


@dataclass(frozen=True)
class AdminResult:
    """Versions an operator action wrote.

    Attributes:
        written: role -> version written.
        root: the newest root's bytes (the trusted root to give clients).
    """

    written: dict[str, int]
    root: bytes


def _repository(
    store: MetadataStore,
    settings: TufSettings,
    signers: RoleSigners,
    clock: Callable[[], datetime],
) -> MetadataRepository:
    return MetadataRepository(store, signers, settings.expiry_for, clock=clock)


def _check_threshold(role: str, threshold: int, keys: Sequence[object]) -> None:
    if not 1 <= threshold <= len(keys):
        raise TufError(
            f"{role}: expected a threshold between 1 and the {len(keys)} keys "
            f"given, got {threshold}"
        )


def _unique(signers: Sequence[Signer]) -> list[Signer]:
    seen: dict[str, Signer] = {}
    for signer in signers:
        seen.setdefault(signer.public_key.keyid, signer)
    return list(seen.values())


def _online_key(uri: str) -> Key:
    """The online public key of ``uri``, checked with a probe signature."""
    key = public_key_for(uri, online=True)
    probe_signer(signer_for_key(key, uri), uri)
    return key


def _root_bytes(repo: MetadataRepository) -> bytes:
    stored = repo.stored("root")
    assert stored is not None
    return stored.data


def init_repository(
    store: MetadataStore,
    settings: TufSettings,
    *,
    root_signers: Sequence[Signer],
    targets_signers: Sequence[Signer],
    snapshot_key: str,
    timestamp_key: str,
    root_threshold: int = 1,
    targets_threshold: int = 1,
    clock: Callable[[], datetime] = utcnow,
) -> AdminResult:
    """Create the repository: root, targets, snapshot and timestamp version 1.

    Args:
        store: where to write (must hold no root yet).
        settings: expiry periods.
        root_signers: the root keys; all of them sign root v1.
        targets_signers: the top-level targets keys.
        snapshot_key: URI of the snapshot key (``awskms:...``).
        timestamp_key: URI of the timestamp key.
        root_threshold: signatures root needs.
        targets_threshold: signatures targets needs.

    Raises:
        TufError: already initialized, bad thresholds, or a key fails its probe.
    """
    root_signers = _unique(root_signers)
    targets_signers = _unique(targets_signers)
    _check_threshold("root", root_threshold, root_signers)
    _check_threshold("targets", targets_threshold, targets_signers)
    if store.exists(versioned_name(1, "root")):
        raise TufError(f"{store.location.url}: a TUF repository already exists there")
    online = {
        role: _online_key(uri)
        for role, uri in (("snapshot", snapshot_key), ("timestamp", timestamp_key))
    }

    signers = RoleSigners({"root": root_signers, "targets": targets_signers})
    repo = _repository(store, settings, signers, clock)
    with repo.edit_root() as root:
        for signer in root_signers:
            root.add_key(signer.public_key, "root")
        for signer in targets_signers:
            root.add_key(signer.public_key, "targets")
        for role, key in online.items():
            root.add_key(key, role)
        root.roles["root"].threshold = root_threshold
        root.roles["targets"].threshold = targets_threshold
        root.consistent_snapshot = True
    with repo.edit_targets():
        pass
    repo.update_snapshot({"targets.json": repo.info("targets")}, force=True)
    repo.update_timestamp(force=True)
    logger.debug("initialized %s", store.location.url)
    return AdminResult(dict(repo.written), _root_bytes(repo))


def add_team(
    store: MetadataStore,
    settings: TufSettings,
    team: str,
    key_uri: str,
    repositories: Sequence[str],
    *,
    targets_signers: Sequence[Signer],
    expiry: timedelta | None = None,
    bin_threshold: int | None = None,
    bin_bits: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    clock: Callable[[], datetime] = utcnow,
) -> AdminResult:
    """Delegate a team's repositories to a new role signed by the team's key.

    Args:
        team: team and role name.
        key_uri: the team's online key (``awskms:...``).
        repositories: repository globs (see :mod:`regseal.tuf.paths`).
        targets_signers: top-level targets keys (a threshold of them).
        expiry: lifetime of the team role's versions (default from settings).
        bin_threshold: split into hash bins above this many targets.
        bin_bits: 2**bin_bits bins when split.
        max_depth: deepest repository a trailing ``**`` covers.

    Raises:
        PolicyError: bad team name or globs, or globs overlapping another team.
        TufError: the team exists, or keys do not sign.
    """
    check_team(team)
    path_patterns(repositories, max_depth)
    key = _online_key(key_uri)
    delegation = TeamDelegation(
        name=team,
        repositories=tuple(repositories),
        keyids=(key.keyid,),
        threshold=1,
        expiry=expiry or settings.team_expiry,
        bin_threshold=bin_threshold or settings.bin_threshold,
        bin_bits=bin_bits or settings.bin_bits,
        max_depth=max_depth,
    )

    signers = RoleSigners({"targets": _unique(targets_signers)})
    repo = _repository(store, settings, signers, clock)
    repo.root_md()
    targets_md = repo.load_trusted("targets")
    targets = targets_md.signed
    if targets.version == 0:
        raise TufError(f"{store.location.url}: no TUF repository; run 'tuf init'")
    for other in teams_of(targets):
        if other.name == team:
            raise TufError(
                f"team {team!r}: already delegated in targets v{targets.version}"
            )
        clashes = globs_overlap(delegation.repositories, other.repositories, max_depth)
        if clashes:
            raise PolicyError(
                f"team {team!r}: repository globs {clashes[0][0]!r} and team "
                f"{other.name!r}'s {clashes[0][1]!r} can name the same repository; "
                "team delegations must not overlap"
            )

    # The new targets, in memory, delegates to the team: sign the team role
    # against it first, so the delegation never points at a missing file.
    if targets.delegations is None:
        targets.delegations = Delegations(keys={}, roles={})
    assert targets.delegations.roles is not None
    targets.delegations.keys[key.keyid] = key
    targets.delegations.roles[team] = delegation.to_role()
    repo.set_delegator(team, targets, delegation.expiry)
    team_md = repo.open(team)
    team_md.signed.targets = {}
    team_md.signed.delegations = None
    repo.close(team, team_md)

    with repo.edit_targets() as edited:
        if edited.delegations is None:
            edited.delegations = Delegations(keys={}, roles={})
        assert edited.delegations.roles is not None
        edited.delegations.keys[key.keyid] = key
        edited.delegations.roles[team] = delegation.to_role()
    return AdminResult(dict(repo.written), _root_bytes(repo))


def rotate_root(
    store: MetadataStore,
    settings: TufSettings,
    *,
    current_signers: Sequence[Signer],
    new_signers: Sequence[Signer],
    threshold: int = 1,
    clock: Callable[[], datetime] = utcnow,
) -> AdminResult:
    """Replace the root keys: root N+1 signed by old and new thresholds.

    ``new_signers`` may repeat current keys (to keep some, or to re-sign root
    with the same keys before it expires).

    Raises:
        TufError: either threshold is not met.
    """
    new_signers = _unique(new_signers)
    _check_threshold("root", threshold, new_signers)
    signers = RoleSigners({"root": _unique([*current_signers, *new_signers])})
    repo = _repository(store, settings, signers, clock)
    with repo.edit_root() as root:
        _replace_keys(root, "root", [s.public_key for s in new_signers])
        root.roles["root"].threshold = threshold
    return AdminResult(dict(repo.written), _root_bytes(repo))


def rotate_targets(
    store: MetadataStore,
    settings: TufSettings,
    *,
    root_signers: Sequence[Signer],
    new_signers: Sequence[Signer],
    threshold: int = 1,
    clock: Callable[[], datetime] = utcnow,
) -> AdminResult:
    """Replace the top-level targets keys; targets is re-signed by the new ones."""
    new_signers = _unique(new_signers)
    _check_threshold("targets", threshold, new_signers)
    signers = RoleSigners({"root": _unique(root_signers), "targets": new_signers})
    repo = _repository(store, settings, signers, clock)
    with repo.edit_root() as root:
        _replace_keys(root, "targets", [s.public_key for s in new_signers])
        root.roles["targets"].threshold = threshold
    with repo.edit_targets():
        pass
    return AdminResult(dict(repo.written), _root_bytes(repo))


def rotate_online_role(
    store: MetadataStore,
    settings: TufSettings,
    role: str,
    *,
    root_signers: Sequence[Signer],
    new_key: str,
    clock: Callable[[], datetime] = utcnow,
) -> AdminResult:
    """Replace the snapshot or timestamp key in root.

    The current snapshot or timestamp then no longer verifies; the next refresh
    writes a new version signed by the new key (run it at once).
    """
    if role not in ONLINE_ROLES:
        raise TufError(f"expected one of {ONLINE_ROLES}, got {role!r}")
    key = _online_key(new_key)
    signers = RoleSigners({"root": _unique(root_signers)})
    repo = _repository(store, settings, signers, clock)
    with repo.edit_root() as root:
        _replace_keys(root, role, [key])
        root.roles[role].threshold = 1
    return AdminResult(dict(repo.written), _root_bytes(repo))


def rotate_team(
    store: MetadataStore,
    settings: TufSettings,
    team: str,
    *,
    targets_signers: Sequence[Signer],
    new_key: str,
    clock: Callable[[], datetime] = utcnow,
) -> AdminResult:
    """Replace a team's key without a moment where its metadata is invalid.

    1. targets N+1 delegates the team to the old and the new key;
    2. the team role and its bins are re-signed (team role first, carrying the
       new key set for its bins);
    3. targets N+2 delegates to the new key only;
    4. the team role and bins are re-signed with the new key alone.

    Every state in between verifies for clients. Writers that raced with a
    step re-sign their own versions (see :mod:`regseal.tuf.updates`).

    NOTE: step 2 signs with the old key too; after a compromise where the old
    key is already disabled, revoke it by hand first (not automated).
    """
    check_team(team)
    key = _online_key(new_key)
    signers = RoleSigners({"targets": _unique(targets_signers)})
    written: dict[str, int] = {}
    writer = TargetsWriter(store, max_attempts=settings.max_attempts, clock=clock)

    def edit_delegation(keep_old: bool) -> MetadataRepository:
        repo = _repository(store, settings, signers, clock)
        with repo.edit_targets() as targets:
            role, _ = find_team(targets, team)
            assert targets.delegations is not None
            old = [k for k in role.keyids if k != key.keyid]
            role.keyids = [*old, key.keyid] if keep_old else [key.keyid]
            targets.delegations.keys[key.keyid] = key
            if not keep_old:
                used = {
                    k
                    for r in (targets.delegations.roles or {}).values()
                    for k in r.keyids
                }
                for keyid in old:
                    if keyid not in used:
                        del targets.delegations.keys[keyid]
        written.update(repo.written)
        return repo

    edit_delegation(keep_old=True)
    written.update(writer.sync_team_keys(team).written)
    repo = edit_delegation(keep_old=False)
    written.update(writer.sync_team_keys(team).written)
    return AdminResult(written, _root_bytes(repo))


def _replace_keys(root: Root, role: str, keys: Sequence[Key]) -> None:
    for keyid in list(root.roles[role].keyids):
        root.revoke_key(keyid, role)
    for key in keys:
        root.add_key(key, role)
