import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from regseal.errors import EventError, TufError
from tests.support.tuf_world import BUCKET, custom, manifest, tuf_world

EVENTS = Path(__file__).parent.parent / "events"
APP = Path(__file__).parent.parent.parent / "functions" / "tuf" / "app.py"


@dataclass
class _Context:
    function_name: str = "regseal-tuf"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:tuf"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"


def _load_app():
    spec = importlib.util.spec_from_file_location("regseal_tuf_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def app(tmp_path, monkeypatch):
    with tuf_world(tmp_path, monkeypatch) as world:
        monkeypatch.setenv("REGSEAL_TUF_BUCKET", BUCKET)
        monkeypatch.setenv("REGSEAL_TUF_PREFIX", "tuf/")
        monkeypatch.setenv("REGSEAL_TUF_SNAPSHOT_KEY", world.snapshot_uri)
        monkeypatch.setenv("REGSEAL_TUF_TIMESTAMP_KEY", world.timestamp_uri)
        world.add_team("team-a", "team-a/*")
        world.writer().add_target("team-a", "team-a/app", "v1", manifest(1), custom())
        yield _load_app(), world


def _event(name):
    return json.loads((EVENTS / name).read_text())


def test_targets_changed_batch_publishes_and_reports_the_poison_message(app):
    module, world = app
    response = module.handler(_event("tuf_targets_changed_sqs.json"), _Context())
    assert response["trigger"] == "sqs"
    assert response["batchItemFailures"] == [
        {"itemIdentifier": "0f4a8d52-2f1c-4b0e-9e0a-7c1b0e1e0a02"}
    ]
    assert response["snapshot_written"] is True
    snapshot = Metadata.from_bytes(
        world.get_raw(f"{response['snapshot_version']}.snapshot.json")
    ).signed
    assert snapshot.meta["team-a.json"].version == 2
    assert world.updater().get_targetinfo("team-a/app/tags/v1") is not None


def test_scheduled_event_runs_a_full_refresh(app):
    module, _ = app
    response = module.handler(_event("tuf_schedule.json"), _Context())
    assert response["trigger"] == "schedule"
    assert response["timestamp_written"] is True
    again = module.handler(_event("tuf_schedule.json"), _Context())
    assert again["timestamp_written"] is False
    assert again["timestamp_version"] == response["timestamp_version"]


def test_batch_of_only_poison_messages_writes_nothing(app):
    module, world = app
    event = _event("tuf_targets_changed_sqs.json")
    event["Records"] = event["Records"][1:]
    before = world.object_versions()
    response = module.handler(event, _Context())
    assert response == {
        "trigger": "sqs",
        "batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}],
    }
    assert world.object_versions() == before


def test_unknown_events_are_refused(app):
    module, _ = app
    with pytest.raises(EventError, match="expected an SQS batch"):
        module.handler({"detail-type": "Object Created"}, _Context())


def test_configured_online_key_must_be_in_root(app, monkeypatch):
    module, world = app
    monkeypatch.setenv("REGSEAL_TUF_TIMESTAMP_KEY", world.kms_key())
    module._publisher = None
    with pytest.raises(TufError, match="not one of the role's keys"):
        module.handler(_event("tuf_schedule.json"), _Context())
