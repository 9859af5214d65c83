"""How the seal function logs a failing message across its SQS deliveries.

A poison message is delivered ``maxReceiveCount`` times and then moved to the
dead-letter queue; its reason must be logged as an error once, on the last
delivery, and never go unlogged.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import boto3
import pytest

from tests.functional.conftest import BUCKET
from tests.support.registry import random_layer, s3_event

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "seal" / "app.py"


class Context:
    function_name = "regseal-seal"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:regseal-seal"
    aws_request_id = "test-request"


def delivery(body: dict | str, received: int) -> dict:
    """A Lambda SQS event with one message on its ``received``-th delivery."""
    return {
        "Records": [
            {
                "messageId": "m-0",
                "receiptHandle": "r-0",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {"ApproximateReceiveCount": str(received)},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:regseal-events",
                "awsRegion": "us-east-1",
            }
        ]
    }


def load_app(stack, tmp_path, monkeypatch, max_receive_count):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(stack.policy))
    monkeypatch.setenv("REGSEAL_BUCKET", BUCKET)
    monkeypatch.setenv("REGSEAL_POLICY", f"file:{policy}")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    if max_receive_count is None:
        monkeypatch.delenv("REGSEAL_MAX_RECEIVE_COUNT", raising=False)
    else:
        monkeypatch.setenv("REGSEAL_MAX_RECEIVE_COUNT", str(max_receive_count))
    spec = importlib.util.spec_from_file_location("seal_app_deliveries", HANDLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def failed_ids(response: dict) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def logged(caplog, level: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == level]


def test_poison_message_is_a_warning_until_its_last_delivery_then_one_error(
    stack, tmp_path, monkeypatch, caplog
):
    app = load_app(stack, tmp_path, monkeypatch, max_receive_count=3)
    stack.registry.put_manifest("team-a/app", b"not json", "bad")
    event = s3_event(BUCKET, stack.sealer.layout.tag_link("team-a/app", "bad"))

    responses = [app.handler(delivery(event, n), Context()) for n in (1, 2, 3)]

    assert [failed_ids(r) for r in responses] == [["m-0"]] * 3
    assert (
        logged(caplog, "WARNING")
        == ["seal failed; the message will be delivered again"] * 2
    )
    assert logged(caplog, "ERROR") == ["seal failed"]
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert error.key == stack.sealer.layout.tag_link("team-a/app", "bad")
    assert "expected manifest JSON" in error.reason


def test_deferral_that_runs_out_of_deliveries_is_logged_as_an_error(
    stack, tmp_path, monkeypatch, caplog
):
    app = load_app(stack, tmp_path, monkeypatch, max_receive_count=3)
    pushed = stack.registry.push_image("team-a/app", None, [random_layer()])
    key = stack.sealer.layout.revision_link("team-a/app", pushed.digest)

    first = app.handler(delivery(s3_event(BUCKET, key), 1), Context())
    errors_after_first = logged(caplog, "ERROR")
    last = app.handler(delivery(s3_event(BUCKET, key), 3), Context())

    assert failed_ids(first) == failed_ids(last) == ["m-0"]
    assert errors_after_first == []
    assert "seal deferred" in logged(caplog, "INFO")
    assert logged(caplog, "ERROR") == ["seal failed"]
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert error.error == "RetryableError"
    assert "pushed by digest" in error.reason


@pytest.mark.parametrize("received", [1, 2])
def test_without_a_receive_limit_every_failure_is_an_error(
    stack, tmp_path, monkeypatch, caplog, received
):
    app = load_app(stack, tmp_path, monkeypatch, max_receive_count=None)
    stack.registry.put_manifest("team-a/app", b"not json", "bad")
    event = s3_event(BUCKET, stack.sealer.layout.tag_link("team-a/app", "bad"))

    response = app.handler(delivery(event, received), Context())

    assert failed_ids(response) == ["m-0"]
    assert logged(caplog, "ERROR") == ["seal failed"]
    assert logged(caplog, "WARNING") == []


def test_unreadable_message_is_an_error_only_on_its_last_delivery(
    stack, tmp_path, monkeypatch, caplog
):
    app = load_app(stack, tmp_path, monkeypatch, max_receive_count=2)

    app.handler(delivery("{truncated", 1), Context())
    errors_after_first = logged(caplog, "ERROR")
    app.handler(delivery("{truncated", 2), Context())

    assert errors_after_first == []
    assert logged(caplog, "WARNING") == [
        "unreadable message; it will be delivered again"
    ]
    assert logged(caplog, "ERROR") == ["unreadable message"]


def test_unexpected_exception_is_logged_once_with_its_traceback(
    stack, tmp_path, monkeypatch, caplog
):
    app = load_app(stack, tmp_path, monkeypatch, max_receive_count=1)
    sealer = app.sealer()

    def broken(event):
        raise KeyError("a bug")

    monkeypatch.setattr(sealer, "handle", broken)
    key = stack.sealer.layout.tag_link("team-a/app", "1")

    response = app.handler(delivery(s3_event(BUCKET, key), 1), Context())

    assert failed_ids(response) == ["m-0"]
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert error.getMessage() == "seal failed"
    assert error.error == "KeyError"
    assert error.exc_info is not None
    assert error.exc_info[0] is KeyError


def queued_delivery(sqs, queue_url, body, received):
    """``delivery`` for a message really taken from ``queue_url``."""
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    (message,) = sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=600)[
        "Messages"
    ]
    event = delivery(body, received)
    event["Records"][0]["receiptHandle"] = message["ReceiptHandle"]
    event["Records"][0]["messageId"] = message["MessageId"]
    return event


def visible_now(sqs, queue_url):
    reply = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)
    return len(reply.get("Messages", []))


@pytest.mark.parametrize(
    ("make_input", "hastened"),
    [
        ("malformed manifest", True),  # bad input: every delivery fails alike
        ("manifest pushed by digest", False),  # deferred: keeps the long wait
    ],
)
def test_bad_input_is_made_visible_again_at_once_and_nothing_else_is(
    stack, tmp_path, monkeypatch, make_input, hastened
):
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="regseal-events")["QueueUrl"]
    monkeypatch.setenv("REGSEAL_QUEUE_URL", queue_url)
    monkeypatch.setenv("REGSEAL_BAD_INPUT_RETRY_SECONDS", "1")
    app = load_app(stack, tmp_path, monkeypatch, max_receive_count=3)
    if make_input == "malformed manifest":
        stack.registry.put_manifest("team-a/app", b"not json", "bad")
        key = stack.sealer.layout.tag_link("team-a/app", "bad")
    else:
        pushed = stack.registry.push_image("team-a/app", None, [random_layer()])
        key = stack.sealer.layout.revision_link("team-a/app", pushed.digest)
    event = queued_delivery(sqs, queue_url, s3_event(BUCKET, key), received=1)

    response = app.handler(event, Context())
    time.sleep(1.5)

    assert failed_ids(response) == [event["Records"][0]["messageId"]]
    assert visible_now(sqs, queue_url) == (1 if hastened else 0)


def test_on_the_last_delivery_bad_input_is_left_to_the_queue(
    stack, tmp_path, monkeypatch
):
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="regseal-events")["QueueUrl"]
    monkeypatch.setenv("REGSEAL_QUEUE_URL", queue_url)
    monkeypatch.setenv("REGSEAL_BAD_INPUT_RETRY_SECONDS", "1")
    app = load_app(stack, tmp_path, monkeypatch, max_receive_count=3)
    stack.registry.put_manifest("team-a/app", b"not json", "bad")
    key = stack.sealer.layout.tag_link("team-a/app", "bad")
    event = queued_delivery(sqs, queue_url, s3_event(BUCKET, key), received=3)

    app.handler(event, Context())
    time.sleep(1.5)

    assert visible_now(sqs, queue_url) == 0
