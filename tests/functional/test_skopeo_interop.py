"""Differential tests against Debian's real skopeo (ocicrypt 1.0.3, go-jose v2).

regseal's codec encrypts an OCI layout that skopeo then decrypts, and decrypts
layouts that skopeo encrypted; the layer digests must come back exactly
(invariant 4 of DESIGN.md). skopeo is installed by scripts/bootstrap.sh.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from regseal import jwe
from regseal.digest import Digest
from regseal.ocicrypt import (
    ANNOTATION_JWE,
    ANNOTATION_PUBOPTS,
    LayerEncryptor,
    PrivateOptions,
    PublicOptions,
    decrypt_layer,
    decrypted_media_type,
    encrypted_media_type,
    is_encrypted_media_type,
    layer_annotations,
    parse_layer_annotations,
    strip_enc_annotations,
)
from tests.support.keys import KeyPair
from tests.support.ocilayout import (
    OCI_MANIFEST,
    LayoutImage,
    read_blob,
    read_image_layout,
    sha256_digest,
    store_manifest,
    tar_layer,
    write_blob,
    write_image_layout,
)

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SKOPEO, "--insecure-policy", "copy", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def skopeo_ok(*args: str) -> None:
    result = skopeo(*args)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def image(tmp_path: Path) -> LayoutImage:
    """A two-layer image: a tar+gzip layer and an uncompressed tar layer."""
    layers = [
        tar_layer({"etc/hello.txt": b"hello from regseal\n"}),
        tar_layer({"app/data.bin": bytes(range(256)) * 40}, compress=False),
    ]
    return write_image_layout(
        tmp_path / "img", layers, manifest_annotations={"foo": "bar"}
    )


@pytest.fixture
def keys(tmp_path: Path, rsa_keypair: KeyPair, ec_keypair: KeyPair) -> dict:
    """PEM files and loaded keys for the RSA and EC P-256 recipients."""
    out = {}
    for pair in (rsa_keypair, ec_keypair):
        private_path, public_path = pair.write(tmp_path / "keys")
        out[pair.kind] = {
            "private_path": private_path,
            "public_path": public_path,
            "recipient": jwe.Recipient.from_pem(pair.public_pem, source=pair.kind),
            "private": jwe.load_private_key(pair.private_pem, source=pair.kind),
        }
    return out


def encrypt_layout(
    source: LayoutImage, target: Path, recipients: Sequence[jwe.Recipient]
) -> LayoutImage:
    """Encrypt every layer of a single-manifest layout with regseal's codec."""
    manifest = dict(source.manifest.document)
    config = manifest["config"]
    write_blob(target, read_blob(source.path, config["digest"]))
    layers = []
    for descriptor in manifest["layers"]:
        plaintext = read_blob(source.path, descriptor["digest"])
        options = PrivateOptions.generate(descriptor["digest"])
        encryptor = LayerEncryptor(options)
        digest = write_blob(target, encryptor.update(plaintext))
        layer = encryptor.finalize()
        assert digest == str(layer.digest)
        items = [jwe.wrap(options.to_json(), r) for r in recipients]
        annotations = layer_annotations(layer.public_options, {ANNOTATION_JWE: items})
        layers.append(
            {
                "mediaType": encrypted_media_type(descriptor["mediaType"]),
                "digest": digest,
                "size": layer.size,
                "annotations": {**descriptor.get("annotations", {}), **annotations},
            }
        )
    store_manifest(target, {**manifest, "layers": layers}, tag=source.tag)
    return read_image_layout(target, source.tag)


