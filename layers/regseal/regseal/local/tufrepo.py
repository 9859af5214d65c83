"""The local stack's TUF repository: keys, root, one delegation per policy team.

What an operator does once with ``regseal tuf init`` and ``regseal tuf
add-team``, the stack does at every start, against moto:

- offline root and top-level targets keys as ed25519 key files in the work
  directory (``tuf/root-key.pem``, ``tuf/targets-key.pem``, mode 0600, fresh
  for every stack);
- snapshot, timestamp and team keys as KMS keys in moto (made by
  :func:`regseal.local.resources.create_tuf_resources`);
- the repository at ``s3://<bucket>/tuf/``, one delegated role per policy team
  covering the team's repositories, and a first snapshot and timestamp that
  list them;
- the trusted root, written to ``tuf/root.json`` for ``regseal verify`` and
  other TUF clients.

Policy repository patterns use ``*`` across ``/`` (KMS ``StringLike``); TUF
patterns match one component at a time (:mod:`regseal.tuf.paths`). The demo
policy's ``*`` therefore becomes the globs ``*`` and ``*/**``: any repository
of up to :data:`regseal.tuf.paths.DEFAULT_MAX_DEPTH` components.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from regseal.errors import LocalStackError, PolicyError, TufError
from regseal.policy import UNMATCHED_FAIL, UNMATCHED_SKIP, Policy
from regseal.tuf import admin
from regseal.tuf.paths import RECURSIVE
from regseal.tuf.publish import Publisher
from regseal.tuf.settings import TufSettings
from regseal.tuf.signers import generate_key_file, load_signer
from regseal.tuf.store import MetadataLocation, MetadataStore

logger = logging.getLogger(__name__)

TUF_PREFIX = "tuf/"
TUF_DIRECTORY = "tuf"
ROOT_KEY_FILE = "root-key.pem"
TARGETS_KEY_FILE = "targets-key.pem"
ROOT_FILE = "root.json"


@dataclass(frozen=True)
class LocalTuf:
    """The local stack's TUF repository once it is set up.

    Attributes:
        location: bucket and prefix of the metadata.
        metadata_url: the metadata over plain HTTP from moto's S3 endpoint,
            as ngclient fetches it (path-style, no credentials needed).
        root_file: the trusted root to bootstrap clients from.
        root_key_file: the offline root key (ed25519, PEM PKCS#8).
        targets_key_file: the offline top-level targets key.
        teams: team -> the TUF repository globs delegated to it.
    """

    location: MetadataLocation
    metadata_url: str
    root_file: Path
    root_key_file: Path
    targets_key_file: Path
    teams: Mapping[str, tuple[str, ...]]


def tuf_globs(pattern: str) -> tuple[str, ...]:
    """The TUF repository globs covering what a policy pattern names.

    A policy pattern's ``*`` matches across ``/``; a TUF glob's ``*`` stays in
    one component and ``**`` (last only) stands for one or more components.

    Raises:
        PolicyError: the pattern has a form that TUF globs cannot express
            exactly (a wildcard anywhere but as a whole last component).
    """
    if pattern == "*":
        return ("*", f"*/{RECURSIVE}")
    head, _, last = pattern.rpartition("/")
    if "*" not in head and "?" not in head:
        if last == "*" and head:
            return (f"{head}/{RECURSIVE}",)
        if "*" not in last and "?" not in last:
            return (pattern,)
    raise PolicyError(
        f"repository pattern {pattern!r}: the local stack can delegate exact "
        "names, '*' and 'prefix/*' in TUF; run with --no-tuf for other patterns"
    )


def team_globs(policy: Policy) -> dict[str, tuple[str, ...]]:
    """Each policy team's TUF repository globs.

    Raises:
        PolicyError: a pattern cannot be delegated (see :func:`tuf_globs`), or
            ``unmatched`` names a team (its repositories have no pattern).
    """
    if policy.unmatched not in (UNMATCHED_SKIP, UNMATCHED_FAIL):
        raise PolicyError(
            f"policy {policy.version!r}: 'unmatched' gives repositories to team "
            f"{policy.unmatched!r}, which TUF cannot delegate by pattern; run "
            "with --no-tuf"
        )
    globs: dict[str, tuple[str, ...]] = {}
    for team in policy.teams:
        found: list[str] = []
        for pattern in team.repositories:
            found += [g for g in tuf_globs(pattern) if g not in found]
        globs[team.name] = tuple(found)
    return globs


def _fresh_key_file(path: Path) -> None:
    path.unlink(missing_ok=True)
    generate_key_file(path, "ed25519")


def set_up_repository(
    store: MetadataStore,
    *,
    workdir: Path,
    endpoint: str,
    snapshot_key: str,
    timestamp_key: str,
    team_keys: Mapping[str, str],
    teams: Mapping[str, Sequence[str]],
) -> LocalTuf:
    """Create the repository, delegate every team, publish, write the root.

    The AWS environment of this process must point at moto (the KMS signers
    are made from it).

    Args:
        store: the metadata store (its bucket must exist and be empty there).
        workdir: the stack's work directory; files go to its ``tuf/``.
        endpoint: moto's endpoint URL, for the metadata URL.
        snapshot_key: ``awskms:`` URI of the snapshot key.
        timestamp_key: the same for timestamp.
        team_keys: team -> ``awskms:`` URI of its key.
        teams: team -> TUF repository globs (see :func:`team_globs`).

    Raises:
        LocalStackError: a step failed; the message names it.
    """
    directory = workdir / TUF_DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    root_key = (directory / ROOT_KEY_FILE).resolve()
    targets_key = (directory / TARGETS_KEY_FILE).resolve()
    for path in (root_key, targets_key):
        _fresh_key_file(path)

    settings = TufSettings(location=store.location)
    try:
        root_signer = load_signer(str(root_key))
        targets_signer = load_signer(str(targets_key))
        result = admin.init_repository(
            store,
            settings,
            root_signers=[root_signer],
            targets_signers=[targets_signer],
            snapshot_key=snapshot_key,
            timestamp_key=timestamp_key,
        )
        for team, globs in teams.items():
            result = admin.add_team(
                store,
                settings,
                team,
                team_keys[team],
                list(globs),
                targets_signers=[targets_signer],
            )
        Publisher(store, settings).refresh_snapshot_and_timestamp()
    except (TufError, PolicyError) as exc:
        raise LocalStackError(f"setting up TUF at {store.location.url}: {exc}") from exc

    root_file = (directory / ROOT_FILE).resolve()
    root_file.write_bytes(result.root)
    location = store.location
    metadata_url = f"{endpoint}/{location.bucket}/{location.prefix}"
    logger.debug("TUF repository at %s, root in %s", metadata_url, root_file)
    return LocalTuf(
        location=location,
        metadata_url=metadata_url,
        root_file=root_file,
        root_key_file=root_key,
        targets_key_file=targets_key,
        teams={team: tuple(globs) for team, globs in teams.items()},
    )
