"""Sealing on the real stack: skopeo pushes, the registry writes S3, moto sends
the events to SQS, the pump runs functions/seal/app.py, skopeo decrypts.

Each seal test pushes an image that it builds as an OCI layout, waits until
the registry serves it sealed, and checks the result through the same
unmodified skopeo a runtime would use. The plaintext layer digests a test
expects come from the registry's storage right after the push (skopeo gzips
uncompressed layers on the way), read by digest from blob data, which a seal
never deletes. The bad-input tests write their objects straight into the
bucket, as a broken client or a hand edit would, and follow the messages to
the dead-letter queue.

The tests share the session's stack and run one after another; each starts
once the event queue is empty, so the events a test sees are its own.
"""

import gzip
import hashlib
import json
import os
import time

import pytest

from tests.support import skopeo
from tests.support.ocilayout import (
    LayoutImage,
    read_blob,
    read_image_layout,
    store_manifest,
    tar_layer,
    write_image_layout,
)
from tests.support.stackclient import (
    INDEX_TYPES,
    REGISTRY_ROOT,
    StackClient,
    sha256_digest,
    wait_for,
)

pytestmark = pytest.mark.e2e

SEAL_TIMEOUT = 60.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ENCRYPTED_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
JWE_ANNOTATION = "org.opencontainers.image.enc.keys.jwe"
PLAINTEXT_ANNOTATION = "dev.regseal.plaintext-manifest"
# moto reports LastModified in whole seconds: waiting this long after a
# snapshot makes any rewrite of an object show in the next one.
TIMESTAMP_RESOLUTION = 1.1


@pytest.fixture
def stack(local_stack_run):
    client = StackClient(local_stack_run.state, local_stack_run.output)
    # Start from a quiet queue, so what a test sees is its own doing.
    client.wait_drained()
    return client


def unique_files(label, size=512):
    """Layer content no other push has: no blob is shared or mounted."""
    return {f"{label}/data.bin": os.urandom(size), f"{label}/name.txt": label.encode()}


def repository_of(reference):
    """``host:port/repo`` of ``host:port/repo:tag`` or ``host:port/repo@digest``."""
    if "@" in reference:
        return reference.split("@", 1)[0]
    head, _, tail = reference.rpartition("/")
    return f"{head}/{tail.split(':', 1)[0]}"


def is_sealed(manifest):
    layers = manifest.get("layers") or []
    return bool(layers) and all(
        layer["mediaType"].endswith("+encrypted") for layer in layers
    )


def sealed_state(reference):
    """What the registry serves for ``reference`` if it is sealed, else None.

    Returns:
        (raw top manifest, parsed top manifest, parsed image manifests); for
        an index, each child fetched by digest.
    """
    try:
        raw = skopeo.inspect_raw(reference)
        top = json.loads(raw)
        children = [top]
        if top.get("mediaType") in INDEX_TYPES:
            repository = repository_of(reference)
            children = [
                skopeo.inspect_json(f"{repository}@{child['digest']}")
                for child in top["manifests"]
            ]
    except skopeo.SkopeoError:
        # Mid-seal the plaintext children of an index may be hidden already.
        return None
    if all(is_sealed(child) for child in children):
        return raw, top, children
    return None


def wait_sealed(stack, reference):
    try:
        return wait_for(
            lambda: sealed_state(reference),
            timeout=SEAL_TIMEOUT,
            what=f"{reference} sealed",
            interval=0.5,
        )
    except TimeoutError as exc:
        pytest.fail(f"{exc}; the stack's output ends with:\n{stack.log_tail()}")


def push(stack, image, reference, tmp_path, *flags):
    """Push ``image`` and return what the registry stored for it."""
    digest = skopeo.push(
        image.reference, reference, *flags, digest_file=tmp_path / "pushed.digest"
    )
    return stack.stored_manifest(digest)


