"""The TUF function's handler on the events the stack delivers, under moto.

Samples come from tests/events/ (see its README): the seal function's "targets
changed" message inside an SQS record, and the schedule's "Scheduled Event".
One test also sends the message the way the seal function does (its SQS
notifier), receives it from a moto queue and hands it over as Lambda's SQS
poller would, so the handler sees the exact shape the wiring produces.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from tuf.api.metadata import Metadata

from regseal.errors import EventError, TufError
from regseal.targetlog import sqs_notifier
from regseal.tuf.messages import TargetsChanged
from tests.support.cfn_model import load_template
from tests.support.tuf_world import REGION, World, custom, manifest, tuf_world

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
APP = ROOT / "functions" / "tuf" / "app.py"


@dataclass
class _Context:
    function_name: str = "regseal-TufFunction-Q5ExampleFn"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:111122223333:function:regseal-TufFunction-Q5ExampleFn"
    )
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"


def _load_app() -> ModuleType:
    # functions/seal/app.py is also "app": load this one under its own name.
    spec = importlib.util.spec_from_file_location("regseal_tuf_app", APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def _configure(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment template.yaml gives the function (keys from root)."""
    monkeypatch.setenv("REGSEAL_TUF_BUCKET", world.store.location.bucket)
    monkeypatch.setenv("REGSEAL_TUF_PREFIX", world.store.location.prefix)
    monkeypatch.setenv("REGSEAL_TUF_RESIGN_TEAMS", "false")
    for name in ("REGSEAL_TUF_SNAPSHOT_KEY", "REGSEAL_TUF_TIMESTAMP_KEY"):
        monkeypatch.delenv(name, raising=False)


def _log_lines(module: ModuleType) -> io.StringIO:
    """Capture what the handler's Powertools logger writes (JSON lines)."""
    stream = io.StringIO()
    module.logger.registered_handler.setStream(stream)
    return stream


def _messages(stream: io.StringIO) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line]
    return {line["message"]: line for line in lines}


def _filter_message(metric: str) -> str:
    """The log message a metric filter of template.yaml counts for ``metric``."""
    (pattern,) = [
        r["Properties"]["FilterPattern"]
        for r in load_template()["Resources"].values()
        if r["Type"] == "AWS::Logs::MetricFilter"
        and r["Properties"]["MetricTransformations"][0]["MetricName"] == metric
    ]
    matched = re.fullmatch(r'\{ \$\.message = "([^"]+)" \}', pattern)
    assert matched, pattern
    return matched.group(1)


@pytest.fixture(name="world")
def _world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with tuf_world(tmp_path, monkeypatch) as world:
        _configure(world, monkeypatch)
        world.add_team("team-a", "team-a/*")
        # team-a v2: what the push of the samples wrote.
        world.writer().add_target("team-a", "team-a/app", "1.0", manifest(1), custom())
        yield world


@pytest.fixture(name="app")
def _app(world: World) -> ModuleType:
    return _load_app()


def test_targets_changed_sample_publishes_the_team_role_it_names(
    app: ModuleType, world: World
) -> None:
    response = app.handler(_event("sqs-tuf-targets-changed.json"), _Context())

    snapshot = Metadata.from_bytes(
        world.get_raw(f"{response['snapshot_version']}.snapshot.json")
    ).signed
    assert response["trigger"] == "sqs"
    assert response["batchItemFailures"] == []
    assert response["snapshot_written"] is True
    assert response["timestamp_written"] is True
    assert snapshot.meta["team-a.json"].version == 2
    target = world.updater().get_targetinfo("team-a/app/tags/1.0")
    assert target is not None
    assert target.hashes["sha256"] == hashlib.sha256(manifest(1)).hexdigest()


def test_a_poison_message_in_the_batch_is_reported_alone(
    app: ModuleType, world: World
) -> None:
    event = _event("sqs-tuf-targets-changed.json")
    poison = dict(event["Records"][0], messageId="0f4a8d52-poison", body="not json")
    event["Records"].append(poison)

    response = app.handler(event, _Context())

    assert response["batchItemFailures"] == [{"itemIdentifier": "0f4a8d52-poison"}]
    assert response["snapshot_written"] is True


def test_a_batch_of_only_poison_messages_writes_nothing(
    app: ModuleType, world: World
) -> None:
    event = _event("sqs-tuf-targets-changed.json")
    event["Records"][0]["body"] = '{"type":"something-else"}'
    before = world.object_versions()

    response = app.handler(event, _Context())

    assert response == {
        "trigger": "sqs",
        "batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}],
    }
    assert world.object_versions() == before


