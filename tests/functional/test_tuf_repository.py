import hashlib
import json
from dataclasses import replace
from datetime import timedelta

import pytest
from tuf.api.metadata import Metadata, MetaFile

from regseal.errors import FormatError, PolicyError, TargetRollbackError, TufError
from regseal.tuf import admin
from regseal.tuf.repository import utcnow
from regseal.tuf.signers import load_signer
from regseal.tuf.targets import TargetRecord
from tests.support.tuf_world import custom, manifest, tuf_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    with tuf_world(tmp_path, monkeypatch) as w:
        yield w


def _md(world, name):
    return Metadata.from_bytes(world.get_raw(name))


def test_init_writes_version_one_of_every_top_level_role(world):
    assert world.object_versions() == {
        "tuf/1.root.json": 1,
        "tuf/1.targets.json": 1,
        "tuf/1.snapshot.json": 1,
        "tuf/timestamp.json": 1,
    }
    root = _md(world, "1.root.json").signed
    assert root.consistent_snapshot is True
    assert root.roles["snapshot"].keyids != root.roles["timestamp"].keyids
    timestamp = _md(world, "timestamp.json").signed
    snapshot_bytes = world.get_raw("1.snapshot.json")
    assert timestamp.snapshot_meta.version == 1
    assert timestamp.snapshot_meta.length == len(snapshot_bytes)
    assert timestamp.snapshot_meta.hashes == {
        "sha256": hashlib.sha256(snapshot_bytes).hexdigest()
    }
    meta = Metadata.from_bytes(snapshot_bytes).signed.meta["targets.json"]
    assert meta.hashes == {
        "sha256": hashlib.sha256(world.get_raw("1.targets.json")).hexdigest()
    }


def test_init_twice_is_refused(world):
    with pytest.raises(TufError, match="already exists"):
        admin.init_repository(
            world.store,
            world.settings,
            root_signers=[load_signer(world.root_key)],
            targets_signers=[load_signer(world.targets_key)],
            snapshot_key=world.snapshot_uri,
            timestamp_key=world.timestamp_uri,
        )


