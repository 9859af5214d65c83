"""The seal records each sealed tag as a TUF target the reference client accepts."""

from __future__ import annotations

import json
import logging
import time

import pytest
from cryptography.hazmat.primitives import serialization

from regseal.digest import Digest
from regseal.events import Action, ObjectEvent
from regseal.kms import KmsWrapper
from regseal.layerkeys import LayerKeys
from regseal.layout import encode_link
from regseal.policy import PolicySource
from regseal.rewrap import Rewrapper
from regseal.seal import Outcome, Sealer
from regseal.settings import Settings
from regseal.storage import ObjectStore
from regseal.targetlog import TufTargetLog
from regseal.tuf.targets import TargetCustom
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


# -- a tag's target never moves back (docs/tuf.md, "What it proves") ---------


def tag_event(sealer, repository, tag):
    return ObjectEvent(BUCKET, sealer.layout.tag_link(repository, tag), Action.CREATED)


def seal_two(sealer, registry):
    """Seal v1, then v2 under the same tag; return both sealed digests."""
    registry.push_image("team-a/app", "1.0", [random_layer()])
    v1 = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    registry.push_image("team-a/app", "1.0", [random_layer()])
    v2 = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    assert (v1.outcome, v2.outcome) == (Outcome.SEALED, Outcome.SEALED)
    return Digest.parse(v1.sealed_digest), Digest.parse(v2.sealed_digest)


def rewrite_tag(sealer, repository, tag, digest):
    """What a storage writer bypassing the registry does to roll a tag back."""
    sealer.store.put(sealer.layout.tag_link(repository, tag), encode_link(digest))


def test_tag_link_rolled_back_in_storage_keeps_the_newer_target(world, sealing, caplog):
    sealer, registry, messages = sealing
    v1, v2 = seal_two(sealer, registry)
    rewrite_tag(sealer, "team-a/app", "1.0", v1)
    world.refresh()
    before = world.object_versions()
    bucket_before = registry.snapshot()
    sent = len(messages)

    with caplog.at_level(logging.WARNING, logger="regseal.seal"):
        result = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()

    assert result.outcome is Outcome.SKIPPED
    assert result.plaintext_digest == v1.value
    assert f"sealed before {v2.value}" in result.reason
    assert "target not moved back, nothing hidden" in result.reason
    assert target(world, "team-a/app/tags/1.0").hashes == {"sha256": v2.hex}
    assert len(messages) == sent
    assert world.object_versions() == before
    assert registry.snapshot() == bucket_before
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "team-a/app:1.0" in message
    assert v1.value in message
    assert v2.value in message
    assert "sealedAt" in message


def test_rolled_back_tag_refused_again_on_redelivery(world, sealing, caplog):
    sealer, registry, _ = sealing
    v1, v2 = seal_two(sealer, registry)
    rewrite_tag(sealer, "team-a/app", "1.0", v1)
    sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()
    before = world.object_versions()

    again = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))

    assert again.outcome is Outcome.SKIPPED
    assert "target not moved back" in again.reason
    assert world.object_versions() == before
    assert target(world, "team-a/app/tags/1.0").hashes == {"sha256": v2.hex}


def test_targets_record_when_it_was_sealed(world, sealing):
    sealer, registry, _ = sealing
    registry.push_image("team-a/app", "1.0", [random_layer()])
    sealed = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()

    custom = target(world, "team-a/app/tags/1.0").custom
    record_key = sealer._sealed_record_key(
        "team-a/app", Digest.parse(sealed.plaintext_digest)
    )
    record = json.loads(sealer.store.get(record_key).data)

    assert isinstance(custom["sealedAt"], int)
    assert record["sealed"] == sealed.sealed_digest
    assert record["sealed_at"] <= custom["sealedAt"]
    assert abs(custom["sealedAt"] - time.time() * 1000) < 60_000


def test_seal_of_a_newer_push_after_a_refused_rollback_is_recorded(world, sealing):
    sealer, registry, _ = sealing
    v1, _ = seal_two(sealer, registry)
    rewrite_tag(sealer, "team-a/app", "1.0", v1)
    sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    registry.push_image("team-a/app", "1.0", [random_layer()])

    v3 = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    own = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))  # its tag move
    world.refresh()

    assert v3.outcome is Outcome.SEALED
    assert (own.outcome, own.reason) == (Outcome.SKIPPED, "already sealed")
    assert target(world, "team-a/app/tags/1.0").hashes == {
        "sha256": Digest.parse(v3.sealed_digest).hex
    }