def test_the_seal_functions_message_arrives_in_the_shape_of_the_sample(
    app: ModuleType, world: World
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="regseal-TufQueue-Q3ExampleQueue")[
        "QueueUrl"
    ]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    update = world.writer().add_target(
        "team-a", "team-a/app", "1.1", manifest(2), custom()
    )
    assert update.targets_changed == TargetsChanged({"team-a": 3})

    sqs_notifier(sqs, queue_url)(update.targets_changed)
    (message,) = sqs.receive_message(
        QueueUrl=queue_url, AttributeNames=["All"], MaxNumberOfMessages=10
    )["Messages"]
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
    (sample,) = _event("sqs-tuf-targets-changed.json")["Records"]
    response = app.handler({"Records": [record]}, _Context())

    assert set(record) == set(sample)
    assert set(sample["attributes"]) <= set(record["attributes"])
    assert (
        record["body"] == '{"type":"regseal.tuf.targets-changed","roles":{"team-a":3}}'
    )
    assert (
        record["md5OfBody"]
        == hashlib.md5(record["body"].encode(), usedforsecurity=False).hexdigest()
    )
    assert response["batchItemFailures"] == []
    assert world.updater().get_targetinfo("team-a/app/tags/1.1") is not None


def test_scheduled_sample_runs_a_full_refresh_once(
    app: ModuleType, world: World
) -> None:
    response = app.handler(_event("eventbridge-scheduled-tuf-refresh.json"), _Context())
    again = app.handler(_event("eventbridge-scheduled-tuf-refresh.json"), _Context())

    assert response["trigger"] == "schedule"
    assert response["snapshot_written"] is True
    assert response["timestamp_written"] is True
    assert again["timestamp_written"] is False
    assert again["timestamp_version"] == response["timestamp_version"]
    assert world.updater().get_targetinfo("team-a/app/tags/1.0") is not None


def test_a_role_that_does_not_verify_is_logged_for_the_held_back_alarm(
    app: ModuleType, world: World
) -> None:
    version = world.store.latest_version("team-a")
    assert version is not None
    forged = Metadata.from_bytes(world.get_raw(f"{version}.team-a.json"))
    forged.signed.version = version + 1
    forged.sign(world.signer(world.targets_key))
    world.put_raw(f"{version + 1}.team-a.json", forged.to_bytes())
    logs = _log_lines(app)

    response = app.handler(_event("eventbridge-scheduled-tuf-refresh.json"), _Context())

    message = _filter_message("TufRolesHeldBack")
    assert response["held_back"] == ["team-a"]
    assert _messages(logs)[message]["level"] == "ERROR"
    assert "team-a" in _messages(logs)[message]["held_back"]


def test_unknown_events_are_refused(app: ModuleType) -> None:
    with pytest.raises(EventError, match="expected an SQS batch"):
        app.handler({"detail-type": "Object Created"}, _Context())


def test_configured_online_key_must_be_in_root(
    app: ModuleType, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGSEAL_TUF_TIMESTAMP_KEY", world.kms_key())
    app._publisher = None

    with pytest.raises(TufError, match="not one of the role's keys"):
        app.handler(_event("eventbridge-scheduled-tuf-refresh.json"), _Context())


def test_offline_roles_near_expiry_are_logged_for_their_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tuf_world(tmp_path, monkeypatch, root_expiry=timedelta(days=10)) as world:
        _configure(world, monkeypatch)
        app = _load_app()
        logs = _log_lines(app)

        response = app.handler(
            _event("eventbridge-scheduled-tuf-refresh.json"), _Context()
        )

    message = _filter_message("TufOfflineRolesExpiring")
    assert response["offline_expiring"] == ["root"]
    assert _messages(logs)[message]["level"] == "WARNING"
    assert _messages(logs)[message]["roles"] == ["root"]


def test_team_roles_left_to_expire_are_logged_for_their_alarm(
    app: ModuleType, world: World
) -> None:
    # A team role lifetime shorter than the 30-day team signing window.
    world.add_team("team-b", "team-b/*", expiry=timedelta(days=20))
    before = world.store.latest_version("team-b")
    logs = _log_lines(app)

    response = app.handler(_event("eventbridge-scheduled-tuf-refresh.json"), _Context())

    message = _filter_message("TufTeamRolesExpiring")
    assert response["teams_expiring"] == ["team-b"]
    assert world.store.latest_version("team-b") == before
    assert _messages(logs)[message]["level"] == "WARNING"
    assert _messages(logs)[message]["roles"] == ["team-b"]


def test_team_roles_are_resigned_instead_when_the_function_may(
    app: ModuleType, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.add_team("team-b", "team-b/*", expiry=timedelta(days=20))
    monkeypatch.setenv("REGSEAL_TUF_RESIGN_TEAMS", "true")
    before = world.store.latest_version("team-b")
    assert before is not None

    response = app.handler(_event("eventbridge-scheduled-tuf-refresh.json"), _Context())

    assert response["teams_expiring"] == []
    assert world.store.latest_version("team-b") == before + 1
