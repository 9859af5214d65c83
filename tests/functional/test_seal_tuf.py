"""The seal records each sealed tag as a TUF target the reference client accepts."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization

from regseal.digest import Digest
from regseal.events import Action, ObjectEvent
from regseal.kms import KmsWrapper
from regseal.policy import PolicySource
from regseal.seal import Outcome, Sealer
from regseal.settings import Settings
from regseal.storage import ObjectStore
from regseal.targetlog import TufTargetLog
from tests.support.registry import FakeRegistry, random_layer
from tests.support.tuf_world import BUCKET, tuf_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    with tuf_world(tmp_path, monkeypatch) as world:
        world.add_team("team-a", "team-a/*")
        yield world


@pytest.fixture
def sealing(world, rsa_keypair):
    key = world.kms.create_key()["KeyMetadata"]["Arn"]
    policy = {
        "version": "tuf-1",
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
    messages = []
    store = ObjectStore(world.s3, BUCKET)
    sealer = Sealer(
        store,
        Settings(bucket=BUCKET),
        PolicySource("test", reader=lambda _: json.dumps(policy).encode()),
        KmsWrapper(world.kms),
        targets=TufTargetLog(world.writer(), notify=messages.append),
    )
    return sealer, FakeRegistry(store), messages


def target(world, path):
    updater = world.updater()
    updater.refresh()
    return updater.get_targetinfo(path)


def test_sealed_tag_becomes_a_verified_target(world, sealing):
    sealer, registry, messages = sealing
    pushed = registry.push_image("team-a/app", "1.0", [random_layer()])

    result = sealer.handle(
        ObjectEvent(BUCKET, sealer.layout.tag_link("team-a/app", "1.0"), Action.CREATED)
    )
    world.refresh()

    assert result.outcome is Outcome.SEALED
    assert len(messages) == 1
    sealed = Digest.parse(result.sealed_digest)
    manifest = sealer.store.get(sealer.layout.blob_data(sealed)).data
    info = target(world, "team-a/app/tags/1.0")
    assert info is not None
    assert info.hashes == {"sha256": sealed.hex}
    assert info.length == len(manifest)
    custom = info.custom
    assert custom["plaintextDigest"] == pushed.digest.value
    assert custom["platforms"] == ["linux/amd64"]
    assert custom["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert custom["recipients"][0].startswith("nodes=sha256:")


def test_redelivery_writes_no_new_target_version(world, sealing):
    sealer, registry, messages = sealing
    registry.push_image("team-a/app", "1.0", [random_layer()])
    event = ObjectEvent(
        BUCKET, sealer.layout.tag_link("team-a/app", "1.0"), Action.CREATED
    )
    sealer.handle(event)
    before = world.object_versions()

    again = sealer.handle(event)

    assert again.reason == "already sealed"
    assert len(messages) == 1
    assert world.object_versions() == before


def test_deleted_tag_loses_its_target(world, sealing):
    sealer, registry, messages = sealing
    registry.push_image("team-a/app", "1.0", [random_layer()])
    key = sealer.layout.tag_link("team-a/app", "1.0")
    sealer.handle(ObjectEvent(BUCKET, key, Action.CREATED))
    world.refresh()
    assert target(world, "team-a/app/tags/1.0") is not None
    for stale in sealer.store.list_keys(sealer.layout.tags_prefix("team-a/app")):
        sealer.store.delete(stale)

    result = sealer.handle(ObjectEvent(BUCKET, key, Action.REMOVED))
    world.refresh()

    assert result.reason == "target removed"
    assert len(messages) == 2
    assert target(world, "team-a/app/tags/1.0") is None


def test_index_target_lists_both_platforms(world, sealing):
    sealer, registry, _ = sealing
    registry.push_index(
        "team-a/multi", "2", [("amd64", [random_layer()]), ("arm64", [random_layer()])]
    )
    sealer.seal_tag("team-a/multi", "2")
    world.refresh()
    info = target(world, "team-a/multi/tags/2")
    assert info.custom["platforms"] == ["linux/amd64", "linux/arm64"]
    assert info.custom["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_status_fills_tuf_target_from_the_stored_team_role(world, sealing):
    from regseal import status
    from regseal.inventory import Selection, scan

    sealer, registry, _ = sealing
    registry.push_image("team-a/app", "1.0", [random_layer()])
    registry.push_image("team-a/app", "2.0", [random_layer()])
    for tag in ("1.0", "2.0"):
        sealer.handle(
            ObjectEvent(
                BUCKET, sealer.layout.tag_link("team-a/app", tag), Action.CREATED
            )
        )
    registry.push_image("team-a/app", "3.0", [random_layer()])
    untracked = Sealer(
        sealer.store, sealer.settings, sealer.policies, sealer.kms, targets=None
    )
    untracked.handle(
        ObjectEvent(BUCKET, sealer.layout.tag_link("team-a/app", "3.0"), Action.CREATED)
    )
    # 2.0 now points at 1.0's sealed manifest, which its target does not name.
    one = registry.tag_digest("team-a/app", "1.0")
    two = registry.tag_digest("team-a/app", "2.0")
    registry.put_manifest(
        "team-a/app", sealer.store.get(sealer.layout.blob_data(one)).data, "2.0"
    )
    two_size = len(sealer.store.get(sealer.layout.blob_data(two)).data)

    rows = status.statuses(
        sealer,
        scan(sealer.store, sealer.layout, Selection.parse("team-a/app")),
        sealer.policies.get(),
    )
    without_tuf = status.tag_status(
        untracked, "team-a/app", "1.0", sealer.policies.get()
    )

    assert {r.tag: (r.state, r.tuf_target) for r in rows} == {
        "1.0": ("sealed", "current"),
        "2.0": ("sealed", f"stale: {two} ({two_size} bytes)"),
        "3.0": ("sealed", "missing"),
    }
    assert without_tuf.tuf_target is None
    assert "tuf_target" not in without_tuf.to_json()


def test_public_pem_is_what_the_policy_holds(rsa_keypair):
    # Guard for the fixture above: the policy takes SubjectPublicKeyInfo PEM.
    key = serialization.load_pem_public_key(rsa_keypair.public_pem)
    assert key.key_size == 2048


def test_a_pushed_manifest_forging_regseals_annotations_is_not_signed_or_acted_on(
    world, sealing
):
    # Anyone who may push can copy a sealed manifest, change it and name any
    # plaintext in regseal's annotation. Only regseal's seal record counts.
    sealer, registry, messages = sealing
    registry.push_image("team-a/app", "1.0", [random_layer()])
    sealed = sealer.seal_tag("team-a/app", "1.0")
    waiting = registry.push_image("team-a/app", None, [random_layer()])
    doc = json.loads(
        sealer.store.get(
            sealer.layout.blob_data(Digest.parse(sealed.sealed_digest))
        ).data
    )
    doc["annotations"]["dev.regseal.plaintext-manifest"] = waiting.digest.value
    doc["annotations"]["org.example.note"] = "not what regseal wrote"
    forged = registry.put_manifest("team-a/app", json.dumps(doc).encode(), "evil")
    before = len(messages)

    result = sealer.seal_tag("team-a/app", "evil")
    world.refresh()

    assert result.outcome is Outcome.SKIPPED
    assert "no record of sealing it" in result.reason
    assert result.plaintext_digest == forged.value
    assert target(world, "team-a/app/tags/evil") is None
    assert len(messages) == before
    # The plaintext it names is still there, waiting for its own seal.
    assert sealer.store.exists(
        sealer.layout.revision_link("team-a/app", waiting.digest)
    )
    assert target(world, "team-a/app/tags/1.0").hashes == {
        "sha256": Digest.parse(sealed.sealed_digest).hex
    }
