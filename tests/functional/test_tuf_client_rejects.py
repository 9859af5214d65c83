"""The reference client refuses metadata an attacker (or a buggy writer) could serve."""

import hashlib
import json
from datetime import timedelta

import pytest
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, MetaFile, TargetFile
from tuf.api.serialization.json import JSONSerializer

from regseal.errors import TufError
from regseal.tuf.repository import utcnow
from regseal.tuf.signers import signer_for_key
from tests.support.tuf_world import custom, manifest, tuf_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    with tuf_world(tmp_path, monkeypatch) as w:
        w.add_team("team-a", "team-a/*")
        w.add_team("team-b", "team-b/*")
        w.writer().add_target("team-a", "team-a/app", "v1", manifest(1), custom())
        w.refresh()
        yield w


def _root(world):
    return Metadata.from_bytes(world.get_raw("1.root.json")).signed


def _online_signer(world, role):
    root = _root(world)
    return signer_for_key(root.keys[root.roles[role].keyids[0]])


def _team_signer(world, team):
    targets = Metadata.from_bytes(
        world.get_raw(f"{world.store.latest_version('targets')}.targets.json")
    ).signed
    role = targets.delegations.roles[team]
    return signer_for_key(targets.delegations.keys[role.keyids[0]])


def _latest(world, role):
    version = world.store.latest_version(role)
    return version, Metadata.from_bytes(world.get_raw(f"{version}.{role}.json"))


def _publish_snapshot(world, meta_changes):
    """Sign a snapshot and timestamp by hand (a writer that skips the checks)."""
    version, snapshot = _latest(world, "snapshot")
    snapshot.signed.version = version + 1
    snapshot.signed.meta.update(meta_changes)
    snapshot.sign(_online_signer(world, "snapshot"))
    data = snapshot.to_bytes(JSONSerializer(compact=True))
    world.put_raw(f"{version + 1}.snapshot.json", data)
    timestamp = Metadata.from_bytes(world.get_raw("timestamp.json"))
    timestamp.signed.version += 1
    timestamp.signed.snapshot_meta = MetaFile(version + 1, len(data))
    timestamp.sign(_online_signer(world, "timestamp"))
    world.put_raw("timestamp.json", timestamp.to_bytes())


def test_rolled_back_timestamp_is_rejected(world, tmp_path):
    old_timestamp = world.get_raw("timestamp.json")
    world.refresh(force=True)
    cache = tmp_path / "client"
    world.updater(cache).refresh()

    world.put_raw("timestamp.json", old_timestamp)
    with pytest.raises(tuf_errors.BadVersionNumberError, match="must be >="):
        world.updater(cache).refresh()


def test_rolled_back_snapshot_is_rejected(world, tmp_path):
    cache = tmp_path / "client"
    world.updater(cache).refresh()
    trusted = Metadata.from_bytes(world.get_raw("timestamp.json")).signed
    # A validly signed timestamp that names an older snapshot version.
    timestamp = Metadata.from_bytes(world.get_raw("timestamp.json"))
    timestamp.signed.version += 1
    older = trusted.snapshot_meta.version - 1
    data = world.get_raw(f"{older}.snapshot.json")
    timestamp.signed.snapshot_meta = MetaFile(older, len(data))
    timestamp.sign(_online_signer(world, "timestamp"))
    world.put_raw("timestamp.json", timestamp.to_bytes())

    with pytest.raises(tuf_errors.BadVersionNumberError, match="snapshot version"):
        world.updater(cache).refresh()


def test_snapshot_dropping_a_team_role_is_rejected(world, tmp_path):
    cache = tmp_path / "client"
    updater = world.updater(cache)
    updater.refresh()
    updater.get_targetinfo("team-a/app/tags/v1")
    version, snapshot = _latest(world, "snapshot")
    del snapshot.signed.meta["team-a.json"]
    snapshot.signed.version = version + 1
    snapshot.sign(_online_signer(world, "snapshot"))
    data = snapshot.to_bytes()
    world.put_raw(f"{version + 1}.snapshot.json", data)
    timestamp = Metadata.from_bytes(world.get_raw("timestamp.json"))
    timestamp.signed.version += 1
    timestamp.signed.snapshot_meta = MetaFile(version + 1, len(data))
    timestamp.sign(_online_signer(world, "timestamp"))
    world.put_raw("timestamp.json", timestamp.to_bytes())

    with pytest.raises(tuf_errors.RepositoryError, match="missing info"):
        world.updater(cache).refresh()