def decrypt_layers(
    image: LayoutImage, private_keys: Sequence[jwe.PrivateKey], *, enforce: bool
) -> list[tuple[str, bytes]]:
    """Decrypt every encrypted layer with regseal's codec: (media type, plaintext)."""
    out = []
    for descriptor in image.manifest.document["layers"]:
        assert is_encrypted_media_type(descriptor["mediaType"])
        public, wrapped = parse_layer_annotations(descriptor["annotations"])
        assert set(wrapped) == {ANNOTATION_JWE}
        private = PrivateOptions.from_json(
            jwe.unwrap(",".join(wrapped[ANNOTATION_JWE]), private_keys)
        )
        blob = read_blob(image.path, descriptor["digest"])
        plaintext = b"".join(
            decrypt_layer(
                lambda blob=blob: [blob],
                public,
                private,
                expected_digest=descriptor["digest"],
                expected_size=descriptor["size"],
                enforce_plaintext_digest=enforce,
            )
        )
        out.append((decrypted_media_type(descriptor["mediaType"]), plaintext))
    return out


# Each image is encrypted for these recipients, then decrypted with each key.
RECIPIENT_SETS = pytest.mark.parametrize(
    "recipients", [["rsa"], ["p256"], ["rsa", "p256"]], ids=["rsa", "p256", "both"]
)


def uncompressed_digest(blob: bytes) -> str:
    return sha256_digest(gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob)


# --------------------------------------------------------------------------
# regseal encrypts, skopeo decrypts


@RECIPIENT_SETS
def test_skopeo_decrypts_regseal_layers_to_the_original_digests(
    tmp_path, image, keys, recipients
):
    encrypted = encrypt_layout(
        image, tmp_path / "enc", [keys[k]["recipient"] for k in recipients]
    )
    assert encrypted.manifest.layer_media_types == (
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        "application/vnd.oci.image.layer.v1.tar+encrypted",
    )
    assert not set(encrypted.manifest.layer_digests) & set(image.manifest.layer_digests)

    for kind in recipients:
        out = tmp_path / f"dec-{kind}"
        skopeo_ok(
            "--decryption-key",
            str(keys[kind]["private_path"]),
            encrypted.reference,
            f"oci:{out}:latest",
        )

        decrypted = read_image_layout(out)
        assert decrypted.manifest.layer_digests == image.manifest.layer_digests
        assert decrypted.manifest.layer_media_types == image.manifest.layer_media_types
        assert decrypted.manifest.config_digest == image.manifest.config_digest
        assert decrypted.manifest.document.get("annotations") == {"foo": "bar"}
        for descriptor in decrypted.manifest.document["layers"]:
            assert "annotations" not in descriptor


def test_skopeo_refuses_a_regseal_layer_whose_hmac_was_changed(tmp_path, image, keys):
    encrypted = encrypt_layout(image, tmp_path / "enc", [keys["rsa"]["recipient"]])
    manifest = json.loads(json.dumps(encrypted.manifest.document))
    layer = manifest["layers"][0]["annotations"]
    hmac = bytearray(PublicOptions.from_annotation(layer[ANNOTATION_PUBOPTS]).hmac)
    hmac[0] ^= 1
    layer[ANNOTATION_PUBOPTS] = PublicOptions(bytes(hmac)).to_annotation()
    store_manifest(encrypted.path, manifest, tag="bad")

    result = skopeo(
        "--decryption-key",
        str(keys["rsa"]["private_path"]),
        f"oci:{encrypted.path}:bad",
        f"oci:{tmp_path / 'dec'}:latest",
    )

    assert result.returncode != 0
    assert "could not properly decrypt byte stream" in result.stderr


def test_skopeo_cannot_decrypt_for_a_key_that_is_not_a_recipient(tmp_path, image, keys):
    encrypted = encrypt_layout(image, tmp_path / "enc", [keys["rsa"]["recipient"]])

    result = skopeo(
        "--decryption-key",
        str(keys["p256"]["private_path"]),
        encrypted.reference,
        f"oci:{tmp_path / 'dec'}:latest",
    )

    assert result.returncode != 0
    assert "decrypt" in result.stderr


# --------------------------------------------------------------------------
# skopeo encrypts, regseal decrypts


