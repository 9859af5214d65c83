import json
from dataclasses import replace
from pathlib import Path

import pytest

from regseal.errors import LocalStackError
from regseal.local.state import StackState

STATE = StackState(
    registry="127.0.0.1:45001",
    s3_endpoint="http://127.0.0.1:45000",
    bucket="registry",
    region="us-east-1",
    queue_url="http://127.0.0.1:45000/123456789012/regseal-events",
    dlq_url="http://127.0.0.1:45000/123456789012/regseal-events-dlq",
    kms_key_id="0b0e7a1c-0000-4000-8000-000000000001",
    kms_key_alias="alias/regseal-demo",
    policy="s3://registry/regseal/policy.json",
    jwe_private_key=Path("/tmp/w/jwe-private.pem"),
    jwe_public_key=Path("/tmp/w/jwe-public.pem"),
    workdir=Path("/tmp/w"),
    pids={"stack": 10, "moto": 11, "registry": 12},
    tuf_metadata_url="http://127.0.0.1:45000/registry/tuf/",
    tuf_root=Path("/tmp/w/tuf/root.json"),
    tuf_queue_url="http://127.0.0.1:45000/123456789012/regseal-tuf",
    tuf_dlq_url="http://127.0.0.1:45000/123456789012/regseal-tuf-dlq",
)


def test_state_file_round_trips(tmp_path):
    path = tmp_path / "state.json"

    STATE.write(path)

    assert StackState.load(path) == STATE
    assert not list(tmp_path.glob("*.partial"))


def test_state_file_carries_the_contract_keys(tmp_path):
    path = tmp_path / "state.json"
    STATE.write(path)

    data = json.loads(path.read_text())

    assert data["registry"] == "127.0.0.1:45001"
    assert data["s3_endpoint"] == "http://127.0.0.1:45000"
    assert data["jwe_private_key"] == "/tmp/w/jwe-private.pem"
    assert data["pids"] == {"stack": 10, "moto": 11, "registry": 12}
    assert set(data) == {
        "registry",
        "s3_endpoint",
        "bucket",
        "region",
        "queue_url",
        "dlq_url",
        "kms_key_id",
        "kms_key_alias",
        "policy",
        "jwe_private_key",
        "jwe_public_key",
        "workdir",
        "pids",
        "write_back",
        "tags_in_database",
        "registry_auth",
        "registry_username",
        "registry_password",
        "tuf_metadata_url",
        "tuf_root",
        "tuf_queue_url",
        "tuf_dlq_url",
    }
    assert (data["write_back"], data["registry_auth"]) == ("storage", "none")
    assert data["tags_in_database"] is False


def test_state_file_of_an_api_mode_stack_names_mode_auth_and_account(tmp_path):
    path = tmp_path / "state.json"
    state = replace(
        STATE,
        write_back="api",
        tags_in_database=True,
        registry_auth="token",
        registry_username="testing",
        registry_password="testing",
    )
    state.write(path)

    assert json.loads(path.read_text())["tags_in_database"] is True
    assert StackState.load(path) == state


def test_state_file_written_before_the_write_back_fields_still_loads():
    data = STATE.to_json()
    for name in (
        "write_back",
        "tags_in_database",
        "registry_auth",
        "registry_username",
        "registry_password",
    ):
        del data[name]

    loaded = StackState.from_json(data)

    assert (loaded.write_back, loaded.registry_auth, loaded.registry_username) == (
        "storage",
        "none",
        "",
    )
    assert loaded.tags_in_database is False
    assert data["tuf_metadata_url"] == "http://127.0.0.1:45000/registry/tuf/"
    assert data["tuf_root"] == "/tmp/w/tuf/root.json"


def test_state_of_a_stack_without_tuf_has_null_tuf_members(tmp_path):
    path = tmp_path / "state.json"
    without = replace(
        STATE,
        tuf_metadata_url=None,
        tuf_root=None,
        tuf_queue_url=None,
        tuf_dlq_url=None,
    )
    without.write(path)

    data = json.loads(path.read_text())

    assert data["tuf_metadata_url"] is None
    assert data["tuf_root"] is None
    assert StackState.load(path) == without


def test_state_file_written_before_tuf_still_loads():
    data = STATE.to_json()
    for name in ("tuf_metadata_url", "tuf_root", "tuf_queue_url", "tuf_dlq_url"):
        del data[name]

    state = StackState.from_json(data)

    assert (state.tuf_metadata_url, state.tuf_root) == (None, None)
    assert state.registry == STATE.registry


def test_state_without_a_field_is_refused():
    data = STATE.to_json()
    del data["registry"]

    with pytest.raises(LocalStackError, match="missing or bad field: 'registry'"):
        StackState.from_json(data)


def test_missing_state_file_is_refused(tmp_path):
    with pytest.raises(LocalStackError, match="expected a JSON state file at"):
        StackState.load(tmp_path / "nope.json")
