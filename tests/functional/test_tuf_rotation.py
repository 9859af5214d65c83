import hashlib

import pytest
from tuf.api.metadata import Metadata

from regseal.errors import TufError
from regseal.tuf import admin
from regseal.tuf.repository import MetadataRepository, RoleSigners
from regseal.tuf.signers import generate_key_file, load_signer, public_key_for
from regseal.tuf.updates import TargetsWriter
from tests.support.tuf_world import custom, manifest, tuf_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    with tuf_world(tmp_path, monkeypatch) as w:
        w.add_team("team-a", "team-a/*")
        w.writer().add_target("team-a", "team-a/app", "v1", manifest(1), custom())
        w.refresh()
        yield w


def _key_file(world, name):
    path = str(world.tmp / f"{name}.pem")
    generate_key_file(path)
    return path


def _assert_client_finds_v1(world, cache=None):
    updater = world.updater(cache)
    target = updater.get_targetinfo("team-a/app/tags/v1")
    assert target is not None
    assert target.hashes["sha256"] == hashlib.sha256(manifest(1)).hexdigest()
    return updater


def test_root_rotation_is_signed_by_old_and_new_keys(world, tmp_path):
    cache = tmp_path / "client"
    _assert_client_finds_v1(world, cache)
    new_key = _key_file(world, "root-2")
    result = admin.rotate_root(
        world.store,
        world.settings,
        current_signers=[load_signer(world.root_key)],
        new_signers=[load_signer(new_key)],
    )
    assert result.written == {"root": 2}
    root2 = Metadata.from_bytes(world.get_raw("2.root.json"))
    assert set(root2.signatures) == {
        load_signer(world.root_key).public_key.keyid,
        load_signer(new_key).public_key.keyid,
    }
    # A client that trusted root v1 walks to v2 and still verifies everything.
    updater = _assert_client_finds_v1(world, cache)
    assert updater._trusted_set.root.version == 2

    # The old root key alone can no longer change root.
    with pytest.raises(TufError, match="root"):
        admin.rotate_root(
            world.store,
            world.settings,
            current_signers=[load_signer(world.root_key)],
            new_signers=[load_signer(world.root_key)],
        )


def test_root_rotation_without_the_old_threshold_is_refused(world):
    stranger = _key_file(world, "stranger")
    with pytest.raises(TufError, match="not signed by a threshold"):
        admin.rotate_root(
            world.store,
            world.settings,
            current_signers=[load_signer(stranger)],
            new_signers=[load_signer(stranger)],
        )
    assert "tuf/2.root.json" not in world.object_versions()


def test_targets_rotation(world):
    new_key = _key_file(world, "targets-2")
    result = admin.rotate_targets(
        world.store,
        world.settings,
        root_signers=[load_signer(world.root_key)],
        new_signers=[load_signer(new_key)],
    )
    assert result.written == {"root": 2, "targets": 3}
    world.refresh()
    _assert_client_finds_v1(world)
    # Adding a team now needs the new targets key.
    with pytest.raises(TufError, match="targets"):
        world.add_team("team-b", "team-b/*")


@pytest.mark.parametrize("role", ["snapshot", "timestamp"])
def test_online_key_rotation(world, role, tmp_path):
    cache = tmp_path / "client"
    _assert_client_finds_v1(world, cache)
    new_uri = world.kms_key()
    admin.rotate_online_role(
        world.store,
        world.settings,
        role,
        root_signers=[load_signer(world.root_key)],
        new_key=new_uri,
    )
    # The old online signature no longer verifies: the refresh must re-sign.
    result = world.refresh()
    assert result.timestamp_written is True
    if role == "snapshot":
        assert result.snapshot_written is True
    latest = Metadata.from_bytes(
        world.get_raw(
            "timestamp.json"
            if role == "timestamp"
            else f"{result.snapshot_version}.snapshot.json"
        )
    )
    root = Metadata.from_bytes(world.get_raw("2.root.json")).signed
    assert set(latest.signatures) == set(root.roles[role].keyids)
    _assert_client_finds_v1(world, cache)


def test_team_key_rotation_keeps_metadata_valid_and_signs_with_the_new_key(world):
    old_targets = world.store.latest_version("targets")
    new_uri = world.kms_key()
    result = admin.rotate_team(
        world.store,
        world.settings,
        "team-a",
        targets_signers=[load_signer(world.targets_key)],
        new_key=new_uri,
    )
    assert result.written["targets"] == old_targets + 2
    targets = Metadata.from_bytes(
        world.get_raw(f"{old_targets + 2}.targets.json")
    ).signed
    new_keyids = targets.delegations.roles["team-a"].keyids
    assert len(new_keyids) == 1
    team = Metadata.from_bytes(world.get_raw(f"{result.written['team-a']}.team-a.json"))
    assert set(team.signatures) == set(new_keyids)
    world.refresh()
    _assert_client_finds_v1(world)

    update = world.writer().add_target(
        "team-a", "team-a/app", "v2", manifest(2), custom()
    )
    latest = Metadata.from_bytes(world.get_raw(f"{update.version}.team-a.json"))
    assert set(latest.signatures) == set(new_keyids)
    world.refresh()
    assert world.updater().get_targetinfo("team-a/app/tags/v2") is not None


def test_team_key_rotation_with_hash_bins(world):
    world.add_team("team-b", "team-b/*", bin_threshold=3, bin_bits=1)
    writer = world.writer()
    for n in range(5):
        writer.add_target("team-b", "team-b/app", f"v{n}", manifest(n), custom())
    world.refresh()
    admin.rotate_team(
        world.store,
        world.settings,
        "team-b",
        targets_signers=[load_signer(world.targets_key)],
        new_key=world.kms_key(),
    )
    result = world.refresh()
    assert result.held_back == {}
    updater = world.updater()
    for n in range(5):
        assert updater.get_targetinfo(f"team-b/app/tags/v{n}") is not None


def test_writer_resigns_its_version_when_targets_moves_during_the_write(
    world, monkeypatch
):
    new_key = public_key_for(world.kms_key(), online=True)

    def delegate_to_new_key_only():
        repo = MetadataRepository(
            world.store,
            RoleSigners({"targets": [load_signer(world.targets_key)]}),
            world.settings.expiry_for,
        )
        with repo.edit_targets() as targets:
            targets.delegations.keys[new_key.keyid] = new_key
            targets.delegations.roles["team-a"].keyids = [new_key.keyid]

    original = TargetsWriter._signed_under_old_delegation
    calls = []

    def rotate_then_check(self, team, outcome, repo):
        if not calls:
            delegate_to_new_key_only()
        calls.append(team)
        return original(self, team, outcome, repo)

    monkeypatch.setattr(
        TargetsWriter, "_signed_under_old_delegation", rotate_then_check
    )
    update = world.writer().add_target(
        "team-a", "team-a/app", "v2", manifest(2), custom()
    )
    assert len(calls) == 2
    assert update.changed is True
    assert update.written == {"team-a": update.version}
    latest = Metadata.from_bytes(world.get_raw(f"{update.version}.team-a.json"))
    assert set(latest.signatures) == {new_key.keyid}
    assert "team-a/app/tags/v2" in latest.signed.targets
    assert world.refresh().held_back == {}
    assert world.updater().get_targetinfo("team-a/app/tags/v2") is not None
