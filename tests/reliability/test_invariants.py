"""The invariant checker finds each kind of violation it claims to find.

A checker that cannot fail proves nothing, so each invariant is broken here
on purpose, in one place, and the report must name exactly that.
"""

from __future__ import annotations

import pytest

from regseal import invariants as inv
from regseal.digest import Digest
from regseal.invariants import Violation
from regseal.layout import encode_link
from regseal.manifest import Descriptor, dumps
from regseal.seal import Outcome
from tests.support.keys import generate_keypair
from tests.support.registry import random_layer


def sealed_image(rig, layers=2):
    reg = rig.registry()
    pushed = reg.registry.push_image(
        "team-a/app", "1", [random_layer(2000) for _ in range(layers)]
    )
    result = rig.sealer(reg.store).handle(reg.tag_event("team-a/app", "1"))
    assert result.outcome is Outcome.SEALED
    return reg, pushed, Digest.parse(result.sealed_digest)


def kinds(report):
    return sorted({v.invariant for v in report.violations})


def test_sealed_image_passes_every_invariant_and_opens_every_layer(rig):
    reg, _, _ = sealed_image(rig, layers=3)

    report = rig.check(reg.store, finished=True, kms=True)

    assert report.violations == ()
    assert (report.repositories, report.tags, report.layers_opened) == (1, 1, 3)


def test_plaintext_tag_breaks_tag_sealed_only_once_finished(rig):
    reg = rig.registry()
    reg.registry.push_image("team-a/app", "1", [random_layer()])

    assert rig.check(reg.store, finished=False).ok
    report = rig.check(reg.store, finished=True)

    assert kinds(report) == [inv.TAG_SEALED]
    assert report.of(inv.TAG_SEALED)[0].where == "team-a/app:1"


def test_repository_no_team_claims_may_stay_plaintext(rig):
    reg = rig.registry()
    reg.registry.push_image("other/app", "1", [random_layer()])
    assert rig.check(reg.store, finished=True).ok


FAKE_ENCRYPTED = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"


def test_layer_typed_encrypted_without_ocicrypt_annotations_breaks_tag_sealed(rig):
    reg = rig.registry()
    pushed = reg.registry.push_image(
        "team-a/app", "1", [random_layer()], layer_types=[FAKE_ENCRYPTED]
    )

    assert rig.check(reg.store, finished=False).ok
    report = rig.check(reg.store, finished=True)

    [violation] = report.of(inv.TAG_SEALED)
    assert violation.where == "team-a/app:1"
    assert f"layer {pushed.layers[0]} is typed {FAKE_ENCRYPTED!r}" in violation.detail
    assert "no org.opencontainers.image.enc.pubopts and no " in violation.detail
    assert "org.opencontainers.image.enc.keys.* annotation" in violation.detail


def test_fake_encrypted_layer_beside_a_plaintext_one_is_reported(rig):
    reg = rig.registry()
    pushed = reg.registry.push_image(
        "team-a/app",
        "1",
        [random_layer(), random_layer()],
        layer_types=["application/vnd.oci.image.layer.v1.tar+gzip", FAKE_ENCRYPTED],
    )

    report = rig.check(reg.store, finished=True)

    [violation] = report.of(inv.TAG_SEALED)
    assert str(pushed.layers[1]) in violation.detail


def test_ocicrypt_layer_is_not_plaintext_and_a_fake_one_is():
    annotations = {
        "org.opencontainers.image.enc.pubopts": "e30=",
        "org.opencontainers.image.enc.keys.jwe": "eA==",
    }
    digest = Digest.of(b"x")
    real = Descriptor(FAKE_ENCRYPTED, digest, 1, annotations)

    assert inv.is_ocicrypt_layer(real)
    assert not inv.is_plaintext_layer(real)
    for dropped in annotations:
        fake = Descriptor(
            FAKE_ENCRYPTED,
            digest,
            1,
            {k: v for k, v in annotations.items() if k != dropped},
        )
        assert not inv.is_ocicrypt_layer(fake)
        assert inv.is_plaintext_layer(fake)


def test_lost_layer_blob_of_sealed_image_breaks_manifest_complete(rig):
    reg, _, sealed = sealed_image(rig)
    layer = Digest.parse(reg.registry.manifest(sealed)["layers"][1]["digest"])
    reg.store.delete(reg.layout.blob_data(layer))

    report = rig.check(reg.store, finished=False)

    assert inv.MANIFEST_COMPLETE in kinds(report)
    assert any(f"layer 1 blob {layer} lost" in v.detail for v in report.violations)


def test_missing_layers_link_breaks_manifest_complete(rig):
    reg, _, sealed = sealed_image(rig)
    config = Digest.parse(reg.registry.manifest(sealed)["config"]["digest"])
    reg.store.delete(reg.layout.layer_link("team-a/app", config))

    report = rig.check(reg.store, finished=False)

    assert kinds(report) == [inv.MANIFEST_COMPLETE]
    assert "no _layers link" in report.violations[0].detail


def test_tag_without_revision_link_breaks_tag_resolves(rig):
    reg, _, sealed = sealed_image(rig)
    reg.store.delete(reg.layout.revision_link("team-a/app", sealed))

    report = rig.check(reg.store, finished=False)

    assert kinds(report) == [inv.TAG_RESOLVES]
    assert report.violations[0].detail == f"{sealed} has no revision link"


