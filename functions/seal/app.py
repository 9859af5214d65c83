"""Seal function: seal every image pushed to the registry.

Consumes SQS batches whose messages carry S3 notifications or EventBridge
"Object Created" events for the registry's tag and revision links, and
reports failed messages individually so that only they are retried (and,
after the queue's receive limit, land in the dead-letter queue). Direct
invocations with an S3 or EventBridge event are accepted too.
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
from regseal.seal import Outcome, Sealer, SealResult
from regseal.wiring import build_sealer

logger = Logger(service="regseal")
metrics = Metrics(namespace="regseal", service="regseal")
tracer = Tracer(service="regseal")
processor = BatchProcessor(
    event_type=EventType.SQS, raise_on_entire_batch_failure=False
)

_sealer: Sealer | None = None


def sealer() -> Sealer:
    global _sealer
    if _sealer is None:
        _sealer = build_sealer()
    return _sealer


def seal_event(event: events.ObjectEvent) -> SealResult:
    try:
        result = sealer().handle(event)
    except RetryableError as exc:
        logger.info("seal deferred", extra={"key": event.key, "reason": str(exc)})
        raise
    except RegsealError as exc:
        logger.error(
            "seal failed",
            extra={"key": event.key, "error": type(exc).__name__, "reason": str(exc)},
        )
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


def record_handler(record: SQSRecord) -> None:
    try:
        parsed = events.parse_body(record.body)
    except RegsealError as exc:
        logger.error(
            "unreadable message",
            extra={"message_id": record.message_id, "reason": str(exc)},
        )
        raise
    for event in parsed:
        seal_event(event)


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