def decrypt(stack, reference, directory, *flags):
    """Pull ``reference`` with the stack's JWE key into an OCI layout."""
    skopeo.pull(
        reference,
        f"oci:{directory}:pulled",
        "--decryption-key",
        stack.state.jwe_private_key,
        *flags,
    )
    return read_image_layout(directory, "pulled")


def assert_layers_are_the_tars_of_the_config(image: LayoutImage):
    """Each pulled layer's blob is intact and unpacks to its config diff_id."""
    for manifest in image.manifests:
        assert len(manifest.layer_digests) == len(manifest.diff_ids)
        for digest, diff_id in zip(
            manifest.layer_digests, manifest.diff_ids, strict=True
        ):
            data = read_blob(image.path, digest)  # checks the digest
            assert sha256_digest(gzip.decompress(data)) == diff_id


def records_for(stack, key, message=None):
    return [
        record
        for record in stack.log_records()
        if record.fields.get("key") == key
        and (message is None or record.message == message)
    ]


# -- 1. OCI, three layers ----------------------------------------------------


def test_oci_image_of_three_layers_is_sealed_and_decrypts_to_the_pushed_layers(
    stack, tmp_path
):
    image = write_image_layout(
        tmp_path / "image",
        [
            tar_layer(unique_files("base")),
            tar_layer(unique_files("plain"), compress=False),
            tar_layer(unique_files("app", size=64 * 1024)),
        ],
    )
    reference = f"{stack.state.registry}/e2e/three-layers:1.0"

    plaintext = push(stack, image, reference, tmp_path)
    raw, sealed, _ = wait_sealed(stack, reference)
    pulled = decrypt(stack, reference, tmp_path / "decrypted")

    assert plaintext.media_type == OCI_MANIFEST
    assert len(plaintext.layer_digests) == 3
    # skopeo gzipped the plain tar layer on the way; the others went as they were.
    assert plaintext.layer_digests[0] == image.manifest.layer_digests[0]
    assert plaintext.layer_digests[1] != image.manifest.layer_digests[1]
    assert plaintext.layer_digests[2] == image.manifest.layer_digests[2]
    assert sealed["mediaType"] == OCI_MANIFEST
    assert [layer["mediaType"] for layer in sealed["layers"]] == [ENCRYPTED_GZIP] * 3
    assert all(JWE_ANNOTATION in layer["annotations"] for layer in sealed["layers"])
    assert sealed["annotations"][PLAINTEXT_ANNOTATION] == plaintext.digest
    assert sealed["config"]["digest"] == plaintext.document["config"]["digest"]
    assert stack.tag_target("e2e/three-layers", "1.0") == sha256_digest(raw)
    assert pulled.manifest.layer_digests == plaintext.layer_digests
    assert pulled.manifest.diff_ids == image.manifest.diff_ids
    assert_layers_are_the_tars_of_the_config(pulled)


# -- 2. Docker schema2 --------------------------------------------------------


def test_docker_schema2_image_is_sealed_as_an_oci_manifest(stack, tmp_path):
    image = write_image_layout(
        tmp_path / "image",
        [tar_layer(unique_files("s2-base")), tar_layer(unique_files("s2-app"))],
    )
    reference = f"{stack.state.registry}/e2e/schema2:v2"

    plaintext = push(stack, image, reference, tmp_path, "--format", "v2s2")
    _, sealed, _ = wait_sealed(stack, reference)
    pulled = decrypt(stack, reference, tmp_path / "decrypted")

    assert plaintext.media_type == DOCKER_MANIFEST
    assert [layer["mediaType"] for layer in plaintext.document["layers"]] == [
        DOCKER_LAYER_GZIP
    ] * 2
    assert sealed["mediaType"] == OCI_MANIFEST
    assert sealed["config"]["mediaType"] == OCI_CONFIG
    assert sealed["config"]["digest"] == plaintext.document["config"]["digest"]
    assert [layer["mediaType"] for layer in sealed["layers"]] == [ENCRYPTED_GZIP] * 2
    assert sealed["annotations"][PLAINTEXT_ANNOTATION] == plaintext.digest
    assert pulled.manifest.layer_digests == plaintext.layer_digests
    assert_layers_are_the_tars_of_the_config(pulled)