def test_repush_of_an_older_plaintext_image_moves_the_target_back(world, sealing):
    # A push is a push: someone with push rights may tag an older image again.
    sealer, registry, _ = sealing
    layer = random_layer()
    registry.push_image("team-a/app", "1.0", [layer])
    v1 = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    registry.push_image("team-a/app", "1.0", [random_layer()])
    v2 = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    registry.push_image("team-a/app", "1.0", [layer])  # the same image again

    again = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    own = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()

    assert again.outcome is Outcome.REUSED
    assert again.sealed_digest == v1.sealed_digest
    assert (own.outcome, own.reason) == (Outcome.SKIPPED, "already sealed")
    v1_hex = Digest.parse(v1.sealed_digest).hex
    assert target(world, "team-a/app/tags/1.0").hashes == {"sha256": v1_hex}
    # ... and a storage rollback to the image it replaced is refused.
    rewrite_tag(sealer, "team-a/app", "1.0", Digest.parse(v2.sealed_digest))
    refused = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()
    assert "target not moved back" in refused.reason
    assert target(world, "team-a/app/tags/1.0").hashes == {"sha256": v1_hex}


def test_crash_between_tag_move_and_target_record_is_finished_by_the_retry(
    world, sealing
):
    sealer, registry, _ = sealing
    registry.push_image("team-a/app", "1.0", [random_layer()])
    v1 = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    registry.push_image("team-a/app", "1.0", [random_layer()])
    # The same seal with no TUF: the tag moves, the target is not recorded.
    crashed = replace_targets(sealer, None)
    v2 = crashed.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()
    assert target(world, "team-a/app/tags/1.0").hashes == {
        "sha256": Digest.parse(v1.sealed_digest).hex
    }

    retry = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()

    assert (retry.outcome, retry.reason) == (Outcome.SKIPPED, "already sealed")
    assert target(world, "team-a/app/tags/1.0").hashes == {
        "sha256": Digest.parse(v2.sealed_digest).hex
    }


def test_crash_after_a_repush_of_an_older_image_is_finished_by_the_retry(
    world, sealing
):
    # The re-push reuses v1's seal; the crash leaves the target on v2. The
    # retry goes through "already sealed" and must still move it to v1.
    sealer, registry, _ = sealing
    layer = random_layer()
    registry.push_image("team-a/app", "1.0", [layer])
    v1 = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    registry.push_image("team-a/app", "1.0", [random_layer()])
    v2 = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    registry.push_image("team-a/app", "1.0", [layer])  # v1's image again
    crashed = replace_targets(sealer, None)
    again = crashed.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()
    assert again.outcome is Outcome.REUSED
    assert target(world, "team-a/app/tags/1.0").hashes == {
        "sha256": Digest.parse(v2.sealed_digest).hex
    }

    retry = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()

    assert (retry.outcome, retry.reason) == (Outcome.SKIPPED, "already sealed")
    assert target(world, "team-a/app/tags/1.0").hashes == {
        "sha256": Digest.parse(v1.sealed_digest).hex
    }


@pytest.mark.parametrize("rekey", [False, True], ids=["rewrap", "rekey"])
def test_rewrapped_image_is_recorded_by_its_tag_event(world, sealing, rekey):
    sealer, registry, _ = sealing
    registry.push_image("team-a/app", "1.0", [random_layer()])
    sealed = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    keys = LayerKeys(kms=lambda _region: sealer.kms)

    rewrapped = Rewrapper(sealer, keys, rekey=rekey).rewrap_tag(
        "team-a/app", "1.0", force=True
    )
    event = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()

    assert rewrapped.outcome is Outcome.SEALED
    assert rewrapped.sealed_digest != sealed.sealed_digest
    assert (event.outcome, event.reason) == (Outcome.SKIPPED, "already sealed")
    assert target(world, "team-a/app/tags/1.0").hashes == {
        "sha256": Digest.parse(rewrapped.sealed_digest).hex
    }


def test_target_written_before_sealed_at_existed_is_not_compared(world, sealing):
    # NOTE: such a target has nothing to compare with, so the rollback the
    # check refuses is still recorded once; the new target then has sealedAt.
    sealer, registry, _ = sealing
    v1, v2 = seal_two(sealer, registry)
    data = sealer.store.get(sealer.layout.blob_data(v2)).data
    world.writer().add_target(
        "team-a",
        "team-a/app",
        "1.0",
        data,
        TargetCustom(media_type="application/vnd.oci.image.manifest.v1+json"),
    )
    world.refresh()
    assert "sealedAt" not in target(world, "team-a/app/tags/1.0").custom
    rewrite_tag(sealer, "team-a/app", "1.0", v1)

    result = sealer.handle(tag_event(sealer, "team-a/app", "1.0"))
    world.refresh()

    assert (result.outcome, result.reason) == (Outcome.SKIPPED, "already sealed")
    info = target(world, "team-a/app/tags/1.0")
    assert info.hashes == {"sha256": v1.hex}
    assert isinstance(info.custom["sealedAt"], int)


def replace_targets(sealer, targets):
    """A sealer like ``sealer`` that records targets in ``targets``."""
    return Sealer(
        sealer.store,
        sealer.settings,
        sealer.policies,
        sealer.kms,
        targets=targets,
    )
