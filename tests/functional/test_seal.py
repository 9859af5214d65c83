"""The seal operation against moto: push, deliver the event, check the result."""

from __future__ import annotations

import json

import pytest

from regseal import ocicrypt
from regseal.digest import Digest
from regseal.errors import FormatError, ManifestError, RetryableError
from regseal.events import Action, ObjectEvent
from regseal.kms import PROVIDER_NAME
from regseal.manifest import (
    ANNOTATION_PLAINTEXT,
    ANNOTATION_POLICY_VERSION,
    OCI_MANIFEST,
)
from regseal.seal import Outcome
from tests.functional.conftest import BUCKET
from tests.support.crypto import open_layer
from tests.support.registry import OCI_GZIP, random_layer

KMS_ANNOTATION = ocicrypt.PROVIDER_ANNOTATION_PREFIX + PROVIDER_NAME


def tag_event(stack, repository, tag):
    return ObjectEvent(
        BUCKET, stack.sealer.layout.tag_link(repository, tag), Action.CREATED
    )


def layer_bytes(stack, descriptor):
    return stack.store.get(
        stack.sealer.layout.blob_data(Digest.parse(descriptor["digest"]))
    ).data


def assert_sealed_image(stack, repository, manifest_digest, plaintext_layers):
    doc = stack.registry.manifest(manifest_digest)
    assert doc["mediaType"] == OCI_MANIFEST
    assert len(doc["layers"]) == len(plaintext_layers)
    layout = stack.sealer.layout
    for descriptor, plaintext in zip(doc["layers"], plaintext_layers, strict=True):
        assert descriptor["mediaType"].endswith("+encrypted")
        assert set(descriptor["annotations"]) == {
            ocicrypt.ANNOTATION_PUBOPTS,
            ocicrypt.ANNOTATION_JWE,
            KMS_ANNOTATION,
        }
        ciphertext = layer_bytes(stack, descriptor)
        assert ciphertext != plaintext
        assert len(ciphertext) == descriptor["size"] == len(plaintext)
        for key in stack.private_keys:
            assert open_layer(descriptor, ciphertext, key) == plaintext
        digest = Digest.parse(descriptor["digest"])
        assert stack.store.exists(layout.layer_link(repository, digest))
    return doc


def test_seal_oci_image_moves_tag_and_hides_plaintext(stack):
    layers = [random_layer(3000), random_layer(5000)]
    pushed = stack.registry.push_image("team-a/app", "1.0", layers)

    result = stack.sealer.handle(tag_event(stack, "team-a/app", "1.0"))

    assert result.outcome is Outcome.SEALED
    assert result.layers_sealed == 2
    sealed = stack.registry.tag_digest("team-a/app", "1.0")
    assert sealed.value == result.sealed_digest != pushed.digest.value
    doc = assert_sealed_image(stack, "team-a/app", sealed, layers)
    assert doc["config"]["digest"] == pushed.config.value
    assert doc["annotations"][ANNOTATION_PLAINTEXT] == pushed.digest.value
    assert doc["annotations"][ANNOTATION_POLICY_VERSION] == "test-1"
    layout = stack.sealer.layout
    assert not stack.store.exists(layout.revision_link("team-a/app", pushed.digest))
    assert not stack.store.exists(
        layout.tag_index_link("team-a/app", "1.0", pushed.digest)
    )
    for digest in pushed.layers:
        assert not stack.store.exists(layout.layer_link("team-a/app", digest))
        # Blob data stays for the registry's garbage collection.
        assert stack.store.exists(layout.blob_data(digest))
    assert stack.store.exists(layout.layer_link("team-a/app", pushed.config))
    assert stack.store.exists(layout.revision_link("team-a/app", sealed))


def test_kms_wrap_is_bound_to_repository_and_layer(stack):
    pushed = stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    stack.sealer.handle(tag_event(stack, "team-a/app", "1.0"))
    doc = stack.registry.manifest(stack.registry.tag_digest("team-a/app", "1.0"))
    item = doc["layers"][0]["annotations"][KMS_ANNOTATION]
    packet = json.loads(__import__("base64").b64decode(item))
    assert packet["annotations"]["encryption_context"] == {
        "repository": "team-a/app",
        "layer": pushed.layers[0].value,
    }
    private = stack.sealer.kms.unwrap(item)
    assert json.loads(private)["digest"] == pushed.layers[0].value


def test_same_event_twice_changes_nothing(stack):
    stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    stack.sealer.handle(tag_event(stack, "team-a/app", "1.0"))
    before = stack.registry.snapshot()

    again = stack.sealer.handle(tag_event(stack, "team-a/app", "1.0"))

    assert again.outcome is Outcome.SKIPPED
    assert again.reason == "already sealed"
    assert stack.registry.snapshot() == before