@RECIPIENT_SETS
def test_regseal_decrypts_skopeo_layers_to_the_original_content(
    tmp_path, image, keys, recipients, caplog
):
    out = tmp_path / "enc"
    args = []
    for kind in recipients:
        args += ["--encryption-key", f"jwe:{keys[kind]['public_path']}"]
    skopeo_ok(*args, image.reference, f"oci:{out}:latest")
    encrypted = read_image_layout(out)
    jwe_documents = [
        json.loads(base64.b64decode(d["annotations"][ANNOTATION_JWE]))
        for d in encrypted.manifest.document["layers"]
    ]
    # one recipient: flattened JSON; two: one general JSON with go-jose's quirk
    assert all(("recipients" in doc) == (len(recipients) > 1) for doc in jwe_documents)

    for kind in recipients:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="regseal.ocicrypt"):
            layers = decrypt_layers(encrypted, [keys[kind]["private"]], enforce=False)

        (gz_type, gz_plain), (tar_type, tar_plain) = layers
        # The gzip layer comes back byte for byte.
        assert gz_type == image.manifest.layer_media_types[0]
        assert sha256_digest(gz_plain) == image.manifest.layer_digests[0]
        # skopeo gzips the uncompressed layer before encrypting it and keeps
        # the source digest in the private options: the stale digest of
        # reference §7.4, which regseal only warns about for foreign images.
        assert tar_type == "application/vnd.oci.image.layer.v1.tar+gzip"
        assert uncompressed_digest(tar_plain) == image.manifest.diff_ids[1]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert image.manifest.layer_digests[1] in warnings[0].getMessage()
        assert [uncompressed_digest(p) for _, p in layers] == list(
            encrypted.manifest.diff_ids
        )


def test_regseal_enforcing_the_plaintext_digest_accepts_skopeo_gzip_layer(
    tmp_path, keys
):
    # Without recompression skopeo records the exact plaintext digest.
    image = write_image_layout(tmp_path / "img", [tar_layer({"a": b"gz only"})])
    out = tmp_path / "enc"
    skopeo_ok(
        "--encryption-key",
        f"jwe:{keys['p256']['public_path']}",
        image.reference,
        f"oci:{out}:latest",
    )

    [(media_type, plaintext)] = decrypt_layers(
        read_image_layout(out), [keys["p256"]["private"]], enforce=True
    )

    assert Digest.of(plaintext) == Digest(image.manifest.layer_digests[0])
    assert media_type == "application/vnd.oci.image.layer.v1.tar+gzip"


def test_skopeo_all_platforms_index_decrypts_per_platform(tmp_path, keys):
    image = write_image_layout(
        tmp_path / "img",
        [tar_layer({"shared": b"same layer on both platforms"})],
        platforms=["linux/amd64", "linux/arm64"],
        index_annotations={"org.example.index": "kept"},
    )
    out = tmp_path / "enc"
    skopeo_ok(
        "--all",
        "--encryption-key",
        f"jwe:{keys['rsa']['public_path']}",
        image.reference,
        f"oci:{out}:latest",
    )
    encrypted = read_image_layout(out)

    assert [m.platform for m in encrypted.manifests] == ["linux/amd64", "linux/arm64"]
    # fresh keys per platform: one plaintext layer, two ciphertexts
    assert len({m.layer_digests[0] for m in encrypted.manifests}) == 2
    for manifest in encrypted.manifests:
        single = LayoutImage(out, "latest", manifest.digest, OCI_MANIFEST, (manifest,))
        [(_, plaintext)] = decrypt_layers(
            single, [keys["rsa"]["private"]], enforce=True
        )
        assert sha256_digest(plaintext) == image.manifests[0].layer_digests[0]


def test_decrypted_descriptor_keeps_only_foreign_annotations(tmp_path, image, keys):
    out = tmp_path / "enc"
    skopeo_ok(
        "--encryption-key",
        f"jwe:{keys['rsa']['public_path']}",
        image.reference,
        f"oci:{out}:latest",
    )
    descriptor: dict[str, Any] = read_image_layout(out).manifest.document["layers"][0]

    assert strip_enc_annotations({**descriptor["annotations"], "foo": "bar"}) == {
        "foo": "bar"
    }
