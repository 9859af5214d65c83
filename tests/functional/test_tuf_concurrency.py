import threading

import pytest
from tuf.api.metadata import Metadata

from tests.support.tuf_world import custom, manifest, tuf_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    with tuf_world(tmp_path, monkeypatch, max_attempts=40) as w:
        yield w


def _run_concurrently(*jobs):
    errors = []
    start = threading.Barrier(len(jobs))

    def run(job):
        start.wait()
        try:
            job()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []


def _team_versions(world, team):
    counts = world.object_versions()
    versions = {
        int(key.split("/")[1].split(".")[0]): count
        for key, count in counts.items()
        if key.endswith(f".{team}.json") and key.count(".") == 2
    }
    return versions


def test_two_concurrent_writers_lose_no_target_and_never_share_a_version(world):
    world.add_team("team-a", "team-a/*")
    per_writer = 12
    writers = [world.writer(max_attempts=40), world.writer(max_attempts=40)]
    results = {0: [], 1: []}

    def job(index):
        def add():
            for n in range(per_writer):
                update = writers[index].add_target(
                    "team-a",
                    f"team-a/w{index}",
                    f"v{n}",
                    manifest(f"{index}-{n}"),
                    custom(),
                )
                results[index].append(update.version)

        return add

    _run_concurrently(job(0), job(1))

    versions = _team_versions(world, "team-a")
    # Every file was created exactly once, with no gaps: one per add plus v1.
    assert set(versions.values()) == {1}
    assert sorted(versions) == list(range(1, 2 * per_writer + 2))
    # Each writer saw its own versions strictly increase.
    for index in (0, 1):
        assert results[index] == sorted(set(results[index]))
    latest = Metadata.from_bytes(world.get_raw(f"{max(versions)}.team-a.json"))
    assert len(latest.signed.targets) == 2 * per_writer

    world.refresh()
    updater = world.updater()
    for index in (0, 1):
        for n in range(per_writer):
            assert updater.get_targetinfo(f"team-a/w{index}/tags/v{n}") is not None


def test_concurrent_writers_across_a_hash_bin_split_lose_no_target(world):
    world.add_team("team-a", "team-a/*", bin_threshold=5, bin_bits=2)
    writers = [world.writer(max_attempts=40), world.writer(max_attempts=40)]

    def job(index):
        def add():
            for n in range(6):
                writers[index].add_target(
                    "team-a",
                    f"team-a/w{index}",
                    f"v{n}",
                    manifest(f"{index}-{n}"),
                    custom(),
                )

        return add

    _run_concurrently(job(0), job(1))

    counts = world.object_versions()
    assert {c for k, c in counts.items() if k != "tuf/timestamp.json"} == {1}
    world.refresh()
    updater = world.updater()
    for index in (0, 1):
        for n in range(6):
            target = updater.get_targetinfo(f"team-a/w{index}/tags/v{n}")
            assert target is not None, (index, n)


def test_concurrent_refreshes_publish_monotonic_snapshots(world):
    world.add_team("team-a", "team-a/*")
    writer = world.writer()
    publishers = [world.publisher(), world.publisher()]
    seen = {0: [], 1: []}

    def job(index):
        def refresh():
            for n in range(4):
                if index == 0:
                    writer.add_target(
                        "team-a", "team-a/app", f"v{n}", manifest(n), custom()
                    )
                result = publishers[index].refresh_snapshot_and_timestamp()
                seen[index].append(result.timestamp_version)

        return refresh

    _run_concurrently(job(0), job(1))

    counts = world.object_versions()
    assert {c for k, c in counts.items() if k.endswith(".snapshot.json")} == {1}
    for index in (0, 1):
        assert seen[index] == sorted(seen[index])
    # The final timestamp names the newest snapshot, which lists the newest role.
    timestamp = Metadata.from_bytes(world.get_raw("timestamp.json")).signed
    snapshots = sorted(
        int(k.split("/")[1].split(".")[0])
        for k in counts
        if k.endswith(".snapshot.json")
    )
    assert timestamp.snapshot_meta.version == snapshots[-1]
    assert world.updater().get_targetinfo("team-a/app/tags/v3") is not None
