"""The TUF function: publish snapshot and timestamp when targets change.

Triggers:

- an SQS batch of "targets changed" messages from the seal function (body
  ``{"type": "regseal.tuf.targets-changed", "roles": {...}}``): one refresh for
  the whole batch, with the named roles as hints. A malformed message is
  reported in ``batchItemFailures`` (the event source mapping needs
  ``ReportBatchItemFailures``) so it alone goes back to the queue and, after
  the redrive count, to the dead-letter queue;
- an EventBridge schedule (``"source": "aws.events"``, e.g. hourly): a full
  refresh that probes every role and re-signs what nears expiry.

Run it with reserved concurrency 1: conditional writes keep concurrent runs
correct, but one writer avoids lost races (tuf.md §6).

Environment: see :mod:`regseal.tuf.settings` (``REGSEAL_TUF_BUCKET``,
``REGSEAL_TUF_PREFIX``, ``REGSEAL_TUF_SNAPSHOT_KEY``, ``REGSEAL_TUF_TIMESTAMP_KEY``,
``REGSEAL_TUF_SIGNING_WINDOW_HOURS``, ...) plus Powertools' ``LOG_LEVEL`` and
``POWERTOOLS_SERVICE_NAME``. IAM: ``s3:GetObject``/``PutObject`` on the prefix,
``s3:ListBucket`` (so a missing key is a 404, not a 403), ``kms:Sign`` on the
snapshot and timestamp keys, and on the team keys when
``REGSEAL_TUF_RESIGN_TEAMS`` is true.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from regseal.errors import EventError
from regseal.tuf.messages import TargetsChanged
from regseal.tuf.publish import Publisher
from regseal.tuf.settings import TufSettings
from regseal.tuf.store import MetadataStore

logger = Logger(service="regseal-tuf")
# securesystemslib logs whole KMS responses at debug; keep them out of the logs.
logging.getLogger("securesystemslib").setLevel(logging.INFO)

_publisher: Publisher | None = None


def publisher() -> Publisher:
    """The process's publisher, built from the environment on first use."""
    global _publisher
    if _publisher is None:
        settings = TufSettings.from_env()
        _publisher = Publisher(MetadataStore.connect(settings.location), settings)
    return _publisher


def parse_event(
    event: dict[str, Any],
) -> tuple[str, dict[str, int] | None, list[dict[str, str]]]:
    """The trigger kind, the role hints (None: probe all) and bad SQS messages.

    Raises:
        EventError: neither an SQS batch nor a scheduled event.
    """
    records = event.get("Records")
    if isinstance(records, list) and records:
        changed = TargetsChanged()
        failures: list[dict[str, str]] = []
        for record in records:
            source = record.get("eventSource")
            if source != "aws:sqs":
                raise EventError(f"expected SQS records, got eventSource {source!r}")
            try:
                changed = changed.merge(
                    TargetsChanged.from_json(record.get("body", ""))
                )
            except EventError as exc:
                logger.error(
                    "poison message",
                    extra={"message_id": record.get("messageId"), "reason": str(exc)},
                )
                failures.append({"itemIdentifier": str(record.get("messageId"))})
        return "sqs", dict(changed.roles), failures
    if event.get("source") == "aws.events" or event.get("detail-type") == (
        "Scheduled Event"
    ):
        return "schedule", None, []
    raise EventError(
        "expected an SQS batch of targets-changed messages or a scheduled "
        f"EventBridge event, got keys {sorted(event)[:8]}"
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Refresh snapshot and timestamp; failures raise so the trigger retries."""
    trigger, hints, failures = parse_event(event)
    response: dict[str, Any] = {"trigger": trigger}
    if trigger == "sqs":
        response["batchItemFailures"] = failures
        if not hints:
            return response

    result = publisher().refresh_snapshot_and_timestamp(hints=hints)
    logger.info(
        "tuf refreshed",
        extra={
            "trigger": trigger,
            "hinted_roles": len(hints or {}),
            "snapshot_version": result.snapshot_version,
            "snapshot_written": result.snapshot_written,
            "timestamp_version": result.timestamp_version,
            "timestamp_written": result.timestamp_written,
            "updated_roles": len(result.updated),
            "resigned": list(result.resigned),
        },
    )
    if result.held_back:
        logger.error("tuf roles held back", extra={"held_back": dict(result.held_back)})
    if result.offline_expiring:
        logger.warning(
            "offline tuf roles expire soon",
            extra={"roles": list(result.offline_expiring)},
        )
    if result.teams_expiring:
        logger.warning(
            "team tuf roles expire soon",
            extra={"roles": list(result.teams_expiring)},
        )
    response.update(
        snapshot_version=result.snapshot_version,
        timestamp_version=result.timestamp_version,
        snapshot_written=result.snapshot_written,
        timestamp_written=result.timestamp_written,
        held_back=sorted(result.held_back),
        offline_expiring=list(result.offline_expiring),
        teams_expiring=list(result.teams_expiring),
    )
    return response
