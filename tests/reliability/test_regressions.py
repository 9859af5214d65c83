"""One focused test per bug the reliability suites found (see docs/reliability.md)."""

from __future__ import annotations

import json

import pytest

from regseal import invariants as inv
from regseal.digest import Digest
from regseal.errors import ManifestError, RetryableError
from regseal.manifest import dumps
from regseal.seal import Outcome
from tests.reliability.scenarios import AFTER_GRACE
from tests.support.faults import Crash, FaultPlan, FaultyStore, HookedStore, tag_move
from tests.support.registry import random_layer


def crash_on(rig, reg, predicate, clock=None):
    plan = FaultPlan(fail_when=predicate)
    return plan, rig.sealer(FaultyStore(reg.store, plan), clock=clock)


def test_crash_while_hiding_an_index_is_finished_by_the_retry(rig):
    # Found by the crash suite: hiding went in digest order, so the index's
    # own revision link could go first; the retry then saw no plaintext left
    # to hide and the platforms' plaintext stayed reachable.
    # The hiding deletes: a tag index link, and per platform a _layers link and
    # a revision link, then the index's revision link.
    for k in range(1, 7):
        reg = rig.registry()
        reg.registry.push_index(
            "team-a/multi",
            "1",
            [("amd64", [random_layer()]), ("arm64", [random_layer()])],
        )
        deletes = []

        def kth_delete(what, k=k, deletes=deletes):
            deletes.append(what.startswith("DeleteObject"))
            return sum(deletes) == k and deletes[-1]

        plan, faulty = crash_on(rig, reg, kth_delete)
        with pytest.raises(Crash):
            faulty.handle(reg.tag_event("team-a/multi", "1"))
        rig.sealer(reg.store).handle(reg.tag_event("team-a/multi", "1"))

        assert plan.fired
        assert rig.check(reg.store, finished=True).violations == (), k


def test_hiding_removes_an_index_revision_link_after_its_platforms(rig):
    reg = rig.registry()
    index = reg.registry.push_index(
        "team-a/multi", "1", [("amd64", [random_layer()]), ("arm64", [random_layer()])]
    )
    plan = FaultPlan()
    rig.sealer(FaultyStore(reg.store, plan)).handle(reg.tag_event("team-a/multi", "1"))

    revision_deletes = [
        w for w in plan.writes if w.startswith("DeleteObject") and "/revisions/" in w
    ]
    assert len(revision_deletes) == 3
    assert index.digest.hex in revision_deletes[-1]


def test_crash_while_hiding_a_push_by_digest_is_finished_by_the_retry(rig):
    # Found by the crash suite: a re-delivered revision event returned
    # "already sealed" on seeing the seal's record and never hid the rest.
    reg = rig.registry()
    image = reg.registry.push_image("team-a/app", None, [random_layer()])
    event = reg.revision_event("team-a/app", image.digest)
    _, faulty = crash_on(
        rig,
        reg,
        lambda what: what.startswith("DeleteObject"),
        clock=lambda: AFTER_GRACE,
    )
    with pytest.raises(Crash):
        faulty.handle(event)
    assert rig.check(reg.store, finished=True).of("plaintext-hidden")

    retry = rig.sealer(reg.store, clock=lambda: AFTER_GRACE).handle(event)

    assert (retry.outcome, retry.reason) == (Outcome.SKIPPED, "already sealed")
    assert rig.check(reg.store, finished=True).violations == ()
    assert not reg.store.exists(reg.layout.revision_link("team-a/app", image.digest))


def test_seal_that_lost_the_tag_to_a_newer_push_hides_the_old_plaintext(rig):
    # Found by the race suite: the seal that lost its tag move returned
    # SUPERSEDED and left the old push's plaintext linked; no later event
    # seals it again, so it stayed reachable by digest.
    reg = rig.registry()
    old = reg.registry.push_image("team-a/app", "1", [random_layer()])
    newer = []
    store = HookedStore(
        reg.store,
        tag_move("team-a/app", "1"),
        lambda: newer.append(
            reg.registry.push_image("team-a/app", "1", [random_layer()])
        ),
    )

    result = rig.sealer(store).handle(reg.tag_event("team-a/app", "1"))

    assert result.outcome is Outcome.SUPERSEDED
    assert reg.registry.tag_digest("team-a/app", "1") == newer[0].digest
    assert not reg.store.exists(reg.layout.revision_link("team-a/app", old.digest))
    assert not reg.store.exists(reg.layout.layer_link("team-a/app", old.layers[0]))
    sealed = Digest.parse(result.sealed_digest)
    assert reg.store.exists(reg.layout.revision_link("team-a/app", sealed))


