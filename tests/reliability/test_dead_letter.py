"""The seal function behind a real queue: moto's S3 notifications feed SQS.

This is the local stack's wiring in one process: the registry bucket sends
its link writes to the event queue (redrive to a dead-letter queue after
three receives), the local stack's EventPump hands batches to the seal
function's handler (functions/seal/app.py) as Lambda's SQS trigger does,
and the function's own writes come back as events too.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import boto3
import pytest

from regseal.layout import RegistryLayout
from regseal.local import resources
from regseal.local.pump import EventPump
from regseal.manifest import ANNOTATION_PLAINTEXT
from regseal.storage import ObjectStore
from tests.reliability.conftest import REGION, Registry
from tests.support.registry import FakeRegistry, random_layer

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "seal" / "app.py"
MAX_POLLS = 60


@pytest.fixture(scope="module")
def queued(rig, tmp_path_factory):
    session = boto3.Session(region_name=REGION)
    made = resources.create_resources(
        session, None, policy_document=json.dumps(rig.policy).encode()
    )
    sqs = session.client("sqs")
    sqs.set_queue_attributes(
        QueueUrl=made.queue_url, Attributes={"VisibilityTimeout": "0"}
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("REGSEAL_BUCKET", made.bucket)
        monkeypatch.setenv("REGSEAL_POLICY", made.policy_location)
        monkeypatch.setenv("REGSEAL_DIGEST_PUSH_GRACE_SECONDS", "0")
        monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        spec = importlib.util.spec_from_file_location("seal_app_dlq", HANDLER)
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
        pump = EventPump(
            sqs,
            app.handler,
            queue_url=made.queue_url,
            queue_arn=made.queue_arn,
            region=REGION,
            wait_seconds=0,
        )
        store = ObjectStore(session.client("s3"), made.bucket)
        yield sqs, made, pump, Registry(store, FakeRegistry(store), RegistryLayout())


def bodies(sqs, url):
    found = []
    while True:
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        messages = reply.get("Messages", [])
        if not messages:
            return sorted(found)
        for message in messages:
            found.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def pump_until_drained(pump):
    """Poll until a poll receives nothing; return how many messages were seen."""
    seen = 0
    for _ in range(MAX_POLLS):
        outcome = pump.poll_once()
        if outcome.received == 0:
            return seen
        seen += outcome.received
    pytest.fail(f"the queue did not drain in {MAX_POLLS} polls: a loop?")


def reset(sqs, made):
    for url in (made.queue_url, made.dead_letter_queue_url):
        bodies(sqs, url)  # PurgeQueue is allowed once a minute


def test_poison_messages_end_in_the_dead_letter_queue_with_one_log_each_time(
    queued, rig, caplog
):
    sqs, made, pump, reg = queued
    reset(sqs, made)
    good = reg.registry.push_image("team-a/app", "1", [random_layer()])
    bad = reg.registry.put_manifest("team-a/bad", b'{"schemaVersion": 2, "lay', "1")
    garbage = "{not an event"
    sqs.send_message(QueueUrl=made.queue_url, MessageBody=garbage)
    caplog.set_level(logging.INFO, logger="regseal")

    pump_until_drained(pump)

    dead = bodies(sqs, made.dead_letter_queue_url)
    dead_keys = sorted(
        json.loads(b)["Records"][0]["s3"]["object"]["key"] for b in dead if b != garbage
    )
    assert garbage in dead
    assert [k.replace("%2F", "/") for k in dead_keys] == sorted(
        [
            reg.layout.revision_link("team-a/bad", bad),
            reg.layout.tag_link("team-a/bad", "1"),
        ]
    )
    assert bodies(sqs, made.queue_url) == []
    sealed = reg.registry.manifest(reg.registry.tag_digest("team-a/app", "1"))
    assert sealed["annotations"][ANNOTATION_PLAINTEXT] == good.digest.value
    # One error line per delivery: the reason is logged once each time.
    failures = [r for r in caplog.records if r.getMessage() == "seal failed"]
    unreadable = [r for r in caplog.records if r.getMessage() == "unreadable message"]
    per_key = {}
    for record in failures:
        per_key[record.key] = per_key.get(record.key, 0) + 1
    assert per_key == {
        reg.layout.revision_link("team-a/bad", bad): resources.MAX_RECEIVE_COUNT,
        reg.layout.tag_link("team-a/bad", "1"): resources.MAX_RECEIVE_COUNT,
    }
    assert len(unreadable) == resources.MAX_RECEIVE_COUNT
    assert all("expected manifest JSON" in r.reason for r in failures)
    report = rig.check(reg.store, finished=True, repositories=["team-a/app"])
    assert report.violations == ()


def test_own_writes_loop_back_through_the_queue_and_the_queue_drains(queued, rig):
    sqs, made, pump, reg = queued
    reset(sqs, made)
    reg.registry.push_image("team-a/one", "1", [random_layer(), random_layer()])
    reg.registry.push_image("team-a/two", "a", [random_layer()])
    reg.registry.push_index(
        "team-a/multi", "1", [("amd64", [random_layer()]), ("arm64", [random_layer()])]
    )

    first = pump_until_drained(pump)
    again = pump_until_drained(pump)

    assert first > 0
    assert again == 0
    assert bodies(sqs, made.dead_letter_queue_url) == []
    for repository, tag in (
        ("team-a/one", "1"),
        ("team-a/two", "a"),
        ("team-a/multi", "1"),
    ):
        digest = reg.registry.tag_digest(repository, tag)
        assert ANNOTATION_PLAINTEXT in reg.registry.manifest(digest)["annotations"]
    report = rig.check(
        reg.store,
        finished=True,
        repositories=["team-a/one", "team-a/two", "team-a/multi"],
    )
    assert report.violations == ()
