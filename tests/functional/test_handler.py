"""The seal function's handler, driven with the event shapes Lambda delivers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from regseal.digest import Digest
from tests.functional.conftest import BUCKET
from tests.support.registry import random_layer, s3_event

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "seal" / "app.py"


class Context:
    function_name = "regseal-seal"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:regseal-seal"
    aws_request_id = "test-request"


def eventbridge(bucket: str, key: str, detail_type: str = "Object Created") -> dict:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-12-04T14:20:28Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 71, "etag": "x", "sequencer": "1"},
            "reason": "PutObject",
        },
    }


def sqs(*bodies: dict | str) -> dict:
    return {
        "Records": [
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"r-{i}",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:regseal-events",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


@pytest.fixture
def app(stack, tmp_path, monkeypatch):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(stack.policy))
    monkeypatch.setenv("REGSEAL_BUCKET", BUCKET)
    monkeypatch.setenv("REGSEAL_POLICY", f"file:{policy}")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    spec = importlib.util.spec_from_file_location("seal_app_under_test", HANDLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eventbridge_in_sqs_seals_the_tag(stack, app):
    pushed = stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    key = stack.sealer.layout.tag_link("team-a/app", "1.0")

    response = app.handler(sqs(eventbridge(BUCKET, key)), Context())

    assert response == {"batchItemFailures": []}
    sealed = stack.registry.tag_digest("team-a/app", "1.0")
    assert sealed != pushed.digest
    doc = stack.registry.manifest(sealed)
    assert doc["layers"][0]["mediaType"].endswith("+encrypted")


def test_s3_notification_in_sqs_seals_the_tag(stack, app):
    pushed = stack.registry.push_image("team-a/app", "2", [random_layer()])
    key = stack.sealer.layout.tag_link("team-a/app", "2")

    response = app.handler(sqs(s3_event(BUCKET, key)), Context())

    assert response == {"batchItemFailures": []}
    assert stack.registry.tag_digest("team-a/app", "2") != pushed.digest


def test_bad_messages_fail_alone_and_good_ones_pass(stack, app, caplog):
    pushed = stack.registry.push_image("team-a/app", "ok", [random_layer()])
    stack.registry.put_manifest("team-a/app", b"not json", "bad")
    good = stack.sealer.layout.tag_link("team-a/app", "ok")
    bad = stack.sealer.layout.tag_link("team-a/app", "bad")
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}

    response = app.handler(
        sqs(
            eventbridge(BUCKET, good),
            "{truncated",
            eventbridge(BUCKET, bad),
            test_event,
        ),
        Context(),
    )

    assert response == {
        "batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]
    }
    assert stack.registry.tag_digest("team-a/app", "ok") != pushed.digest
    assert stack.store.get(bad).data == Digest.of(b"not json").value.encode()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("seal failed" in e for e in errors)
    assert any("unreadable message" in e for e in errors)


def test_direct_eventbridge_invocation(stack, app):
    stack.registry.push_image("team-a/app", "3", [random_layer()])
    key = stack.sealer.layout.tag_link("team-a/app", "3")

    response = app.handler(eventbridge(BUCKET, key), Context())

    assert [r["outcome"] for r in response["results"]] == ["sealed"]


def test_deleted_object_events_are_ignored(stack, app):
    key = stack.sealer.layout.tag_link("team-a/app", "gone")
    response = app.handler(sqs(eventbridge(BUCKET, key, "Object Deleted")), Context())
    assert response == {"batchItemFailures": []}