# -- 3. two-platform index ----------------------------------------------------


def two_platform_layout(path):
    """An index of linux/amd64 and linux/arm64 sharing a base layer."""
    base = tar_layer(unique_files("shared-base"))
    children = []
    for arch in ("amd64", "arm64"):
        single = write_image_layout(
            path,
            [base, tar_layer(unique_files(f"app-{arch}"))],
            tag=arch,
            platforms=[f"linux/{arch}"],
        )
        children.append(single.manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": child.media_type,
                "digest": child.digest,
                "size": child.size,
                "platform": {
                    "architecture": child.platform.split("/")[1],
                    "os": "linux",
                },
            }
            for child in children
        ],
    }
    store_manifest(path, index, tag="latest")
    return read_image_layout(path, "latest")


def test_two_platform_index_has_every_child_sealed_and_each_platform_decrypts(
    stack, tmp_path
):
    image = two_platform_layout(tmp_path / "image")
    reference = f"{stack.state.registry}/e2e/multi-arch:2024.1"

    plaintext = push(stack, image, reference, tmp_path, "--all")
    _, sealed, sealed_children = wait_sealed(stack, reference)
    pulled_all = decrypt(stack, reference, tmp_path / "all", "--all")
    pulled_arm = decrypt(
        stack, reference, tmp_path / "arm64", "--override-arch", "arm64"
    )

    plaintext_layers = plaintext.by_platform()
    assert plaintext.media_type == OCI_INDEX
    assert set(plaintext_layers) == {"linux/amd64", "linux/arm64"}
    assert sealed["mediaType"] == OCI_INDEX
    assert sealed["annotations"][PLAINTEXT_ANNOTATION] == plaintext.digest
    assert [entry["platform"] for entry in sealed["manifests"]] == [
        entry["platform"] for entry in plaintext.document["manifests"]
    ]
    sealed_digests = {entry["digest"] for entry in sealed["manifests"]}
    assert sealed_digests.isdisjoint(child.digest for child in plaintext.children)
    assert [c["annotations"][PLAINTEXT_ANNOTATION] for c in sealed_children] == [
        child.digest for child in plaintext.children
    ]
    # The shared base layer was encrypted once and is shared again.
    assert sealed_children[0]["layers"][0] == sealed_children[1]["layers"][0]
    assert pulled_all.media_type == OCI_INDEX
    assert {m.platform: m.layer_digests for m in pulled_all.manifests} == (
        plaintext_layers
    )
    assert_layers_are_the_tars_of_the_config(pulled_all)
    assert pulled_arm.manifest.layer_digests == plaintext_layers["linux/arm64"]
    assert_layers_are_the_tars_of_the_config(pulled_arm)


# -- 4. nested repository name, tag with every allowed punctuation -----------


def test_nested_repository_and_punctuated_tag_are_sealed(stack, tmp_path):
    repository, tag = "team-x/group/sub/app", "v1.2.3_rc-1"
    image = write_image_layout(tmp_path / "image", [tar_layer(unique_files("nested"))])
    reference = f"{stack.state.registry}/{repository}:{tag}"

    plaintext = push(stack, image, reference, tmp_path)
    raw, sealed, _ = wait_sealed(stack, reference)
    pulled = decrypt(stack, reference, tmp_path / "decrypted")

    assert stack.tag_target(repository, tag) == sha256_digest(raw)
    assert sealed["annotations"][PLAINTEXT_ANNOTATION] == plaintext.digest
    assert pulled.manifest.layer_digests == plaintext.layer_digests
    assert_layers_are_the_tars_of_the_config(pulled)


# -- 5. encrypted by skopeo before the push -----------------------------------


