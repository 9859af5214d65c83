"""Crash at every write of a seal that records TUF targets, then check with TUF.

The same matrix as test_crash.py, with the seal's TUF target log on: the
team role the seal signs and writes (python-tuf metadata in S3) adds crash
points. After the retry the TUF function's part (a new snapshot and
timestamp) runs, and the reference client must find each sealed tag as a
target of exactly its sealed manifest (invariants.tuf_targets).
"""

from __future__ import annotations

import contextlib
import json

import pytest

from regseal.errors import RegsealError
from regseal.events import Action, ObjectEvent
from regseal.invariants import Keys, check_registry, tuf_targets
from regseal.jwe import load_private_key
from regseal.kms import KmsWrapper
from regseal.layout import RegistryLayout
from regseal.policy import PolicySource
from regseal.seal import Sealer
from regseal.settings import Settings
from regseal.storage import ObjectStore
from regseal.targetlog import TufTargetLog
from regseal.tuf.fetcher import S3Fetcher
from regseal.tuf.updates import TargetsWriter
from tests.support.faults import (
    MATRIX_MODES,
    Crash,
    FaultPlan,
    FaultyKms,
    FaultyStore,
    faulty_metadata_store,
)
from tests.support.registry import FakeRegistry, random_layer
from tests.support.tuf_world import BUCKET, no_sleep, tuf_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    with tuf_world(tmp_path, monkeypatch) as world:
        world.add_team("team-a", "team-a/*")
        yield world


def sealer_for(world, policy, plan):
    store = ObjectStore(world.s3, BUCKET)
    metadata = faulty_metadata_store(world.store, plan)
    return Sealer(
        FaultyStore(store, plan),
        Settings(bucket=BUCKET),
        PolicySource("test", reader=lambda _loc: json.dumps(policy).encode()),
        FaultyKms(KmsWrapper(world.kms), plan),
        targets=TufTargetLog(TargetsWriter(metadata, sleep=no_sleep)),
    )


@pytest.fixture
def policy(world, rsa_keypair):
    key = world.kms.create_key()["KeyMetadata"]["Arn"]
    return {
        "version": "tuf-crash-1",
        "teams": {
            "team-a": {
                "repositories": ["team-a/*"],
                "kms_key": key,
                "recipients": [
                    {"name": "nodes", "public_key": rsa_keypair.public_pem.decode()}
                ],
            }
        },
    }


def tuf_check(world, cache):
    return tuf_targets(
        world.root, world.store.location.url, cache, fetcher=S3Fetcher(world.s3)
    )


def test_tuf_check_finds_a_tag_that_is_not_its_target(world, policy, tmp_path):
    store = ObjectStore(world.s3, BUCKET)
    registry = FakeRegistry(store)
    registry.push_image("team-a/app", "1", [random_layer()])
    event = ObjectEvent(
        BUCKET, RegistryLayout().tag_link("team-a/app", "1"), Action.CREATED
    )
    result = sealer_for(world, policy, FaultPlan()).handle(event)
    world.refresh()
    assert check_registry(store, extra_checks=[tuf_check(world, tmp_path / "a")]).ok

    sealed = registry.tag_digest("team-a/app", "1")
    signed_length = len(store.get(RegistryLayout().blob_data(sealed)).data)
    doc = registry.manifest(sealed)
    doc["annotations"]["org.example.forged"] = "yes"
    data = json.dumps(doc).encode()
    forged = registry.put_manifest("team-a/app", data, "1")
    report = check_registry(store, extra_checks=[tuf_check(world, tmp_path / "b")])

    assert [str(v) for v in report.violations] == [
        f"[tuf-target] team-a/app:1: target is {result.sealed_digest} "
        f"({signed_length} bytes), the tag {forged} ({len(data)} bytes)"
    ]


def test_crash_at_every_write_of_a_tuf_recorded_seal(
    world, policy, rsa_keypair, tmp_path, record_property
):
    store = ObjectStore(world.s3, BUCKET)
    registry = FakeRegistry(store)
    layout = RegistryLayout()
    jwe_keys = Keys(
        jwe_keys=[load_private_key(rsa_keypair.private_pem, source="test key")]
    )
    counter = iter(range(10_000))

    def run(mode, n):
        repository = f"team-a/app-{next(counter)}"
        pushed = registry.push_image(repository, "1", [random_layer(), random_layer()])
        event = ObjectEvent(BUCKET, layout.tag_link(repository, "1"), Action.CREATED)
        plan = FaultPlan(fail_at=n, mode=mode)
        with contextlib.suppress(Crash, RegsealError):
            sealer_for(world, policy, plan).handle(event)
        mid = check_registry(store, keys=jwe_keys, repositories=[repository])
        sealer_for(world, policy, FaultPlan()).handle(event)
        world.refresh()
        tuf = tuf_targets(
            world.root,
            world.store.location.url,
            tmp_path / f"client-{repository.replace('/', '-')}",
            fetcher=__import__("regseal.tuf.fetcher", fromlist=["S3Fetcher"]).S3Fetcher(
                world.s3
            ),
        )
        final = check_registry(
            store,
            keys=jwe_keys,
            finished=True,
            repositories=[repository],
            extra_checks=[tuf],
        )
        problems = [f"{mode} {n}, mid-way: {v}" for v in mid.violations]
        problems += [f"{mode} {n}, after retry: {v}" for v in final.violations]
        if registry.tag_digest(repository, "1") == pushed.digest:
            problems.append(f"{mode} {n}: tag still at the plaintext")
        return plan, problems

    complete, problems = run("kill-before", None)
    writes = complete.writes
    assert problems == []
    assert any(w.startswith("TUF put_object") for w in writes)

    cases = failed = 0
    for mode in MATRIX_MODES:
        for n in range(1, len(writes) + 1):
            plan, found = run(mode, n)
            cases += 1
            failed += bool(found or not plan.fired)
            problems += found
    record_property("cases", cases)
    record_property("passed", cases - failed)
    to_tuf = sum(w.startswith("TUF") for w in writes)
    print(
        f"tuf-recorded seal: {len(writes)} writes ({to_tuf} to TUF metadata), "
        f"{cases} crash points tried, {failed} broke an invariant"
    )
    assert problems == [], "\n".join(problems)


def test_regseal_check_verifies_tuf_targets(
    world, policy, tmp_path, monkeypatch, capsys
):
    from regseal.cli import main

    store = ObjectStore(world.s3, BUCKET)
    FakeRegistry(store).push_image("team-a/app", "1", [random_layer()])
    event = ObjectEvent(
        BUCKET, RegistryLayout().tag_link("team-a/app", "1"), Action.CREATED
    )
    sealer_for(world, policy, FaultPlan()).handle(event)
    root = tmp_path / "root.json"
    root.write_bytes(world.root)
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(policy))
    monkeypatch.setenv("REGSEAL_BUCKET", BUCKET)
    monkeypatch.setenv("REGSEAL_POLICY", f"file:{policy_file}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = [
        "check",
        "--tuf-root",
        str(root),
        "--tuf-metadata",
        world.store.location.url,
    ]

    before_refresh = main(args)
    before_out = capsys.readouterr().out
    world.refresh()
    after_refresh = main(args)

    # The seal signed the team role; until the TUF function signs a new
    # snapshot, the client does not see the target.
    assert before_refresh == 1
    assert before_out == "[tuf-target] team-a/app:1: no TUF target\n"
    assert after_refresh == 0
