"""``verify_plaintext``: the seal's own digest check of each plaintext layer.

A layer blob replaced in the bucket after the registry checked it at push
(same key, same size, other bytes) is refused by the seal when it verifies
the plaintext (the default). With the check off the seal encrypts whatever
it reads, and the damage shows at the other end: ``regseal decrypt``
enforces the plaintext digest the private options carry and names the
layer.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from regseal.cli import main
from regseal.digest import Digest
from regseal.errors import IntegrityError
from regseal.seal import Outcome, Sealer
from tests.functional.test_seal import tag_event
from tests.support.crypto import pem_private
from tests.support.registry import random_layer

LARGE = 6 * 1024 * 1024  # more than one 5 MiB part: the multipart engine


def sealer_with(stack, *, verify_plaintext: bool) -> Sealer:
    settings = dataclasses.replace(
        stack.sealer.settings, verify_plaintext=verify_plaintext
    )
    return Sealer(stack.store, settings, stack.sealer.policies, stack.sealer.kms)


def tamper(stack, digest: Digest) -> None:
    """Overwrite the blob's bytes in the bucket, keeping its key and size."""
    key = stack.sealer.layout.blob_data(digest)
    size = len(stack.store.get(key).data)
    stack.store.put(key, os.urandom(size))


@pytest.fixture
def pushed(stack):
    layers = [random_layer(3000), random_layer(LARGE)]
    return stack.registry.push_image("team-a/app", "1.0", layers)


@pytest.mark.parametrize("layer", [0, 1], ids=["single-part", "multipart"])
def test_verifying_seal_refuses_a_layer_replaced_after_the_push(stack, pushed, layer):
    tamper(stack, pushed.layers[layer])
    sealer = sealer_with(stack, verify_plaintext=True)

    with pytest.raises(IntegrityError, match=pushed.layers[layer].value):
        sealer.handle(tag_event(stack, "team-a/app", "1.0"))

    assert stack.registry.tag_digest("team-a/app", "1.0") == pushed.digest


@pytest.mark.parametrize("layer", [0, 1], ids=["single-part", "multipart"])
def test_trusting_seal_encrypts_a_replaced_layer_and_decrypt_names_it(
    tmp_path, stack, pushed, layer, capsys
):
    tamper(stack, pushed.layers[layer])
    sealer = sealer_with(stack, verify_plaintext=False)

    result = sealer.handle(tag_event(stack, "team-a/app", "1.0"))

    assert result.outcome is Outcome.SEALED
    sealed = stack.registry.tag_digest("team-a/app", "1.0")
    assert sealed != pushed.digest
    layout = tmp_path / "sealed"
    stack.registry.export_layout("team-a/app", "1.0", layout)
    key = tmp_path / "key.pem"
    key.write_bytes(pem_private(stack.private_keys[0]))
    sealed_layer = stack.registry.manifest(sealed)["layers"][layer]["digest"]

    status = main(
        [
            "decrypt",
            "--no-progress",
            "--key",
            str(key),
            f"oci:{layout}:1.0",
            f"oci:{tmp_path / 'out'}:1.0",
        ]
    )

    assert status == 1
    err = capsys.readouterr().err
    assert f"layer {sealed_layer}" in err
    assert "failed authentication" in err
    assert not (tmp_path / "out").exists()


def test_trusting_seal_of_an_untouched_image_decrypts_to_the_pushed_layers(
    tmp_path, stack, pushed
):
    sealer = sealer_with(stack, verify_plaintext=False)

    result = sealer.handle(tag_event(stack, "team-a/app", "1.0"))

    assert result.outcome is Outcome.SEALED
    layout = tmp_path / "sealed"
    stack.registry.export_layout("team-a/app", "1.0", layout)
    key = tmp_path / "key.pem"
    key.write_bytes(pem_private(stack.private_keys[1]))
    out = tmp_path / "out"
    assert (
        main(
            [
                "decrypt",
                "--no-progress",
                "--key",
                str(key),
                f"oci:{layout}:1.0",
                f"oci:{out}:1.0",
            ]
        )
        == 0
    )
    for digest in pushed.layers:
        blob = out / "blobs" / "sha256" / digest.hex
        assert Digest.of(blob.read_bytes()) == digest