def test_image_skopeo_encrypted_before_the_push_is_left_alone(
    stack, tmp_path, other_rsa_keypair
):
    private_key, public_key = other_rsa_keypair.write(tmp_path / "keys")
    image = write_image_layout(
        tmp_path / "plain",
        [tar_layer(unique_files("pre-a")), tar_layer(unique_files("pre-b"))],
    )
    skopeo.run(
        [
            "copy",
            "--quiet",
            "--encryption-key",
            f"jwe:{public_key}",
            image.reference,
            f"oci:{tmp_path / 'encrypted'}:latest",
        ]
    )
    encrypted = read_image_layout(tmp_path / "encrypted", "latest")
    repository, tag = "e2e/pre-encrypted", "1"
    reference = f"{stack.state.registry}/{repository}:{tag}"
    tag_key = stack.tag_link_key(repository, tag)

    pushed = push(stack, encrypted, reference, tmp_path)
    wait_for(
        lambda: records_for(stack, tag_key, "seal finished"),
        timeout=SEAL_TIMEOUT,
        what=f"the handler's verdict on {tag_key}",
    )
    stack.wait_drained()
    served = skopeo.inspect_raw(reference)
    skopeo.pull(
        reference,
        f"oci:{tmp_path / 'decrypted'}:pulled",
        "--decryption-key",
        private_key,
    )
    pulled = read_image_layout(tmp_path / "decrypted", "pulled")

    assert all(is_sealed(m.document) for m in encrypted.manifests)
    [verdict] = records_for(stack, tag_key, "seal finished")
    assert verdict.fields["outcome"] == "skipped"
    assert verdict.fields["reason"] == "already encrypted, not by regseal"
    assert sha256_digest(served) == pushed.digest == encrypted.digest
    assert stack.tag_target(repository, tag) == pushed.digest
    assert pulled.manifest.layer_digests == image.manifest.layer_digests
    assert_layers_are_the_tars_of_the_config(pulled)


# -- 6. the plaintext is gone from the registry API ---------------------------


def test_after_the_seal_the_plaintext_is_unreachable_and_a_keyless_pull_is_ciphertext(
    stack, tmp_path
):
    repository, tag = "e2e/hidden", "1.0"
    image = write_image_layout(
        tmp_path / "image",
        [tar_layer(unique_files("hidden-a")), tar_layer(unique_files("hidden-b"))],
    )
    reference = f"{stack.state.registry}/{repository}:{tag}"

    plaintext = push(stack, image, reference, tmp_path)
    raw, sealed, _ = wait_sealed(stack, reference)
    stack.wait_drained()
    skopeo.pull(reference, f"oci:{tmp_path / 'keyless'}:pulled")
    keyless = read_image_layout(tmp_path / "keyless", "pulled")

    sealed_digest = sha256_digest(raw)
    assert stack.registry_get(f"{repository}/manifests/{plaintext.digest}") == 404
    assert stack.registry_get(f"{repository}/manifests/{sealed_digest}") == 200
    assert stack.registry_get(f"{repository}/manifests/{tag}") == 200
    for layer in plaintext.layer_digests:
        assert stack.registry_get(f"{repository}/blobs/{layer}", "*/*") == 404
    for layer in sealed["layers"]:
        assert stack.registry_get(f"{repository}/blobs/{layer['digest']}", "*/*") == 200

    assert keyless.digest == sealed_digest
    assert keyless.manifest.layer_media_types == (ENCRYPTED_GZIP,) * 2
    for digest in keyless.manifest.layer_digests:
        data = read_blob(keyless.path, digest)
        assert digest not in plaintext.layer_digests
        assert not data.startswith(b"\x1f\x8b")  # not gzip
        assert data[257:262] != b"ustar"  # not tar


# -- 7. events delivered twice, and for the function's own writes --------------