@pytest.mark.parametrize("kind", ["tag", "revision"])
def test_losing_a_race_with_a_finished_seal_of_the_same_event_is_no_error(rig, kind):
    # Found by the race suite: the same event twice at once made the slower
    # seal raise ManifestError ("_layers link missing", "no revision link")
    # once the faster one had hidden the plaintext: a race reported as bad
    # input, logged as a failed seal and retried.
    reg = rig.registry()
    if kind == "tag":
        pushed = reg.registry.push_image("team-a/app", "1", [random_layer()])
        event = reg.tag_event("team-a/app", "1")
    else:
        pushed = reg.registry.push_image("team-a/app", None, [random_layer()])
        event = reg.revision_event("team-a/app", pushed.digest)
    layer_link = reg.layout.layer_link("team-a/app", pushed.layers[0])
    first = []

    def seal_it_all_first():
        first.append(rig.sealer(reg.store, clock=lambda: AFTER_GRACE).handle(event))

    slow = HookedStore(
        reg.store,
        lambda what: what == f"HeadObject {layer_link}",
        seal_it_all_first,
        reads=True,
    )

    second = rig.sealer(slow, clock=lambda: AFTER_GRACE).handle(event)

    assert first[0].outcome is Outcome.SEALED
    assert second.outcome is (Outcome.SUPERSEDED if kind == "tag" else Outcome.SKIPPED)
    assert second.reason.endswith(
        "sealed by its own event" if kind == "tag" else "by a concurrent seal"
    )
    assert rig.check(reg.store, finished=True).violations == ()


def test_local_stack_grace_ends_before_the_queue_gives_up():
    # Found while fixing the tagged-revision wait: with a 60 s grace and a
    # queue that gives up after 3 receives 5 s apart, every push by digest
    # on the local stack went to the dead-letter queue unsealed.
    from regseal.local import resources

    retries_span = (resources.MAX_RECEIVE_COUNT - 1) * (
        resources.VISIBILITY_TIMEOUT_SECONDS
    )
    assert retries_span > resources.DIGEST_PUSH_GRACE_SECONDS


def test_old_push_whose_tag_a_newer_push_took_is_sealed_by_digest(rig):
    # Found by the race suite: a tagged push's revision event was skipped
    # ("sealed through its tag"); when a newer push moved the tag before
    # the old push's tag event ran, that event sealed the newer image and
    # the old plaintext stayed readable by digest.
    reg = rig.registry()
    old = reg.registry.push_image("team-a/app", "1", [random_layer()])
    revision = reg.revision_event("team-a/app", old.digest)
    with pytest.raises(RetryableError, match="tagged; checking again"):
        rig.sealer(reg.store).handle(revision)
    reg.registry.push_image("team-a/app", "1", [random_layer()])
    rig.sealer(reg.store).handle(reg.tag_event("team-a/app", "1"))

    result = rig.sealer(reg.store, clock=lambda: AFTER_GRACE).handle(revision)

    assert (result.outcome, result.plaintext_digest) == (
        Outcome.SEALED,
        old.digest.value,
    )
    assert rig.check(reg.store, finished=True).violations == ()


@pytest.mark.parametrize("broken", ["blob", "link", "size"])
def test_config_lost_or_wrong_is_bad_input_and_changes_nothing(rig, broken):
    # Found by the bad-input corpus: only layers were checked, so a manifest
    # whose config blob was missing was sealed, and its tag moved to a
    # sealed manifest that no client can pull.
    from regseal.errors import ManifestError

    reg = rig.registry()
    data, config, _ = reg.registry.image_manifest("team-a/app", [random_layer()])
    doc = json.loads(data)
    if broken == "blob":
        reg.store.delete(reg.layout.blob_data(config))
    elif broken == "link":
        reg.store.delete(reg.layout.layer_link("team-a/app", config))
    else:
        doc["config"]["size"] += 1
    reg.registry.put_manifest("team-a/app", dumps(doc), "1")
    before = reg.snapshot()

    with pytest.raises(ManifestError, match=f"config {config} of team-a/app"):
        rig.sealer(reg.store).handle(reg.tag_event("team-a/app", "1"))

    assert reg.snapshot() == before


FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


@pytest.mark.parametrize("layers", ["none", "foreign only"])
def test_image_with_nothing_to_seal_says_so(rig, layers):
    # Found by the bad-input corpus: an image without layers, or with only
    # foreign layers, was skipped as "already encrypted, not by regseal".
    reg = rig.registry()
    data, _, _ = reg.registry.image_manifest("team-a/app", [])
    doc = json.loads(data)
    if layers == "foreign only":
        doc["layers"] = [
            {
                "mediaType": FOREIGN,
                "digest": "sha256:" + "f" * 64,
                "size": 10,
                "urls": ["https://example.invalid/layer"],
            }
        ]
    reg.registry.put_manifest("team-a/app", dumps(doc), "1")

    result = rig.sealer(reg.store).handle(reg.tag_event("team-a/app", "1"))

    assert (result.outcome, result.reason) == (Outcome.SKIPPED, "no plaintext layers")


