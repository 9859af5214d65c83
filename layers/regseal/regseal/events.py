"""Storage event intake: S3 notifications and EventBridge, bare or in SQS.

Three shapes reach the seal function (reference/registry-on-s3.md §5):

- an S3 event notification (``{"Records": [{"eventSource": "aws:s3", ...}]}``),
  whose object keys are URL-encoded with ``quote_plus`` semantics (moto also
  encodes "/", real S3 does not; ``unquote_plus`` is right for both);
- an EventBridge "Object Created" / "Object Deleted" event, whose key is not
  encoded;
- either of them as the body of an SQS message.

``s3:TestEvent`` (sent when a notification is configured) yields nothing.
The event only says *which* key changed; the seal reads the current state.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from regseal.errors import EventError


class Action(enum.Enum):
    CREATED = "created"
    REMOVED = "removed"


@dataclass(frozen=True)
class ObjectEvent:
    """One object that changed in a bucket."""

    bucket: str
    key: str
    action: Action


def parse_body(body: str | bytes) -> list[ObjectEvent]:
    """Parse an SQS message body holding an S3 or EventBridge event."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventError(f"expected a JSON event in the message body: {exc}") from None
    return parse_event(doc)


def parse_event(doc: Any) -> list[ObjectEvent]:
    """Parse an S3 notification or EventBridge event into object events.

    Raises:
        EventError: the document is neither shape, or lacks bucket or key.
    """
    if not isinstance(doc, Mapping):
        raise EventError(f"expected an event object, got {type(doc).__name__}")
    if doc.get("Event") == "s3:TestEvent":
        return []
    if "Records" in doc:
        return list(_s3_records(doc["Records"]))
    if doc.get("source") == "aws.s3" and "detail-type" in doc:
        return [_eventbridge(doc)]
    raise EventError(
        "expected an S3 notification ('Records') or an EventBridge aws.s3 event, "
        f"got keys {sorted(doc)[:8]}"
    )


def _s3_records(records: Any) -> Iterator[ObjectEvent]:
    if not isinstance(records, list):
        raise EventError("expected 'Records' to be a list")
    for index, record in enumerate(records):
        where = f"Records[{index}]"
        if not isinstance(record, Mapping) or record.get("eventSource") != "aws:s3":
            raise EventError(f"{where}: expected an aws:s3 record")
        name = str(record.get("eventName", ""))
        s3 = record.get("s3")
        try:
            bucket = s3["bucket"]["name"]  # type: ignore[index]
            key = unquote_plus(s3["object"]["key"])  # type: ignore[index]
        except (KeyError, TypeError):
            raise EventError(
                f"{where}: expected s3.bucket.name and s3.object.key"
            ) from None
        yield ObjectEvent(str(bucket), key, _action(name, where))


def _eventbridge(doc: Mapping[str, Any]) -> ObjectEvent:
    detail = doc.get("detail")
    try:
        bucket = detail["bucket"]["name"]  # type: ignore[index]
        key = detail["object"]["key"]  # type: ignore[index]
    except (KeyError, TypeError):
        raise EventError(
            "EventBridge event: expected detail.bucket.name and detail.object.key"
        ) from None
    return ObjectEvent(str(bucket), str(key), _action(str(doc["detail-type"]), "event"))


def _action(name: str, where: str) -> Action:
    if name.startswith("ObjectCreated") or name == "Object Created":
        return Action.CREATED
    if name.startswith("ObjectRemoved") or name == "Object Deleted":
        return Action.REMOVED
    raise EventError(
        f"{where}: expected an object created or removed event, got {name!r}"
    )