def test_redelivered_and_self_caused_events_change_nothing(stack, tmp_path):
    repository, tag = "e2e/redelivery", "1"
    image = write_image_layout(
        tmp_path / "image", [tar_layer(unique_files("redelivery"))]
    )
    reference = f"{stack.state.registry}/{repository}:{tag}"
    push(stack, image, reference, tmp_path)
    raw, _, _ = wait_sealed(stack, reference)
    stack.wait_drained()
    tag_key = stack.tag_link_key(repository, tag)
    sealed_revision = stack.revision_link_key(repository, sha256_digest(raw))
    # Every link of the repository now: the tag's current/link, which the
    # seal moved, and the links it wrote (revision, tag index, _layers).
    links = [
        key
        for key in stack.keys(f"{REGISTRY_ROOT}repositories/{repository}/")
        if key.endswith("/link")
    ]
    verdicts_before = len(records_for(stack, tag_key, "seal finished"))
    log_mark = len(stack.log_records())
    before = stack.snapshot()
    time.sleep(TIMESTAMP_RESOLUTION)

    for key in [tag_key, *links]:
        stack.send_notification(key)
    wait_for(
        lambda: (
            len(records_for(stack, tag_key, "seal finished")) >= verdicts_before + 2
            and records_for(stack, sealed_revision, "seal finished")
        ),
        timeout=SEAL_TIMEOUT,
        what="the handler's verdicts on the re-sent events",
    )
    stack.wait_drained()
    after = stack.snapshot()

    assert tag_key in links
    assert sealed_revision in links
    assert after == before
    redelivered = records_for(stack, tag_key, "seal finished")[verdicts_before:]
    assert [(r.fields["outcome"], r.fields["reason"]) for r in redelivered] == [
        ("skipped", "already sealed")
    ] * 2
    assert [r.fields["reason"] for r in records_for(stack, sealed_revision)] == [
        "no plaintext layers"
    ] * len(records_for(stack, sealed_revision))
    assert not [r.line for r in stack.log_records()[log_mark:] if r.level == "ERROR"]


# -- 8. bad input through the real pipeline -----------------------------------