def test_nondistributable_layer_pushed_with_its_content_is_sealed(rig):
    # Found by the bad-input corpus (and the checker's tag-sealed invariant):
    # non-distributable layers were passed through by media type, even when
    # they carry no urls and the registry holds their content in plaintext.
    reg = rig.registry()
    kind = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    external = {"mediaType": kind, "digest": "sha256:" + "e" * 64, "size": 10}
    data, _, _ = reg.registry.image_manifest(
        "team-a/app", [random_layer()], layer_types=[kind]
    )
    doc = json.loads(data)
    doc["layers"].append({**external, "urls": ["https://example.invalid/l"]})
    reg.registry.put_manifest("team-a/app", dumps(doc), "1")

    result = rig.sealer(reg.store).handle(reg.tag_event("team-a/app", "1"))

    sealed = reg.registry.manifest(Digest.parse(result.sealed_digest))
    assert sealed["layers"][0]["mediaType"] == kind + "+encrypted"
    assert sealed["layers"][1] == doc["layers"][1]  # with urls: left as pushed
    assert rig.check(reg.store, finished=True).violations == ()


def test_cosign_signature_and_buildkit_attestations_are_left_as_artifacts(rig):
    # Found by the bad-input corpus: both use the OCI image config type, so
    # they counted as images and their non-tar layers failed the seal with
    # ManifestError: every cosign-signed repository and every BuildKit image
    # with provenance (buildx's default) went to the dead-letter queue.
    reg = rig.registry()
    platform = reg.registry.push_image("team-a/app", None, [random_layer()])

    def artifact(layer_type, tag=None):
        data, _, _ = reg.registry.image_manifest(
            "team-a/app", [b'{"payload": 1}'], layer_types=[layer_type]
        )
        return data, reg.registry.put_manifest("team-a/app", data, tag)

    attestation_data, attestation = artifact("application/vnd.in-toto+json")
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": platform.digest.value,
                "size": len(platform.data),
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": attestation.value,
                "size": len(attestation_data),
                "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
                "platform": {"architecture": "unknown", "os": "unknown"},
            },
        ],
    }
    index = reg.registry.put_manifest("team-a/app", dumps(doc), "1")
    _, signature = artifact(
        "application/vnd.dev.cosign.simplesigning.v1+json", f"sha256-{index.hex}.sig"
    )
    sealer = rig.sealer(reg.store)

    signed = sealer.handle(reg.tag_event("team-a/app", f"sha256-{index.hex}.sig"))
    sealed = sealer.handle(reg.tag_event("team-a/app", "1"))

    assert (signed.outcome, signed.reason) == (Outcome.SKIPPED, "not an image manifest")
    assert signed.plaintext_digest == signature.value
    assert sealed.outcome is Outcome.SEALED
    sealed_index = reg.registry.manifest(Digest.parse(sealed.sealed_digest))
    assert sealed_index["manifests"][1] == doc["manifests"][1]
    assert rig.check(reg.store, finished=True).violations == ()


def push_nested_index(reg, depth):
    image = reg.registry.push_image("team-a/app", None, [random_layer()])
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": image.digest.value,
        "size": len(image.data),
        "platform": {"architecture": "amd64", "os": "linux"},
    }
    for level in range(depth):
        data = dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [descriptor],
            }
        )
        tag = "1" if level == depth - 1 else None
        digest = reg.registry.put_manifest("team-a/app", data, tag)
        descriptor = {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest.value,
            "size": len(data),
        }


@pytest.mark.parametrize("crash_at_delete", [None, 1, 2, 3, 4, 5])
def test_nested_index_hides_every_level_even_after_a_crash(rig, crash_at_delete):
    # Found by the bad-input corpus: hiding looked one level under the index,
    # so the platform image of an index of an index stayed reachable.
    reg = rig.registry()
    push_nested_index(reg, depth=3)
    event = reg.tag_event("team-a/app", "1")
    if crash_at_delete is not None:
        deletes = []

        def nth_delete(what):
            deletes.append(what.startswith("DeleteObject"))
            return deletes[-1] and sum(deletes) == crash_at_delete

        _, faulty = crash_on(rig, reg, nth_delete)
        with pytest.raises(Crash):
            faulty.handle(event)

    rig.sealer(reg.store).handle(event)

    assert rig.check(reg.store, finished=True).violations == ()


def test_layer_only_typed_encrypted_is_refused_and_reported(rig):
    # Found in review: a layer typed +encrypted without ocicrypt annotations
    # was taken for "encrypted by another tool". Beside a plaintext layer the
    # image was sealed around it, status said sealed and check --finished
    # found nothing, though no key opens the layer and its blob is plaintext.
    reg = rig.registry()
    pushed = reg.registry.push_image(
        "team-a/app",
        "1",
        [random_layer(), random_layer()],
        layer_types=[
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        ],
    )
    before = reg.snapshot()

    with pytest.raises(ManifestError, match=str(pushed.layers[1])):
        rig.sealer(reg.store).handle(reg.tag_event("team-a/app", "1"))
    report = rig.check(reg.store, finished=True)

    assert reg.snapshot() == before
    assert [v.where for v in report.of(inv.TAG_SEALED)] == ["team-a/app:1"]
