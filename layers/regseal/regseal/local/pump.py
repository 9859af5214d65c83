"""The event pump: SQS messages to a handler, the way Lambda's SQS trigger does.

Each poll receives up to ten messages, hands them to the handler as one
Lambda-shaped SQS event, and deletes the messages the handler did not report
in ``batchItemFailures`` (Lambda's partial batch response). Failed messages are
left alone: they come back after the queue's visibility timeout, and the
queue's redrive policy moves them to the dead-letter queue after the last try.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from regseal.local.background import BackgroundLoop
from regseal.local.runtime import Handler, LambdaContext

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueOutputTypeDef,
        MessageTypeDef,
    )

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE = 10


@dataclass(frozen=True)
class BatchOutcome:
    """What one poll did."""

    received: int
    deleted: int
    failed: tuple[str, ...]
    """Message ids left in the queue for redelivery."""


def lambda_sqs_event(
    messages: Sequence[MessageTypeDef], *, queue_arn: str, region: str
) -> dict[str, Any]:
    """The event Lambda's SQS trigger would deliver for ``messages``."""
    return {
        "Records": [
            _lambda_record(message, queue_arn=queue_arn, region=region)
            for message in messages
        ]
    }


def _lambda_record(
    message: MessageTypeDef, *, queue_arn: str, region: str
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _lambda_attribute(value: MessageAttributeValueOutputTypeDef) -> dict[str, Any]:
    # Lambda spells the fields in camelCase and gives binary values as base64.
    attribute: dict[str, Any] = {
        "dataType": value["DataType"],
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [
            base64.b64encode(item).decode()
            for item in value.get("BinaryListValues", [])
        ],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return attribute


def failed_message_ids(
    response: object, message_ids: Collection[str]
) -> frozenset[str]:
    """The messages a handler's partial batch response reports as failed.

    Follows Lambda's rules: no response, an empty one or an empty
    ``batchItemFailures`` mean the whole batch succeeded; a response of another
    shape, or an item identifier that is missing, empty or not a message of
    the batch, means the whole batch failed.
    """
    everything = frozenset(message_ids)
    if response is None:
        return frozenset()
    if not isinstance(response, dict):
        return everything
    failures = response.get("batchItemFailures")
    if failures is None:
        return frozenset()
    if not isinstance(failures, list):
        return everything

    failed = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in everything:
            return everything
        failed.add(identifier)
    return frozenset(failed)


class EventPump(BackgroundLoop):
    """Feeds one queue to one handler, on a thread or one poll at a time."""

    def __init__(
        self,
        sqs: SQSClient,
        handler: Handler,
        *,
        queue_url: str,
        queue_arn: str,
        region: str,
        function_name: str = "regseal-seal",
        wait_seconds: int = 1,
    ) -> None:
        super().__init__(f"{function_name}-pump")
        self._sqs = sqs
        self._handler = handler
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._region = region
        self._function_name = function_name
        self._wait_seconds = wait_seconds
        self.ready = threading.Event()
        """Set once the first receive call has returned."""

    def poll_once(self, wait_seconds: int | None = None) -> BatchOutcome:
        """Receive one batch, run the handler on it, delete what succeeded.

        Args:
            wait_seconds: long-poll time of this receive (default: the pump's).
        """
        received = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=MAX_BATCH_SIZE,
            WaitTimeSeconds=self._wait_seconds
            if wait_seconds is None
            else wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        self.ready.set()
        messages = received.get("Messages", [])
        if not messages:
            return BatchOutcome(received=0, deleted=0, failed=())

        ids = [message["MessageId"] for message in messages]
        failed = self._invoke(messages, ids)
        done = [message for message in messages if message["MessageId"] not in failed]
        deleted = self._delete(done)
        return BatchOutcome(
            received=len(messages),
            deleted=deleted,
            failed=tuple(i for i in ids if i in failed),
        )

    def _invoke(self, messages: list[MessageTypeDef], ids: list[str]) -> frozenset[str]:
        event = lambda_sqs_event(
            messages, queue_arn=self._queue_arn, region=self._region
        )
        context = LambdaContext.for_invocation(self._function_name, region=self._region)
        try:
            response = self._handler(event, context)
        except Exception:
            # The pump plays the Lambda service here, which reports a failed
            # invocation and returns the whole batch to the queue.
            logger.warning(
                "%s raised; %d messages stay queued for redelivery",
                self._function_name,
                len(messages),
                exc_info=True,
            )
            return frozenset(ids)

        failed = failed_message_ids(response, ids)
        if failed:
            logger.info(
                "%s reported %d of %d messages failed; they stay queued",
                self._function_name,
                len(failed),
                len(messages),
            )
        return failed

    def _delete(self, messages: list[MessageTypeDef]) -> int:
        if not messages:
            return 0
        result = self._sqs.delete_message_batch(
            QueueUrl=self._queue_url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages)
            ],
        )
        for failure in result.get("Failed", []):
            logger.warning(
                "could not delete message %s: %s",
                messages[int(failure["Id"])]["MessageId"],
                failure.get("Message", failure["Code"]),
            )
        return len(result.get("Successful", []))

    def _run(self) -> None:
        # The first receive does not wait, so ``ready`` says at once that the
        # queue answers, even when it is empty.
        wait: int | None = 0
        while not self._stopping.is_set():
            try:
                outcome = self.poll_once(wait)
                wait = None
            except (BotoCoreError, ClientError) as exc:
                if self._stopping.is_set():
                    break
                logger.warning("receiving from %s failed: %s", self._queue_url, exc)
                self._stopping.wait(1.0)
                continue
            if outcome.received:
                logger.debug("pump: %s", outcome)