def one_layer_image(repository):
    """Blobs and manifest of a plaintext one-layer OCI image, as a push stores them.

    Returns:
        The manifest bytes and the (key, data) pairs of the blobs and their
        ``_layers`` links, in the order the registry writes them.
    """
    layer = tar_layer(unique_files(f"{repository}-layer"))
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}
    ).encode()
    objects = []
    for data in (layer, config):
        digest = sha256_digest(data)
        objects += [
            (blob_key(digest), data),
            (layer_link_key(repository, digest), digest.encode()),
        ]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256_digest(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return manifest, objects


def blob_key(digest):
    hex_part = digest.removeprefix("sha256:")
    return f"{REGISTRY_ROOT}blobs/sha256/{hex_part[:2]}/{hex_part}/data"


def layer_link_key(repository, digest):
    hex_part = digest.removeprefix("sha256:")
    return f"{REGISTRY_ROOT}repositories/{repository}/_layers/sha256/{hex_part}/link"


def write_by_hand(stack, repository, tag, manifest, *, tag_link=None, extra=()):
    """Write a push's objects straight into the bucket, in the registry's order.

    Args:
        manifest: the manifest bytes, stored as given.
        tag_link: the tag's ``current/link`` content (default: the digest).
        extra: (key, data) pairs written first (blobs, ``_layers`` links).

    Returns:
        Every key written, with its data.
    """
    digest = sha256_digest(manifest)
    objects = [
        *extra,
        (blob_key(digest), manifest),
        (stack.revision_link_key(repository, digest), digest.encode()),
        (
            f"{REGISTRY_ROOT}repositories/{repository}/_manifests/tags/{tag}/index/"
            f"sha256/{digest.removeprefix('sha256:')}/link",
            digest.encode(),
        ),
        (stack.tag_link_key(repository, tag), tag_link or digest.encode()),
    ]
    for key, data in objects:
        stack.put(key, data)
    return dict(objects)


def bad_tag_link(stack):
    """A plaintext image whose tag link ends in a newline (the registry answers 500)."""
    repository = "e2e/bad-tag-link"
    manifest, blobs = one_layer_image(repository)
    link = sha256_digest(manifest).encode() + b"\n"
    written = write_by_hand(
        stack, repository, "v1", manifest, tag_link=link, extra=blobs
    )
    tag_key = stack.tag_link_key(repository, "v1")
    revision = stack.revision_link_key(repository, sha256_digest(manifest))
    # The revision's event fails too: which tags point at it cannot be read.
    return written, {tag_key: tag_key, revision: tag_key}


def malformed_manifest(stack):
    """A tag whose manifest blob is truncated JSON."""
    repository = "e2e/malformed-manifest"
    manifest = (
        b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "la'
    )
    written = write_by_hand(stack, repository, "v1", manifest)
    blob = blob_key(sha256_digest(manifest))
    return written, {
        stack.tag_link_key(repository, "v1"): blob,
        stack.revision_link_key(repository, sha256_digest(manifest)): blob,
    }


@pytest.mark.parametrize("bad_input", [bad_tag_link, malformed_manifest])
def test_bad_input_ends_in_the_dead_letter_queue_with_one_error_and_no_change(
    stack, bad_input
):
    log_mark = len(stack.log_records())
    before = stack.snapshot()
    time.sleep(TIMESTAMP_RESOLUTION)

    written, culprits = bad_input(stack)
    dead = {}

    def all_dead_lettered():
        for key, count in stack.take_dead_letters(culprits).items():
            dead[key] = dead.get(key, 0) + count
        return set(dead) == set(culprits)

    wait_for(
        all_dead_lettered,
        timeout=SEAL_TIMEOUT,
        what=f"dead letters for {sorted(culprits)}",
        interval=1.0,
    )
    stack.wait_drained()
    after = stack.snapshot()
    records = stack.log_records()[log_mark:]

    assert dead == dict.fromkeys(culprits, 1)
    assert set(after) == set(before) | set(written)
    assert {k: v for k, v in after.items() if k in before} == before
    for key, data in written.items():
        assert after[key].etag.strip('"') == hashlib.md5(data).hexdigest()  # noqa: S324
    for event_key, culprit in culprits.items():
        errors = [
            r
            for r in records
            if r.level == "ERROR" and r.fields.get("key") == event_key
        ]
        assert len(errors) == 1, [r.line for r in errors]
        [error] = errors
        assert error.message == "seal failed"
        assert culprit in error.fields["reason"]
    assert not [
        r.line
        for r in records
        if r.level == "ERROR" and r.fields.get("key") not in culprits
    ]
    assert "Traceback" not in stack.output.read_text()


# -- 9. pushed by digest, no tag ------------------------------------------------


def test_image_pushed_by_digest_is_sealed_after_the_grace(stack, tmp_path):
    repository = "e2e/by-digest"
    image = write_image_layout(tmp_path / "image", [tar_layer(unique_files("digest"))])
    revisions = f"{REGISTRY_ROOT}repositories/{repository}/_manifests/revisions/"
    plaintext_revision = stack.revision_link_key(repository, image.digest)

    skopeo.push(image.reference, f"{stack.state.registry}/{repository}@{image.digest}")
    plaintext = stack.stored_manifest(image.digest)

    def sealed_revision():
        keys = stack.keys(revisions)
        if plaintext_revision in keys or len(keys) != 1:
            return None
        return "sha256:" + keys[0].split("/")[-2]

    try:
        sealed_digest = wait_for(
            sealed_revision, timeout=SEAL_TIMEOUT, what=f"{repository} sealed"
        )
    except TimeoutError as exc:
        pytest.fail(f"{exc}; the stack's output ends with:\n{stack.log_tail()}")
    sealed_reference = f"{stack.state.registry}/{repository}@{sealed_digest}"
    sealed = skopeo.inspect_json(sealed_reference)
    pulled = decrypt(stack, sealed_reference, tmp_path / "decrypted")

    assert is_sealed(sealed)
    assert sealed["annotations"][PLAINTEXT_ANNOTATION] == image.digest
    assert stack.registry_get(f"{repository}/manifests/{image.digest}") == 404
    assert pulled.manifest.layer_digests == plaintext.layer_digests
    assert_layers_are_the_tars_of_the_config(pulled)