def test_expired_timestamp_is_rejected(world):
    stale = world.publisher(clock=lambda: utcnow() - timedelta(days=3))
    result = stale.refresh_snapshot_and_timestamp(force=True)
    assert result.timestamp_written is True
    with pytest.raises(
        tuf_errors.ExpiredMetadataError, match=r"timestamp\.json is expired"
    ):
        world.updater().refresh()


def test_target_signed_by_another_teams_key_is_held_back_and_rejected(world):
    version, team_a = _latest(world, "team-a")
    forged = TargetFile.from_data("team-a/app/tags/v1", b"evil", ["sha256"])
    team_a.signed.targets[forged.path] = forged
    team_a.signed.version = version + 1
    team_a.sign(_team_signer(world, "team-b"))
    world.put_raw(f"{version + 1}.team-a.json", team_a.to_bytes())

    # The TUF function refuses to list it ...
    result = world.refresh()
    assert "team-a" in result.held_back
    assert "not signed by a threshold" in result.held_back["team-a"]
    genuine = world.updater().get_targetinfo("team-a/app/tags/v1")
    assert genuine.hashes["sha256"] == hashlib.sha256(manifest(1)).hexdigest()
    # ... and the seal function refuses to build on it.
    with pytest.raises(TufError, match="refusing to build on it"):
        world.writer(max_attempts=2).add_target(
            "team-a", "team-a/app", "v2", manifest(2), custom()
        )

    # Even with a snapshot that lists it, the client rejects the forgery.
    data = world.get_raw(f"{version + 1}.team-a.json")
    _publish_snapshot(world, {"team-a.json": MetaFile(version + 1, len(data))})
    updater = world.updater()
    updater.refresh()
    with pytest.raises(tuf_errors.UnsignedMetadataError, match="team-a"):
        updater.get_targetinfo("team-a/app/tags/v1")


def test_team_cannot_sign_targets_for_another_teams_repositories(world):
    # team-b signs, with its own valid key, a target under team-a's repositories.
    version, team_b = _latest(world, "team-b")
    forged = TargetFile.from_data("team-a/app/tags/v1", b"evil", ["sha256"])
    team_b.signed.targets[forged.path] = forged
    team_b.signed.version = version + 1
    team_b.sign(_team_signer(world, "team-b"))
    world.put_raw(f"{version + 1}.team-b.json", team_b.to_bytes())
    result = world.refresh()
    assert result.updated["team-b.json"] == version + 1

    # Terminating delegations: the path is looked up in team-a's role only.
    target = world.updater().get_targetinfo("team-a/app/tags/v1")
    assert target.hashes["sha256"] == hashlib.sha256(manifest(1)).hexdigest()


def test_tampered_team_role_is_rejected(world):
    version, _ = _latest(world, "team-a")
    document = json.loads(world.get_raw(f"{version}.team-a.json"))
    target = document["signed"]["targets"]["team-a/app/tags/v1"]
    target["hashes"]["sha256"] = hashlib.sha256(b"evil").hexdigest()
    world.put_raw(
        f"{version}.team-a.json", json.dumps(document, separators=(",", ":")).encode()
    )
    updater = world.updater()
    updater.refresh()
    with pytest.raises(tuf_errors.LengthOrHashMismatchError):
        updater.get_targetinfo("team-a/app/tags/v1")


def test_tampered_target_bytes_fail_length_and_hash_checks(world):
    target = world.updater().get_targetinfo("team-a/app/tags/v1")
    target.verify_length_and_hashes(manifest(1))
    tampered = manifest(1).replace(b'"n":"1"', b'"n":"7"')
    with pytest.raises(tuf_errors.LengthOrHashMismatchError):
        target.verify_length_and_hashes(tampered)