def test_reference_client_finds_added_targets_with_custom_fields(world):
    world.add_team("team-a", "team-a/*")
    writer = world.writer()
    first = writer.add_target("team-a", "team-a/app", "v1", manifest(1), custom())
    second = writer.add_target("team-a", "team-a/web", "v2", manifest(2), custom())
    assert (first.role, first.version, first.changed) == ("team-a", 2, True)
    assert second.version == 3
    assert second.targets_changed.roles == {"team-a": 3}
    world.refresh(hints=dict(second.written))

    updater = world.updater()
    updater.refresh()
    target = updater.get_targetinfo("team-a/web/tags/v2")
    assert target is not None
    assert target.length == len(manifest(2))
    assert target.hashes["sha256"] == hashlib.sha256(manifest(2)).hexdigest()
    assert target.custom["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert target.custom["recipients"] == ["jwe:test-recipient"]
    assert updater.get_targetinfo("team-a/app/tags/v1").length == len(manifest(1))
    assert updater.get_targetinfo("team-a/app/tags/v9") is None


def test_adding_the_same_target_again_writes_nothing(world):
    world.add_team("team-a")
    writer = world.writer()
    writer.add_target("team-a", "team-a/app", "v1", manifest(1), custom())
    again = writer.add_target("team-a", "team-a/app", "v1", manifest(1), custom())
    assert again.changed is False
    assert again.written == {}
    assert again.targets_changed is None
    assert again.version == 2
    assert "tuf/3.team-a.json" not in world.object_versions()


def test_moving_a_tag_replaces_its_target(world):
    world.add_team("team-a")
    writer = world.writer()
    writer.add_target("team-a", "team-a/app", "v1", manifest(1), custom())
    moved = writer.add_target("team-a", "team-a/app", "v1", manifest(2), custom())
    assert moved.changed is True
    world.refresh()
    target = world.updater().get_targetinfo("team-a/app/tags/v1")
    assert target.hashes["sha256"] == hashlib.sha256(manifest(2)).hexdigest()


def test_remove_target_removes_it_for_clients(world):
    world.add_team("team-a")
    writer = world.writer()
    writer.add_target("team-a", "team-a/app", "v1", manifest(1), custom())
    writer.add_target("team-a", "team-a/app", "v2", manifest(2), custom())
    removed = writer.remove_target("team-a", "team-a/app", "v1")
    assert (removed.changed, removed.version) == (True, 4)
    absent = writer.remove_target("team-a", "team-a/app", "v1")
    assert (absent.changed, absent.written) == (False, {})
    world.refresh()
    updater = world.updater()
    assert updater.get_targetinfo("team-a/app/tags/v1") is None
    assert updater.get_targetinfo("team-a/app/tags/v2") is not None


def test_every_version_is_written_once_and_versions_increase(world):
    world.add_team("team-a")
    writer = world.writer()
    for n in range(5):
        writer.add_target("team-a", "team-a/app", f"v{n}", manifest(n), custom())
        world.refresh()
    counts = world.object_versions()
    versioned = {k: c for k, c in counts.items() if k != "tuf/timestamp.json"}
    assert set(versioned.values()) == {1}
    team_versions = sorted(
        int(k.split("/")[1].split(".")[0]) for k in counts if k.endswith(".team-a.json")
    )
    assert team_versions == [1, 2, 3, 4, 5, 6]
    snapshot_versions = [
        _md(world, f"{v}.snapshot.json").signed.meta["team-a.json"].version
        for v in range(2, 7)
    ]
    assert snapshot_versions == [2, 3, 4, 5, 6]
    assert "tuf/7.snapshot.json" not in counts
    assert counts["tuf/timestamp.json"] == 6


def test_repository_outside_the_team_is_refused(world):
    world.add_team("team-a", "team-a/*")
    world.add_team("team-b", "team-b/*")
    with pytest.raises(PolicyError, match="not a tag of team team-a"):
        world.writer().add_target("team-a", "team-b/app", "v1", manifest(1), custom())
    with pytest.raises(PolicyError, match="not a tag of team team-a"):
        world.writer().add_target(
            "team-a", "team-a/app/deeper", "v1", manifest(1), custom()
        )


def test_repository_deeper_than_tuf_paths_reach_is_refused_with_the_limit(world):
    world.add_team("team-a", "team-a/**")
    deep = "team-a/" + "/".join("abcdefghi")  # 10 components

    with pytest.raises(PolicyError) as refused:
        world.writer().add_target("team-a", deep, "v1", manifest(1), custom())

    message = str(refused.value)
    assert f"{deep}/tags/v1: not a tag of team team-a" in message
    assert "has 10 components and TUF paths cover at most 8" in message
    assert "re-run" not in message


def test_unknown_team_is_refused(world):
    with pytest.raises(TufError, match="has no delegation"):
        world.writer().add_target("team-x", "team-x/app", "v1", manifest(1), custom())


def test_float_in_custom_is_refused_before_anything_is_written(world):
    world.add_team("team-a")
    before = world.object_versions()
    with pytest.raises(FormatError, match="no floats"):
        world.writer().add_target(
            "team-a", "team-a/app", "v1", manifest(1), {"mediaType": "a/b", "x": 1.5}
        )
    assert world.object_versions() == before


def test_overlapping_team_globs_are_refused(world):
    world.add_team("team-a", "team-a/*")
    with pytest.raises(PolicyError, match="must not overlap"):
        world.add_team("team-b", "team-*/app")
    with pytest.raises(TufError, match="already delegated"):
        world.add_team("team-a", "other/*")


def test_refresh_without_changes_writes_nothing_and_force_bumps(world):
    world.add_team("team-a")
    world.refresh()
    quiet = world.refresh()
    assert (quiet.snapshot_written, quiet.timestamp_written) == (False, False)
    forced = world.refresh(force=True)
    assert forced.snapshot_written
    assert forced.timestamp_written
    assert forced.timestamp_version == quiet.timestamp_version + 1
    assert forced.snapshot_version == quiet.snapshot_version + 1


def test_timestamp_near_expiry_is_resigned_with_a_higher_version(world):
    world.add_team("team-a")
    first = world.refresh()
    # 13 hours later the 24-hour timestamp is inside the 12-hour window.
    later = world.publisher(clock=lambda: utcnow() + timedelta(hours=13))
    result = later.refresh_snapshot_and_timestamp()
    assert result.timestamp_written is True
    assert result.snapshot_written is False
    assert result.timestamp_version == first.timestamp_version + 1
    timestamp = _md(world, "timestamp.json").signed
    assert timestamp.expires > utcnow() + timedelta(hours=30)


def test_snapshot_keeps_every_role_it_ever_listed(world):
    world.add_team("team-a")
    world.refresh()
    # A snapshot written from a view without team-a must still list it.
    repo = world.publisher()._repository()
    repo.update_snapshot({"targets.json": repo.info("targets")}, force=True)
    repo.update_timestamp()
    latest = repo.stored_version("snapshot")
    meta = _md(world, f"{latest}.snapshot.json").signed.meta
    assert set(meta) == {"targets.json", "team-a.json"}


def test_snapshot_refuses_a_version_rollback(world):
    world.add_team("team-a")
    world.writer().add_target("team-a", "team-a/app", "v1", manifest(1), custom())
    world.refresh()
    repo = world.publisher()._repository()
    with pytest.raises(TufError, match="refusing a rollback"):
        repo.update_snapshot({"team-a.json": MetaFile(1)})


def test_team_roles_near_expiry_are_resigned_by_the_publisher(world):
    world.add_team("team-a", expiry=timedelta(days=40))
    world.writer().add_target("team-a", "team-a/app", "v1", manifest(1), custom())
    world.refresh()
    later = world.publisher(clock=lambda: utcnow() + timedelta(days=11))
    result = later.refresh_snapshot_and_timestamp()
    assert result.resigned == ("team-a",)
    assert result.updated["team-a.json"] == 3
    team = _md(world, "3.team-a.json").signed
    assert "team-a/app/tags/v1" in team.targets
    assert team.expires > utcnow() + timedelta(days=45)


def test_snapshot_lists_exact_lengths_and_hashes(world):
    world.add_team("team-a")
    world.writer().add_target("team-a", "team-a/app", "v1", manifest(1), custom())
    result = world.refresh()
    snapshot = _md(world, f"{result.snapshot_version}.snapshot.json").signed
    for name, meta in snapshot.meta.items():
        data = world.get_raw(f"{meta.version}.{name}")
        assert meta.length == len(data)
        assert meta.hashes == {"sha256": hashlib.sha256(data).hexdigest()}


def test_team_role_is_split_into_hash_bins_when_it_grows(world):
    world.add_team("team-a", "team-a/**", bin_threshold=6, bin_bits=2)
    writer = world.writer()
    for n in range(6):
        update = writer.add_target(
            "team-a", f"team-a/r{n}", "v1", manifest(n), custom()
        )
        assert update.role == "team-a"
    split = writer.add_target("team-a", "team-a/deep/r6", "v1", manifest(6), custom())
    # Bins are named for the team role version that delegates to them.
    assert split.role.startswith("team-a.bins-v8-")
    assert split.written == {
        "team-a": 8,
        "team-a.bins-v8-0": 1,
        "team-a.bins-v8-1": 1,
        "team-a.bins-v8-2": 1,
        "team-a.bins-v8-3": 1,
    }
    team = _md(world, f"{split.written['team-a']}.team-a.json").signed
    assert team.targets == {}
    assert team.delegations.succinct_roles.bit_length == 2
    after = writer.add_target("team-a", "team-a/r7", "v1", manifest(7), custom())
    assert set(after.written) == {after.role}
    writer.remove_target("team-a", "team-a/r0", "v1")
    world.refresh(hints=dict(after.written))

    updater = world.updater()
    for n in range(1, 8):
        repository = "team-a/deep/r6" if n == 6 else f"team-a/r{n}"
        target = updater.get_targetinfo(f"{repository}/tags/v1")
        assert target is not None, repository
        assert target.hashes["sha256"] == hashlib.sha256(manifest(n)).hexdigest()
    assert updater.get_targetinfo("team-a/r0/tags/v1") is None


def test_bulk_add_writes_one_version_per_role(world):
    world.add_team("team-a", "team-a/*", bin_threshold=100)
    records = [
        TargetRecord.for_manifest("team-a/app", f"v{n}", manifest(n), custom())
        for n in range(50)
    ]
    update = world.writer().add_targets("team-a", records)
    assert update.written == {"team-a": 2}
    assert len(update.changed) == 50
    team = json.loads(world.get_raw("2.team-a.json"))
    assert len(team["signed"]["targets"]) == 50


def test_refresh_warns_when_offline_roles_near_expiry(world):
    assert world.refresh().offline_expiring == ()
    later = world.publisher(clock=lambda: utcnow() + timedelta(days=340))
    result = later.refresh_snapshot_and_timestamp()
    assert result.offline_expiring == ("root", "targets")


def _sealed(at):
    return replace(custom(), sealed_at=at)


@pytest.mark.parametrize("bins", [False, True], ids=["flat", "hash-bins"])
def test_newer_only_target_refuses_an_earlier_seal_and_writes_nothing(world, bins):
    world.add_team("team-a", "team-a/*", **({"bin_threshold": 1} if bins else {}))
    writer = world.writer()
    writer.add_target("team-a", "team-a/other", "v1", manifest("other"), custom())
    writer.add_target("team-a", "team-a/app", "v1", manifest(2), _sealed(2000))
    before = world.object_versions()

    with pytest.raises(TargetRollbackError) as caught:
        writer.add_target(
            "team-a", "team-a/app", "v1", manifest(1), _sealed(1000), newer_only=True
        )

    assert caught.value.current == "sha256:" + hashlib.sha256(manifest(2)).hexdigest()
    assert caught.value.refused == "sha256:" + hashlib.sha256(manifest(1)).hexdigest()
    assert world.object_versions() == before
    world.refresh()
    held = world.updater().get_targetinfo("team-a/app/tags/v1")
    assert held.hashes == {"sha256": hashlib.sha256(manifest(2)).hexdigest()}
    assert any(".bins-" in key for key in before) is bins


@pytest.mark.parametrize("bins", [False, True], ids=["flat", "hash-bins"])
def test_newer_only_target_moves_forward_and_keeps_one_that_names_the_bytes(
    world, bins
):
    world.add_team("team-a", "team-a/*", **({"bin_threshold": 1} if bins else {}))
    writer = world.writer()
    writer.add_target("team-a", "team-a/other", "v1", manifest("other"), custom())
    writer.add_target("team-a", "team-a/app", "v1", manifest(1), _sealed(1000))

    same = writer.add_target(
        "team-a", "team-a/app", "v1", manifest(1), _sealed(5000), newer_only=True
    )
    later = writer.add_target(
        "team-a", "team-a/app", "v1", manifest(2), _sealed(2000), newer_only=True
    )
    world.refresh()

    assert (same.changed, same.written) == (False, {})
    assert later.changed is True
    held = world.updater().get_targetinfo("team-a/app/tags/v1")
    assert held.hashes == {"sha256": hashlib.sha256(manifest(2)).hexdigest()}
    assert held.custom["sealedAt"] == 2000
