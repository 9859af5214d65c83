"""After a seal, the registry's own garbage collection removes the plaintext.

regseal never deletes blob data; it unlinks the plaintext manifest and the
layers nothing else uses, so that `docker-registry garbage-collect`, run
with the stack's own configuration, deletes the plaintext blobs and nothing
a sealed tag needs.
"""

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_seal_e2e import decrypt, push, unique_files, wait_sealed
from tests.support.ocilayout import tar_layer, write_image_layout
from tests.support.stackclient import StackClient

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(local_stack_run):
    client = StackClient(local_stack_run.state, local_stack_run.output)
    client.wait_drained()
    return client


def garbage_collect(stack):
    config = Path(stack.state.workdir) / "registry-config.yml"
    assert config.exists(), f"the stack's registry config is not at {config}"
    environment = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    result = subprocess.run(
        ["docker-registry", "garbage-collect", str(config)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def blob_key(digest):
    hex_part = digest.removeprefix("sha256:")
    return f"docker/registry/v2/blobs/sha256/{hex_part[:2]}/{hex_part}/data"


def test_garbage_collection_removes_plaintext_and_keeps_sealed_images(stack, tmp_path):
    shared = tar_layer(unique_files("gc-shared"))
    references = []
    plaintexts = []
    for name in ("one", "two"):
        image = write_image_layout(
            tmp_path / name, [shared, tar_layer(unique_files(f"gc-{name}"))]
        )
        reference = f"{stack.state.registry}/e2e/gc:{name}"
        plaintexts.append(push(stack, image, reference, tmp_path / name))
        wait_sealed(stack, reference)
        references.append(reference)
    stack.wait_drained()

    garbage_collect(stack)

    for plaintext in plaintexts:
        for digest in plaintext.layer_digests:
            assert not stack.keys(blob_key(digest)), f"plaintext layer {digest} kept"
        assert not stack.keys(blob_key(plaintext.digest)), "plaintext manifest kept"
    for reference, plaintext in zip(references, plaintexts, strict=True):
        pulled = decrypt(stack, reference, tmp_path / f"dec-{reference[-3:]}")
        assert pulled.manifest.layer_digests == plaintext.layer_digests


def test_a_layer_shared_with_an_unsealed_manifest_stays_until_both_are_sealed(
    stack, tmp_path
):
    # B is pushed by digest, so it waits out the grace period unsealed; A,
    # pushed by tag with the same base layer, is sealed meanwhile.
    from tests.e2e.test_seal_e2e import SEAL_TIMEOUT
    from tests.support import skopeo
    from tests.support.stackclient import wait_for

    repository = "e2e/shared-layer"
    shared = tar_layer(unique_files("shared-base"))
    b_image = write_image_layout(
        tmp_path / "b", [shared, tar_layer(unique_files("shared-b"))]
    )
    skopeo.push(
        b_image.reference, f"{stack.state.registry}/{repository}@{b_image.digest}"
    )
    b_plaintext = stack.stored_manifest(b_image.digest)
    base = b_plaintext.layer_digests[0]
    a_image = write_image_layout(
        tmp_path / "a", [shared, tar_layer(unique_files("shared-a"))]
    )
    a_reference = f"{stack.state.registry}/{repository}:a"
    a_plaintext = push(stack, a_image, a_reference, tmp_path)
    wait_sealed(stack, a_reference)

    # A is sealed and hidden; B is not sealed yet and still needs the base.
    assert a_plaintext.layer_digests[0] == base
    assert stack.registry_get(f"{repository}/manifests/{a_plaintext.digest}") == 404
    assert (
        stack.registry_get(f"{repository}/blobs/{a_plaintext.layer_digests[1]}") == 404
    )
    assert stack.registry_get(f"{repository}/manifests/{b_image.digest}") == 200
    assert stack.registry_get(f"{repository}/blobs/{base}") == 200

    # Once B is sealed by digest, nothing plaintext needs the base any more.
    wait_for(
        lambda: (
            stack.registry_get(f"{repository}/manifests/{b_image.digest}") == 404
            or None
        ),
        timeout=SEAL_TIMEOUT,
        what="the digest-pushed manifest sealed",
    )
    stack.wait_drained()
    assert stack.registry_get(f"{repository}/blobs/{base}") == 404
