import json
import time

import boto3
import pytest
from moto import mock_aws

from regseal.local import resources
from regseal.local.pump import EventPump, failed_message_ids, lambda_sqs_event

REGION = "us-east-1"
LAMBDA_RECORD_FIELDS = {
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
}


class RecordingHandler:
    """Records each event; fails the messages whose body is in ``fail_bodies``."""

    def __init__(self, fail_bodies=(), raises=False):
        self.fail_bodies = set(fail_bodies)
        self.raises = raises
        self.events = []
        self.contexts = []

    def __call__(self, event, context):
        self.events.append(event)
        self.contexts.append(context)
        if self.raises:
            raise RuntimeError("handler crashed")
        return {
            "batchItemFailures": [
                {"itemIdentifier": record["messageId"]}
                for record in event["Records"]
                if record["body"] in self.fail_bodies
            ]
        }


@pytest.fixture
def stack_queues():
    """The stack's queues in moto, with no visibility delay so retries are instant."""
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        made = resources.create_resources(session, None, policy_document=b"{}")
        sqs = session.client("sqs")
        sqs.set_queue_attributes(
            QueueUrl=made.queue_url, Attributes={"VisibilityTimeout": "0"}
        )
        # Drop the s3:TestEvent that configuring the notification sent.
        sqs.purge_queue(QueueUrl=made.queue_url)
        yield sqs, made


def make_pump(sqs, made, handler):
    return EventPump(
        sqs,
        handler,
        queue_url=made.queue_url,
        queue_arn=made.queue_arn,
        region=REGION,
        wait_seconds=0,
    )


def send(sqs, queue_url, *bodies):
    return [
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"]
        for body in bodies
    ]


def queued(sqs, queue_url):
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", [])
    return sorted(message["Body"] for message in messages)


def test_pump_hands_a_lambda_shaped_batch_and_deletes_what_succeeded(stack_queues):
    sqs, made = stack_queues
    ids = send(sqs, made.queue_url, "one", "two", "three")
    handler = RecordingHandler()

    outcome = make_pump(sqs, made, handler).poll_once()

    assert (outcome.received, outcome.deleted, outcome.failed) == (3, 3, ())
    [event] = handler.events
    records = event["Records"]
    assert sorted(r["messageId"] for r in records) == sorted(ids)
    assert sorted(r["body"] for r in records) == ["one", "three", "two"]
    for record in records:
        assert set(record) == LAMBDA_RECORD_FIELDS
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == made.queue_arn
        assert record["awsRegion"] == REGION
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert record["messageAttributes"] == {}
    assert handler.contexts[0].function_name == "regseal-seal"
    assert handler.contexts[0].get_remaining_time_in_millis() > 0
    assert queued(sqs, made.queue_url) == []


def test_pump_hands_at_most_ten_messages_per_invocation(stack_queues):
    sqs, made = stack_queues
    send(sqs, made.queue_url, *(f"m{i}" for i in range(13)))
    handler = RecordingHandler()
    pump = make_pump(sqs, made, handler)

    first, second, third = pump.poll_once(), pump.poll_once(), pump.poll_once()

    assert (first.received, second.received, third.received) == (10, 3, 0)
    assert [len(event["Records"]) for event in handler.events] == [10, 3]
    bodies = sorted(r["body"] for e in handler.events for r in e["Records"])
    assert bodies == sorted(f"m{i}" for i in range(13))


def test_pump_leaves_reported_failures_queued_for_redelivery(stack_queues):
    sqs, made = stack_queues
    _, bad_id, _ = send(sqs, made.queue_url, "good", "bad", "fine")
    handler = RecordingHandler(fail_bodies={"bad"})
    pump = make_pump(sqs, made, handler)

    outcome = pump.poll_once()
    retry = pump.poll_once()

    assert (outcome.received, outcome.deleted, outcome.failed) == (3, 2, (bad_id,))
    assert (retry.received, retry.failed) == (1, (bad_id,))
    [record] = handler.events[1]["Records"]
    assert record["body"] == "bad"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"


def test_handler_exception_returns_the_whole_batch_to_the_queue(stack_queues):
    sqs, made = stack_queues
    send(sqs, made.queue_url, "a", "b")

    outcome = make_pump(sqs, made, RecordingHandler(raises=True)).poll_once()

    assert (outcome.received, outcome.deleted, len(outcome.failed)) == (2, 0, 2)
    assert queued(sqs, made.queue_url) == ["a", "b"]


def test_message_failing_every_time_ends_in_the_dead_letter_queue(stack_queues):
    sqs, made = stack_queues
    send(sqs, made.queue_url, "poison")
    pump = make_pump(sqs, made, RecordingHandler(fail_bodies={"poison"}))

    outcomes = [pump.poll_once() for _ in range(resources.MAX_RECEIVE_COUNT + 1)]

    assert [o.received for o in outcomes] == [1, 1, 1, 0]
    assert queued(sqs, made.dead_letter_queue_url) == ["poison"]


def test_message_attributes_take_lambda_spelling():
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": "{}",
        "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "MD5OfMessageAttributes": "0123",
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MessageAttributes": {
            "kind": {"DataType": "String", "StringValue": "tag"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    }

    [record] = lambda_sqs_event(
        [message], queue_arn="arn:aws:sqs:us-east-1:1:q", region=REGION
    )["Records"]

    assert record["md5OfMessageAttributes"] == "0123"
    assert record["messageAttributes"] == {
        "kind": {
            "dataType": "String",
            "stringValue": "tag",
            "stringListValues": [],
            "binaryListValues": [],
        },
        "blob": {
            "dataType": "Binary",
            "binaryValue": "AAE=",
            "stringListValues": [],
            "binaryListValues": [],
        },
    }
    assert json.loads(json.dumps(record)) == record


BATCH = ("id-1", "id-2")


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "id-2"}]}, {"id-2"}),
        ({"batchItemFailures": [{"itemIdentifier": "id-9"}]}, set(BATCH)),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, set(BATCH)),
        ({"batchItemFailures": [{"itemId": "id-1"}]}, set(BATCH)),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, set(BATCH)),
        ({"batchItemFailures": "id-1"}, set(BATCH)),
        ("ok", set(BATCH)),
        ([], set(BATCH)),
    ],
)
def test_partial_batch_response_follows_lambda_rules(response, failed):
    assert failed_message_ids(response, BATCH) == failed


def test_pump_is_ready_at_once_on_an_empty_queue_despite_long_polling(stack_queues):
    sqs, made = stack_queues
    pump = EventPump(
        sqs,
        RecordingHandler(),
        queue_url=made.queue_url,
        queue_arn=made.queue_arn,
        region=REGION,
        wait_seconds=2,
    )
    started = time.monotonic()
    pump.start()
    ready = pump.ready.wait(5)
    waited = time.monotonic() - started
    pump.stop()

    assert ready
    assert waited < 1.0
    assert not pump.is_alive()