def test_garbage_tag_link_breaks_tag_resolves(rig):
    reg, _, _ = sealed_image(rig)
    reg.store.put(reg.layout.tag_link("team-a/app", "1"), b"latest\n")
    assert kinds(rig.check(reg.store, finished=False)) == [inv.TAG_RESOLVES]


def test_flipped_ciphertext_byte_breaks_sealed_decrypts(rig):
    reg, _, sealed = sealed_image(rig)
    layer = Digest.parse(reg.registry.manifest(sealed)["layers"][0]["digest"])
    key = reg.layout.blob_data(layer)
    data = bytearray(reg.store.get(key).data)
    data[100] ^= 0x01
    reg.store.put(key, bytes(data))

    report = rig.check(reg.store, finished=False)

    assert kinds(report) == [inv.SEALED_DECRYPTS]
    assert report.violations[0].detail.startswith("IntegrityError")


def test_key_of_no_recipient_breaks_sealed_decrypts(rig):
    from regseal.invariants import Keys, check_registry
    from regseal.jwe import load_private_key

    reg, _, _ = sealed_image(rig)
    stranger = load_private_key(generate_keypair("p256").private_pem, source="x")

    report = check_registry(reg.store, keys=Keys(jwe_keys=[stranger]))

    assert kinds(report) == [inv.SEALED_DECRYPTS]
    assert len(report.violations) == 2
    assert "KeyWrapError" in report.violations[0].detail


def test_layers_swapped_in_a_forged_manifest_break_sealed_decrypts(rig):
    reg, _, sealed = sealed_image(rig)
    doc = reg.registry.manifest(sealed)
    doc["layers"].reverse()
    reg.registry.put_manifest("team-a/app", dumps(doc), "1")

    report = rig.check(reg.store, finished=False)

    assert kinds(report) == [inv.SEALED_DECRYPTS]
    assert all("plaintext manifest's layer" in v.detail for v in report.violations)


def test_plaintext_revision_left_after_seal_breaks_plaintext_hidden(rig):
    reg, pushed, _ = sealed_image(rig)
    reg.store.put(
        reg.layout.revision_link("team-a/app", pushed.digest),
        encode_link(pushed.digest),
    )

    report = rig.check(reg.store, finished=True)

    assert kinds(report) == [inv.PLAINTEXT_HIDDEN]
    assert report.violations[0] == Violation(
        inv.PLAINTEXT_HIDDEN,
        f"team-a/app@{pushed.digest}",
        "revision link leads to plaintext layers",
    )


def test_plaintext_layer_link_left_after_seal_breaks_plaintext_hidden(rig):
    reg, pushed, _ = sealed_image(rig)
    layer = pushed.layers[0]
    reg.store.put(reg.layout.layer_link("team-a/app", layer), encode_link(layer))

    report = rig.check(reg.store, finished=True)

    assert [str(v) for v in report.violations] == [
        f"[plaintext-hidden] team-a/app _layers/{layer}: link to a plaintext layer "
        "no remaining manifest uses"
    ]


def test_sealed_index_passes_and_opens_every_platform(rig):
    reg = rig.registry()
    reg.registry.push_index(
        "team-a/multi",
        "1",
        [("amd64", [random_layer()]), ("arm64", [random_layer(), random_layer()])],
    )
    rig.sealer(reg.store).handle(reg.tag_event("team-a/multi", "1"))

    report = rig.check(reg.store, finished=True, kms=True)

    assert report.ok, report.violations
    assert report.layers_opened == 3


def test_lost_child_of_an_index_breaks_manifest_complete(rig):
    reg = rig.registry()
    pushed = reg.registry.push_index("team-a/multi", "1", [("amd64", [random_layer()])])
    reg.store.delete(
        reg.layout.revision_link("team-a/multi", pushed.children[0].digest)
    )

    report = rig.check(reg.store, finished=False)

    assert kinds(report) == [inv.MANIFEST_COMPLETE]
    assert "has no revision link" in report.violations[0].detail


def test_extra_checks_see_the_view_and_add_their_violations(rig):
    reg, _, _ = sealed_image(rig)
    seen = []

    def tuf_stand_in(view):
        seen.append(sorted(view.repositories))
        return [Violation("tuf-target", "team-a/app:1", "no target")]

    report = inv.check_registry(reg.store, extra_checks=[tuf_stand_in])

    assert seen == [["team-a/app"]]
    assert [v.invariant for v in report.violations] == ["tuf-target"]


def test_raise_for_violations_lists_each_one(rig):
    reg = rig.registry()
    reg.registry.push_image("team-a/app", "1", [random_layer()])
    reg.store.put(reg.layout.tag_link("team-a/app", "2"), b"sha256:" + b"0" * 64)
    report = rig.check(reg.store, finished=True)

    with pytest.raises(inv.InvariantError) as caught:
        report.raise_for_violations()

    message = str(caught.value)
    assert message.startswith("2 invariant violations:")
    assert "[tag-sealed] team-a/app:1" in message
    assert "[tag-resolves] team-a/app:2" in message