def test_events_of_own_writes_change_nothing(stack):
    stack.registry.push_image("team-a/app", "1.0", [random_layer(), random_layer()])
    keys_before = set(stack.store.list_keys(""))
    stack.sealer.handle(tag_event(stack, "team-a/app", "1.0"))
    written = sorted(set(stack.store.list_keys("")) - keys_before)
    written.append(stack.sealer.layout.tag_link("team-a/app", "1.0"))
    after_seal = stack.registry.snapshot()

    outcomes = {
        stack.sealer.handle(ObjectEvent(BUCKET, k, Action.CREATED)).outcome
        for k in written
    }

    assert outcomes <= {Outcome.SKIPPED, Outcome.IGNORED}
    assert stack.registry.snapshot() == after_seal


def test_docker_schema2_is_written_back_as_oci(stack):
    layers = [random_layer()]
    stack.registry.push_image("team-a/legacy", "v2", layers, docker=True)

    result = stack.sealer.handle(tag_event(stack, "team-a/legacy", "v2"))

    assert result.outcome is Outcome.SEALED
    sealed = stack.registry.tag_digest("team-a/legacy", "v2")
    doc = assert_sealed_image(stack, "team-a/legacy", sealed, layers)
    assert doc["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert doc["layers"][0]["mediaType"] == OCI_GZIP + "+encrypted"


def test_two_platform_index_seals_every_child(stack):
    amd, arm = [random_layer()], [random_layer(), random_layer()]
    pushed = stack.registry.push_index(
        "team-a/multi", "2.0", [("amd64", amd), ("arm64", arm)]
    )

    result = stack.sealer.handle(tag_event(stack, "team-a/multi", "2.0"))

    assert result.outcome is Outcome.SEALED
    assert result.layers_sealed == 3
    index = stack.registry.manifest(stack.registry.tag_digest("team-a/multi", "2.0"))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = [m["platform"]["architecture"] for m in index["manifests"]]
    assert platforms == ["amd64", "arm64"]
    for child, layers in zip(index["manifests"], (amd, arm), strict=True):
        assert_sealed_image(
            stack, "team-a/multi", Digest.parse(child["digest"]), layers
        )
    layout = stack.sealer.layout
    for child in pushed.children:
        assert not stack.store.exists(
            layout.revision_link("team-a/multi", child.digest)
        )


def test_nested_repository_and_tag_with_moto_encoded_key(stack):
    from regseal.events import parse_event
    from tests.support.registry import s3_event

    layers = [random_layer()]
    stack.registry.push_image("team-a/group/sub/app", "v1.2.3_rc-1", layers)
    key = stack.sealer.layout.tag_link("team-a/group/sub/app", "v1.2.3_rc-1")
    [event] = parse_event(s3_event(BUCKET, key))

    result = stack.sealer.handle(event)

    assert result.outcome is Outcome.SEALED
    sealed = stack.registry.tag_digest("team-a/group/sub/app", "v1.2.3_rc-1")
    assert_sealed_image(stack, "team-a/group/sub/app", sealed, layers)


def test_image_encrypted_by_someone_else_is_left_alone(stack):
    data, _, _ = stack.registry.image_manifest(
        "team-a/pre", [random_layer()], layer_types=[OCI_GZIP + "+encrypted"]
    )
    doc = json.loads(data)
    doc["layers"][0]["annotations"] = {
        ocicrypt.ANNOTATION_PUBOPTS: "e30=",
        ocicrypt.ANNOTATION_JWE: "ZXhhbXBsZQ==",
    }
    stack.registry.put_manifest("team-a/pre", json.dumps(doc).encode(), "1")
    before = stack.registry.snapshot()

    result = stack.sealer.handle(tag_event(stack, "team-a/pre", "1"))

    assert result.outcome is Outcome.SKIPPED
    assert result.reason == "already encrypted, not by regseal"
    assert stack.registry.snapshot() == before


def test_layer_typed_encrypted_without_ocicrypt_annotations_is_refused(stack):
    pushed = stack.registry.push_image(
        "team-a/pre", "1", [random_layer()], layer_types=[OCI_GZIP + "+encrypted"]
    )
    before = stack.registry.snapshot()

    with pytest.raises(ManifestError) as caught:
        stack.sealer.handle(tag_event(stack, "team-a/pre", "1"))

    assert str(caught.value) == (
        f"manifest {pushed.digest} of team-a/pre: layer 0 ({pushed.layers[0]}) has "
        f"media type '{OCI_GZIP}+encrypted' but is no ocicrypt layer: expected the "
        f"ocicrypt annotations, missing {ocicrypt.ANNOTATION_PUBOPTS} and "
        f"{ocicrypt.KEYS_ANNOTATION_PREFIX}*"
    )
    assert stack.registry.snapshot() == before


def test_unmatched_repository_is_skipped(stack):
    stack.registry.push_image("other/app", "1", [random_layer()])
    before = stack.registry.snapshot()
    result = stack.sealer.handle(tag_event(stack, "other/app", "1"))
    assert result.outcome is Outcome.SKIPPED
    assert "no team" in result.reason
    assert stack.registry.snapshot() == before


def test_layer_shared_with_unsealed_tag_survives_until_both_sealed(stack):
    shared = random_layer()
    first = stack.registry.push_image("team-a/app", "a", [shared, random_layer()])
    stack.registry.push_image("team-a/app", "b", [shared])
    layout = stack.sealer.layout
    shared_link = layout.layer_link("team-a/app", first.layers[0])

    stack.sealer.handle(tag_event(stack, "team-a/app", "a"))
    assert stack.store.exists(shared_link)
    assert not stack.store.exists(layout.layer_link("team-a/app", first.layers[1]))

    result = stack.sealer.handle(tag_event(stack, "team-a/app", "b"))
    assert (result.layers_reused, result.layers_sealed) == (1, 0)
    assert not stack.store.exists(shared_link)


def test_two_tags_of_one_image_share_one_seal(stack):
    pushed = stack.registry.push_image("team-a/app", "x", [random_layer()])
    stack.registry.put_manifest("team-a/app", pushed.data, "y")

    first = stack.sealer.handle(tag_event(stack, "team-a/app", "x"))
    layout = stack.sealer.layout
    # Still tagged as "y": nothing of the plaintext is hidden yet.
    assert stack.store.exists(layout.revision_link("team-a/app", pushed.digest))
    second = stack.sealer.handle(tag_event(stack, "team-a/app", "y"))

    assert first.outcome is Outcome.SEALED
    assert second.outcome is Outcome.REUSED
    assert first.sealed_digest == second.sealed_digest
    assert not stack.store.exists(layout.revision_link("team-a/app", pushed.digest))


def test_repush_with_one_changed_layer_encrypts_one_layer(stack):
    base = [random_layer(), random_layer(), random_layer()]
    stack.registry.push_image("team-a/app", "1", base)
    stack.sealer.handle(tag_event(stack, "team-a/app", "1"))

    stack.registry.push_image("team-a/app", "2", [*base[:2], random_layer()])
    result = stack.sealer.handle(tag_event(stack, "team-a/app", "2"))

    assert (result.layers_sealed, result.layers_reused) == (1, 2)


def test_tag_moved_during_seal_is_not_rolled_back(stack, monkeypatch):
    stack.registry.push_image("team-a/app", "1", [random_layer()])
    newer = {}
    original = stack.sealer._seal_any

    def seal_then_push(*args, **kwargs):
        sealed = original(*args, **kwargs)
        if not newer:
            newer["image"] = stack.registry.push_image(
                "team-a/app", "1", [random_layer()]
            )
        return sealed

    monkeypatch.setattr(stack.sealer, "_seal_any", seal_then_push)
    result = stack.sealer.handle(tag_event(stack, "team-a/app", "1"))

    assert result.outcome is Outcome.SUPERSEDED
    assert stack.registry.tag_digest("team-a/app", "1") == newer["image"].digest


def test_manifest_deleted_during_seal_leaves_no_tag_and_no_plaintext_layers(
    stack, monkeypatch
):
    pushed = stack.registry.push_image("team-a/app", "1", [random_layer()])
    layout = stack.sealer.layout
    original = stack.sealer._seal_any

    def seal_then_delete(*args, **kwargs):
        sealed = original(*args, **kwargs)
        # What distribution's DELETE /v2/<repo>/manifests/<digest> removes:
        # the revision link and every tag directory that points at it.
        stack.store.delete(layout.revision_link("team-a/app", pushed.digest))
        for key in list(stack.store.list_keys(layout.tags_prefix("team-a/app"))):
            stack.store.delete(key)
        return sealed

    monkeypatch.setattr(stack.sealer, "_seal_any", seal_then_delete)
    result = stack.sealer.handle(tag_event(stack, "team-a/app", "1"))

    assert result.outcome is Outcome.SUPERSEDED
    assert "deleted while sealing" in result.reason
    # The tag is not brought back (an index link alone would list it) ...
    assert list(stack.store.list_keys(layout.tags_prefix("team-a/app"))) == []
    # ... and the deleted image's plaintext layers are not left pullable.
    for layer in pushed.layers:
        assert not stack.store.exists(layout.layer_link("team-a/app", layer))
    sealed = Digest.parse(result.sealed_digest)
    assert stack.store.exists(layout.revision_link("team-a/app", sealed))


def test_large_layer_streams_in_parts(stack):
    layer = random_layer(12 * 1024 * 1024)  # incompressible: > two 5 MiB parts
    stack.registry.push_image("team-a/big", "1", [layer])

    result = stack.sealer.handle(tag_event(stack, "team-a/big", "1"))

    assert result.outcome is Outcome.SEALED
    assert_sealed_image(
        stack, "team-a/big", stack.registry.tag_digest("team-a/big", "1"), [layer]
    )
    assert not list(stack.store.list_keys("regseal/staging/"))


def test_push_by_digest_waits_for_grace_then_seals(stack):
    pushed = stack.registry.push_image("team-a/app", None, [random_layer()])
    key = stack.sealer.layout.revision_link("team-a/app", pushed.digest)
    event = ObjectEvent(BUCKET, key, Action.CREATED)

    with pytest.raises(RetryableError, match="pushed by digest"):
        stack.sealer.handle(event)
    stack.sealer.clock = lambda: 4102444800.0  # year 2100: grace has passed
    result = stack.sealer.handle(event)

    assert result.outcome is Outcome.SEALED
    assert not stack.store.exists(key)


def test_revision_of_tagged_manifest_is_left_to_the_tag_event(stack):
    pushed = stack.registry.push_image("team-a/app", "1", [random_layer()])
    key = stack.sealer.layout.revision_link("team-a/app", pushed.digest)
    event = ObjectEvent(BUCKET, key, Action.CREATED)
    before = stack.registry.snapshot()

    # Checked again after the grace period: a newer push may take the tag.
    with pytest.raises(RetryableError, match="tagged; checking again"):
        stack.sealer.handle(event)
    stack.sealer.clock = lambda: 4102444800.0  # year 2100: grace has passed
    result = stack.sealer.handle(event)

    assert result.outcome is Outcome.SKIPPED
    assert result.reason == "tagged; left to its tag's event"
    assert stack.registry.snapshot() == before


# -- bad input: one clear error, the registry as it was ----------------------


def test_malformed_manifest_raises_and_changes_nothing(stack):
    stack.registry.put_manifest("team-a/bad", b'{"schemaVersion": 2, "layers": ', "1")
    before = stack.registry.snapshot()
    with pytest.raises(ManifestError, match="expected manifest JSON"):
        stack.sealer.handle(tag_event(stack, "team-a/bad", "1"))
    assert stack.registry.snapshot() == before


def test_link_that_is_not_a_digest_raises(stack):
    stack.registry.push_image("team-a/bad", "1", [random_layer()])
    key = stack.sealer.layout.tag_link("team-a/bad", "1")
    stack.store.put(key, b"sha256:" + b"a" * 64 + b"\n")
    before = stack.registry.snapshot()
    with pytest.raises(FormatError, match="no newline"):
        stack.sealer.handle(tag_event(stack, "team-a/bad", "1"))
    assert stack.registry.snapshot() == before


def test_missing_layer_blob_raises_and_changes_nothing(stack):
    pushed = stack.registry.push_image(
        "team-a/bad", "1", [random_layer(), random_layer()]
    )
    stack.store.delete(stack.sealer.layout.blob_data(pushed.layers[1]))
    before = stack.registry.snapshot()
    with pytest.raises(ManifestError, match="blob or _layers link missing"):
        stack.sealer.handle(tag_event(stack, "team-a/bad", "1"))
    assert stack.registry.snapshot() == before
    assert stack.registry.tag_digest("team-a/bad", "1") == pushed.digest


def test_key_outside_registry_root_is_ignored(stack):
    for key in (
        "elsewhere/repositories/x/_manifests/tags/1/current/link",
        "docker/registry/v2/blobs/sha256/aa/" + "a" * 64 + "/data",
    ):
        result = stack.sealer.handle(ObjectEvent(BUCKET, key, Action.CREATED))
        assert result.outcome is Outcome.IGNORED


def test_event_for_another_bucket_is_ignored(stack):
    key = stack.sealer.layout.tag_link("team-a/app", "1")
    result = stack.sealer.handle(ObjectEvent("another-bucket", key, Action.CREATED))
    assert result.outcome is Outcome.IGNORED
