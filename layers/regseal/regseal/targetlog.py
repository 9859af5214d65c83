"""Recording sealed tags as TUF targets, and telling the TUF function.

The seal calls a :class:`TargetLog` after each tag move; the TUF-backed one
adds the target to the team's delegated role (python-tuf metadata in S3, see
:mod:`regseal.tuf`) and sends the "targets changed" message to the queue of
the TUF function, which then signs a new snapshot and timestamp.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from regseal.tuf.messages import TargetsChanged
from regseal.tuf.targets import TargetCustom
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

    def _changed(self, update: TargetUpdate) -> bool:
        message = update.targets_changed
        if message is not None and self.notify is not None:
            self.notify(message)
        logger.debug(
            "target %s in %s: changed=%s", update.path, update.role, update.changed
        )
        return update.changed


def sqs_notifier(client: object, queue_url: str) -> Callable[[TargetsChanged], None]:
    """Send "targets changed" messages to an SQS queue."""

    def notify(message: TargetsChanged) -> None:
        client.send_message(QueueUrl=queue_url, MessageBody=message.to_json())  # type: ignore[attr-defined]

    return notify
