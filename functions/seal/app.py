"""Seal function: seal every image pushed to the registry.

Consumes SQS batches whose messages carry S3 notifications or EventBridge
"Object Created" events for the registry's tag and revision links, and
reports failed messages individually so that only they are retried (and,
after the queue's receive limit, land in the dead-letter queue). Direct
invocations with an S3 or EventBridge event are accepted too.

A failure is logged as an error once, on the delivery after which the queue
gives up on the message (``REGSEAL_MAX_RECEIVE_COUNT``, the queue's
``maxReceiveCount``); earlier deliveries log it as a warning. Without that
setting every delivery counts as the last.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from regseal import events
from regseal.errors import RegsealError, RetryableError
from regseal.redelivery import BAD_INPUT, hasten
from regseal.seal import Outcome, Sealer, SealResult
from regseal.wiring import build_sealer, sqs_client

logger = Logger(service="regseal")
metrics = Metrics(namespace="regseal", service="regseal")
tracer = Tracer(service="regseal")
processor = BatchProcessor(
    event_type=EventType.SQS, raise_on_entire_batch_failure=False
)

_sealer: Sealer | None = None
_sqs: Any = None


def sealer() -> Sealer:
    global _sealer
    if _sealer is None:
        _sealer = build_sealer()
    return _sealer


def seal_event(event: events.ObjectEvent, *, last_delivery: bool = True) -> SealResult:
    try:
        result = sealer().handle(event)
    except RetryableError as exc:
        if last_delivery:
            _log_failure(event.key, exc, last_delivery=True)
        else:
            logger.info("seal deferred", extra={"key": event.key, "reason": str(exc)})
        raise
    except RegsealError as exc:
        _log_failure(event.key, exc, last_delivery=last_delivery)
        raise
    except Exception as exc:
        # A bug, or an error from outside regseal: still one line, with the
        # traceback when nothing will try again.
        _log_failure(event.key, exc, last_delivery=last_delivery, traceback=True)
        raise
    if result.outcome is Outcome.IGNORED:
        logger.debug("event ignored", extra=result.fields())
    else:
        logger.info("seal finished", extra=result.fields())
    if result.outcome is Outcome.SEALED:
        metrics.add_metric("ImagesSealed", MetricUnit.Count, 1)
    metrics.add_metric("LayersSealed", MetricUnit.Count, result.layers_sealed)
    metrics.add_metric("BytesSealed", MetricUnit.Bytes, result.bytes_sealed)
    return result


def _log_failure(
    key: str, exc: Exception, *, last_delivery: bool, traceback: bool = False
) -> None:
    fields = {"key": key, "error": type(exc).__name__, "reason": str(exc)}
    if last_delivery:
        logger.error("seal failed", extra=fields, exc_info=exc if traceback else None)
    else:
        logger.warning("seal failed; the message will be delivered again", extra=fields)


def is_last_delivery(record: SQSRecord) -> bool:
    """Whether the queue moves ``record`` to the dead-letter queue if it fails now."""
    try:
        limit = sealer().settings.max_receive_count
    except RegsealError:
        return True  # the seal itself fails the same way and logs why
    if limit <= 0:
        return True
    try:
        received = int(record.attributes.approximate_receive_count)
    except (KeyError, TypeError, ValueError):
        return True
    return received >= limit


def record_handler(record: SQSRecord) -> None:
    last_delivery = is_last_delivery(record)
    try:
        parsed = events.parse_body(record.body)
    except RegsealError as exc:
        fields = {"message_id": record.message_id, "reason": str(exc)}
        if last_delivery:
            logger.error("unreadable message", extra=fields)
        else:
            logger.warning(
                "unreadable message; it will be delivered again", extra=fields
            )
            if isinstance(exc, BAD_INPUT):
                _redeliver_soon(record)
        raise
    try:
        for event in parsed:
            seal_event(event, last_delivery=last_delivery)
    except BAD_INPUT:
        if not last_delivery:
            _redeliver_soon(record)
        raise


def _redeliver_soon(record: SQSRecord) -> None:
    """Bad input fails every delivery alike: let the queue park it now."""
    try:
        settings = sealer().settings
    except RegsealError:
        return  # the seal cannot even start; the queue's own timeout stands
    if settings.queue_url and settings.bad_input_retry_seconds > 0:
        global _sqs
        if _sqs is None:
            _sqs = sqs_client()
        hasten(
            _sqs,
            settings.queue_url,
            record.receipt_handle,
            settings.bad_input_retry_seconds,
        )


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") or []
    if records and all(r.get("eventSource") == "aws:sqs" for r in records):
        return dict(
            process_partial_response(
                event=event,
                record_handler=record_handler,
                processor=processor,
                context=context,
            )
        )
    results = [seal_event(e) for e in events.parse_event(event)]
    return {"results": [r.fields() for r in results]}
