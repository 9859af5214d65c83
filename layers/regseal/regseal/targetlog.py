"""Recording sealed tags as TUF targets, and telling the TUF function.

The seal calls a :class:`TargetLog` after each tag move; the TUF-backed one
adds the target to the team's delegated role (python-tuf metadata in S3, see
:mod:`regseal.tuf`) and sends the "targets changed" message to the queue of
the TUF function, which then signs a new snapshot and timestamp.
:class:`StoredTargets` reads them back, unverified, for ``regseal status``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from tuf.api.metadata import TargetFile, Targets

from regseal.tuf.messages import TargetsChanged
from regseal.tuf.repository import MetadataRepository
from regseal.tuf.targets import TargetCustom, target_path
from regseal.tuf.updates import TargetsWriter, TargetUpdate

logger = logging.getLogger(__name__)


class TargetLog(Protocol):
    """Where the seal records which sealed manifest each tag points at."""

    def record(
        self,
        team: str,
        repository: str,
        tag: str,
        manifest: bytes,
        custom: TargetCustom,
        *,
        newer_only: bool = False,
    ) -> bool:
        """Record ``repository:tag`` -> ``manifest``; True if anything changed.

        With ``newer_only`` the target only moves forward: it is kept when it
        names ``manifest`` already, and a manifest sealed before the one it
        names (``custom.sealed_at``) raises
        :class:`~regseal.errors.TargetRollbackError`, writing nothing.
        """

    def forget(self, team: str, repository: str, tag: str) -> bool:
        """Remove the target of a deleted tag; True if anything changed."""


class TufTargetLog:
    """Targets in regseal's TUF repository.

    Args:
        writer: writes the team roles.
        notify: sends a "targets changed" message to the TUF function (None
            when only its schedule refreshes snapshot and timestamp).
    """

    def __init__(
        self,
        writer: TargetsWriter,
        notify: Callable[[TargetsChanged], None] | None = None,
    ) -> None:
        self.writer = writer
        self.notify = notify

    def record(
        self,
        team: str,
        repository: str,
        tag: str,
        manifest: bytes,
        custom: TargetCustom,
        *,
        newer_only: bool = False,
    ) -> bool:
        update = self.writer.add_target(
            team, repository, tag, manifest, custom, newer_only=newer_only
        )
        return self._changed(update)

    def forget(self, team: str, repository: str, tag: str) -> bool:
        return self._changed(self.writer.remove_target(team, repository, tag))

    def stored(self) -> StoredTargets:
        """What the team roles in the metadata store list now (for status)."""
        return StoredTargets(self.writer.repository())

    def _changed(self, update: TargetUpdate) -> bool:
        message = update.targets_changed
        if message is not None and self.notify is not None:
            self.notify(message)
        logger.debug(
            "target %s in %s: changed=%s", update.path, update.role, update.changed
        )
        return update.changed


class StoredTargets:
    """The targets the newest stored team roles (or their hash bins) list.

    Read-only and not verified: it says what the metadata in the store holds
    right now, for ``regseal status``; ``regseal verify`` runs the reference
    client, which checks signatures, versions and expiry. Each role is read
    once per instance.

    Args:
        repository: a view of the metadata store.
    """

    def __init__(self, repository: MetadataRepository) -> None:
        self._repository = repository

    def find(self, team: str, repository: str, tag: str) -> TargetFile | None:
        """The target of ``repository:tag`` in ``team``'s role, or None.

        Raises:
            TufError: a role file is not the metadata it should be.
            StorageError: the store cannot be read.
        """
        path = target_path(repository, tag)
        team_md = self._repository.load(team)
        if team_md is None:
            return None
        signed: Targets = team_md.signed
        if path in signed.targets:
            return signed.targets[path]
        delegations = signed.delegations
        if delegations is None or delegations.succinct_roles is None:
            return None
        bin_md = self._repository.load(
            delegations.succinct_roles.get_role_for_target(path)
        )
        if bin_md is None:
            return None
        found: TargetFile | None = bin_md.signed.targets.get(path)
        return found


def sqs_notifier(client: object, queue_url: str) -> Callable[[TargetsChanged], None]:
    """Send "targets changed" messages to an SQS queue."""

    def notify(message: TargetsChanged) -> None:
        client.send_message(QueueUrl=queue_url, MessageBody=message.to_json())  # type: ignore[attr-defined]

    return notify
