"""``regseal decrypt`` writes the very layout ``skopeo copy --decryption-key`` writes.

Images sealed by the real Sealer (moto in-process) and images encrypted by
Debian's skopeo 1.9.3 are decrypted by both tools from ``oci:`` layouts; the
two output directories must be identical: the same files, bytes and modes.
Errors must leave the destination exactly as it was.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from regseal import jwe
from regseal.cli import main
from regseal.kms import ANNOTATION_KMS, KmsWrapper, encryption_context
from regseal.manifest import ANNOTATION_PLAINTEXT
from regseal.ocicrypt import (
    ANNOTATION_JWE,
    ANNOTATION_PUBOPTS,
    LayerEncryptor,
    PrivateOptions,
    PublicOptions,
)
from regseal.seal import Outcome
from tests.functional.test_seal import tag_event
from tests.support.crypto import pem_private
from tests.support.motoserver import moto_server
from tests.support.ocilayout import (
    Layer,
    read_blob,
    read_image_layout,
    resolve_tag,
    sha256_digest,
    store_manifest,
    tar_layer,
    write_blob,
    write_image_layout,
    write_json_blob,
)
from tests.support.registry import OCI_GZIP, random_layer

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
REGSEAL = str(Path(sys.executable).with_name("regseal"))


def skopeo_decrypt(key: Path, source: str, destination: str, *, all_images=False):
    result = subprocess.run(
        [
            SKOPEO,
            "--insecure-policy",
            "copy",
            "--quiet",
            *(["--all"] if all_images else []),
            "--decryption-key",
            str(key),
            source,
            destination,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def skopeo_encrypt(public: Path, source: str, destination: str, *, all_images=False):
    result = subprocess.run(
        [
            SKOPEO,
            "--insecure-policy",
            "copy",
            "--quiet",
            *(["--all"] if all_images else []),
            "--encryption-key",
            f"jwe:{public}",
            source,
            destination,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def tree(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``path``: relative name -> (mode, bytes)."""
    return {
        str(file.relative_to(path)): (file.stat().st_mode & 0o777, file.read_bytes())
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def regseal(*args: str) -> int:
    return main(["decrypt", "--no-progress", *args])


@pytest.fixture
def key_files(tmp_path, stack):
    """PEM files of the stack's two recipients (RSA, EC P-256) for both tools."""
    paths = []
    for index, key in enumerate(stack.private_keys):
        path = tmp_path / f"key-{index}.pem"
        path.write_bytes(pem_private(key))
        paths.append(path)
    return paths


def seal(stack, repository, tag):
    result = stack.sealer.handle(tag_event(stack, repository, tag))
    assert result.outcome is Outcome.SEALED
    return result


# --------------------------------------------------------------------------
# byte identity with skopeo


def test_sealed_oci_image_decrypts_to_skopeos_bytes_with_jwe_and_with_kms(
    tmp_path, stack, key_files
):
    layers = [random_layer(3000), random_layer(9000)]
    stack.registry.push_image(
        "team-a/app",
        "1.0",
        layers,
        extra={"annotations": {"org.example.note": "a <b> & c", "é": "x"}},
    )
    seal(stack, "team-a/app", "1.0")
    sealed = tmp_path / "sealed"
    stack.registry.export_layout("team-a/app", "1.0", sealed)

    skopeo_decrypt(key_files[0], f"oci:{sealed}:1.0", f"oci:{tmp_path / 'sk'}:1.0")
    assert (
        regseal(
            "--key",
            str(key_files[1]),
            f"oci:{sealed}:1.0",
            f"oci:{tmp_path / 'rs'}:1.0",
        )
        == 0
    )
    assert regseal(f"oci:{sealed}:1.0", f"oci:{tmp_path / 'kms'}:1.0") == 0

    expected = tree(tmp_path / "sk")
    assert tree(tmp_path / "rs") == expected
    assert tree(tmp_path / "kms") == expected
    decrypted = read_image_layout(tmp_path / "rs", "1.0").manifest
    assert [sha256_digest(layer) for layer in layers] == list(decrypted.layer_digests)
    assert ANNOTATION_PLAINTEXT in decrypted.document["annotations"]


def test_sealed_schema2_image_decrypts_to_skopeos_bytes(tmp_path, stack, key_files):
    layers = [random_layer(2000), random_layer(4000)]
    pushed = stack.registry.push_image("team-a/legacy", "v2", layers, docker=True)
    seal(stack, "team-a/legacy", "v2")
    sealed = tmp_path / "sealed"
    stack.registry.export_layout("team-a/legacy", "v2", sealed)

    skopeo_decrypt(key_files[0], f"oci:{sealed}:v2", f"oci:{tmp_path / 'sk'}:v2")
    assert (
        regseal(
            "--key", str(key_files[0]), f"oci:{sealed}:v2", f"oci:{tmp_path / 'rs'}:v2"
        )
        == 0
    )

    assert tree(tmp_path / "rs") == tree(tmp_path / "sk")
    manifest = read_image_layout(tmp_path / "rs", "v2").manifest
    assert manifest.layer_digests == tuple(d.value for d in pushed.layers)
    assert (
        manifest.layer_media_types
        == ("application/vnd.oci.image.layer.v1.tar+gzip",) * 2
    )


def test_sealed_two_platform_index_decrypts_to_skopeo_alls_bytes(
    tmp_path, stack, key_files
):
    shared = random_layer(3000)
    stack.registry.push_index(
        "team-a/multi",
        "1",
        [("amd64", [shared, random_layer()]), ("arm64", [shared])],
    )
    seal(stack, "team-a/multi", "1")
    sealed = tmp_path / "sealed"
    stack.registry.export_layout("team-a/multi", "1", sealed)

    skopeo_decrypt(
        key_files[1], f"oci:{sealed}:1", f"oci:{tmp_path / 'sk'}:1", all_images=True
    )
    assert regseal(f"oci:{sealed}:1", f"oci:{tmp_path / 'rs'}:1") == 0  # KMS

    assert tree(tmp_path / "rs") == tree(tmp_path / "sk")
    decrypted = read_image_layout(tmp_path / "rs", "1")
    assert [m.platform for m in decrypted.manifests] == ["linux/amd64", "linux/arm64"]
    # Two ciphertexts of one plaintext layer come back as one blob.
    assert decrypted.manifests[0].layer_digests[0] == sha256_digest(shared)
    assert decrypted.manifests[1].layer_digests == (sha256_digest(shared),)


@pytest.fixture
def skopeo_keys(tmp_path, rsa_keypair):
    return rsa_keypair.write(tmp_path / "keys")


def test_skopeo_encrypted_image_with_a_recompressed_layer_decrypts_alike(
    tmp_path, skopeo_keys, caplog
):
    private, public = skopeo_keys
    image = write_image_layout(
        tmp_path / "img",
        [
            tar_layer({"etc/hello": b"hello\n"}),
            Layer(
                tar_layer({"bin/x": bytes(range(256)) * 8}, compress=False),
                annotations={"org.example.layer": "kept"},
            ),
        ],
        manifest_annotations={"org.example": "<kept>"},
    )
    skopeo_encrypt(public, image.reference, f"oci:{tmp_path / 'enc'}:latest")

    skopeo_decrypt(private, f"oci:{tmp_path / 'enc'}:latest", f"oci:{tmp_path / 'sk'}")
    assert (
        regseal(
            "--key",
            str(private),
            f"oci:{tmp_path / 'enc'}:latest",
            f"oci:{tmp_path / 'rs'}",
        )
        == 0
    )

    assert tree(tmp_path / "rs") == tree(tmp_path / "sk")
    # skopeo gzipped the tar layer and kept the tar's digest: only a warning
    # for an image regseal did not seal.
    assert any("not to the digest" in r.getMessage() for r in caplog.records)
    index = json.loads((tmp_path / "rs" / "index.json").read_bytes())
    assert "annotations" not in index["manifests"][0]


def test_skopeo_encrypted_index_decrypts_alike(tmp_path, skopeo_keys):
    private, public = skopeo_keys
    image = write_image_layout(
        tmp_path / "img",
        [tar_layer({"same": b"on both platforms"})],
        platforms=["linux/amd64", "linux/arm64"],
        index_annotations={"org.example.index": "kept"},
    )
    skopeo_encrypt(
        public, image.reference, f"oci:{tmp_path / 'enc'}:latest", all_images=True
    )

    skopeo_decrypt(
        private,
        f"oci:{tmp_path / 'enc'}:latest",
        f"oci:{tmp_path / 'sk'}:latest",
        all_images=True,
    )
    assert (
        regseal(
            "--key",
            str(private),
            f"oci:{tmp_path / 'enc'}:latest",
            f"oci:{tmp_path / 'rs'}:latest",
        )
        == 0
    )

    assert tree(tmp_path / "rs") == tree(tmp_path / "sk")
    # With the original's field order, the round trip is exact.
    assert resolve_tag(tmp_path / "rs")["digest"] == image.digest


def test_go_struct_shapes_match_skopeo_for_unusual_fields(tmp_path, skopeo_keys):
    # Fields c/image drops, reorders or re-encodes (measured, see gojson).
    private, public = skopeo_keys
    source = tmp_path / "src"
    recipient = jwe.Recipient.from_pem(public.read_bytes(), source="test")
    config_digest, config_size = write_json_blob(
        source, {"architecture": "arm64", "os": "linux", "rootfs": {"diff_ids": []}}
    )
    plaintext = tar_layer({"a": b"unusual"})
    options = PrivateOptions.generate(sha256_digest(plaintext))
    encryptor = LayerEncryptor(options)
    ciphertext = encryptor.update(plaintext)
    layer = encryptor.finalize()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/x-dropped",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config_size,
            "digest": config_digest,
            "platform": {
                "variant": "v8",
                "os": "linux",
                "features": ["dropped"],
                "architecture": "arm64",
                "os.version": "1",
            },
            "data": base64.b64encode(b"hi").decode(),
            "annotations": {"z": "1", "a": "\u2028\t<"},
            "unknown": True,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                "size": layer.size,
                "digest": write_blob(source, ciphertext),
                "platform": {"os": "linux", "architecture": "arm64"},
                "annotations": {
                    "org.example.b": "2",
                    "org.example.a": "1",
                    ANNOTATION_PUBOPTS: PublicOptions(layer.hmac).to_annotation(),
                    ANNOTATION_JWE: jwe.wrap(options.to_json(), recipient),
                },
            }
        ],
        "subject": {
            "digest": "sha256:" + "0" * 64,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 1,
            "extra": 1,
        },
        "annotations": {"é": "\u00e9", "&": "&"},
        "unknown": {"dropped": True},
    }
    store_manifest(source, manifest, tag="x")

    skopeo_decrypt(private, f"oci:{source}:x", f"oci:{tmp_path / 'sk'}:x")
    assert (
        regseal("--key", str(private), f"oci:{source}:x", f"oci:{tmp_path / 'rs'}:x")
        == 0
    )

    assert tree(tmp_path / "rs") == tree(tmp_path / "sk")


def test_plaintext_image_is_copied_unchanged_like_skopeo(tmp_path, skopeo_keys):
    private, _ = skopeo_keys
    image = write_image_layout(tmp_path / "img", [tar_layer({"p": b"plain"})])

    skopeo_decrypt(private, image.reference, f"oci:{tmp_path / 'sk'}:latest")
    assert (
        regseal("--key", str(private), image.reference, f"oci:{tmp_path / 'rs'}:latest")
        == 0
    )

    assert tree(tmp_path / "rs") == tree(tmp_path / "sk")
    assert resolve_tag(tmp_path / "rs")["digest"] == image.digest


def test_index_json_of_an_existing_layout_is_merged_as_skopeo_merges_it(
    tmp_path, skopeo_keys
):
    private, public = skopeo_keys
    single = write_image_layout(tmp_path / "img", [tar_layer({"one": b"1"})])
    multi = write_image_layout(
        tmp_path / "img",
        [tar_layer({"two": b"2"})],
        tag="multi",
        platforms=["linux/amd64", "linux/arm64"],
    )
    enc = tmp_path / "enc"
    skopeo_encrypt(public, single.reference, f"oci:{enc}:one")
    skopeo_encrypt(public, multi.reference, f"oci:{enc}:multi", all_images=True)
    steps = [
        ("one", "a"),
        ("multi", "b"),
        ("multi", "a"),
        ("one", None),
        ("multi", None),
    ]

    for source_tag, destination_tag in steps:
        suffix = f":{destination_tag}" if destination_tag else ""
        skopeo_decrypt(
            private,
            f"oci:{enc}:{source_tag}",
            f"oci:{tmp_path / 'sk'}{suffix}",
            all_images=True,
        )
        assert (
            regseal(
                "--key",
                str(private),
                f"oci:{enc}:{source_tag}",
                f"oci:{tmp_path / 'rs'}{suffix}",
            )
            == 0
        )

        assert tree(tmp_path / "rs") == tree(tmp_path / "sk"), (
            source_tag,
            destination_tag,
        )
    assert (
        len(json.loads((tmp_path / "rs" / "index.json").read_bytes())["manifests"]) == 4
    )


# --------------------------------------------------------------------------
# errors leave the destination alone


@pytest.fixture
def sealed_layout(tmp_path, stack):
    stack.registry.push_image("team-a/app", "1.0", [random_layer(5000), random_layer()])
    seal(stack, "team-a/app", "1.0")
    path = tmp_path / "sealed"
    stack.registry.export_layout("team-a/app", "1.0", path)
    return path


def test_a_key_that_is_no_recipient_writes_nothing(
    tmp_path, sealed_layout, other_rsa_keypair, capsys
):
    private, _ = other_rsa_keypair.write(tmp_path / "other")

    status = regseal(
        "--key", str(private), f"oci:{sealed_layout}:1.0", f"oci:{tmp_path / 'out'}:1.0"
    )

    assert status == 1
    err = capsys.readouterr().err
    assert "no key could unwrap it: JWE: no recipient key could unwrap" in err
    assert not (tmp_path / "out").exists()


def test_an_error_leaves_an_existing_layout_byte_for_byte(
    tmp_path, sealed_layout, key_files, capsys
):
    out = tmp_path / "out"
    assert (
        regseal(
            "--key", str(key_files[0]), f"oci:{sealed_layout}:1.0", f"oci:{out}:good"
        )
        == 0
    )
    before = tree(out)
    digest = resolve_tag(sealed_layout, "1.0")["digest"]
    manifest = json.loads(read_blob(sealed_layout, digest))
    annotations = manifest["layers"][1]["annotations"]
    hmac = bytearray(
        PublicOptions.from_annotation(annotations[ANNOTATION_PUBOPTS]).hmac
    )
    hmac[5] ^= 0x40
    annotations[ANNOTATION_PUBOPTS] = PublicOptions(bytes(hmac)).to_annotation()
    store_manifest(sealed_layout, manifest, tag="tampered")

    status = regseal(
        "--key", str(key_files[0]), f"oci:{sealed_layout}:tampered", f"oci:{out}:bad"
    )

    assert status == 1
    assert "failed authentication" in capsys.readouterr().err
    assert tree(out) == before
    assert sorted(p.name for p in out.iterdir()) == [
        "blobs",
        "index.json",
        "oci-layout",
    ]


def test_kms_packets_bound_to_another_repository_are_refused(
    tmp_path, sealed_layout, capsys
):
    status = regseal(
        "--repository",
        "team-b/app",
        f"oci:{sealed_layout}:1.0",
        f"oci:{tmp_path / 'out'}",
    )

    assert status == 1
    err = capsys.readouterr().err
    assert (
        "is bound to repository 'team-a/app', but the image was read as "
        "repository 'team-b/app'" in err
    )
    assert not (tmp_path / "out").exists()


def test_jwe_only_layer_with_kms_only_keys_says_so(tmp_path, skopeo_keys, capsys):
    _, public = skopeo_keys
    image = write_image_layout(tmp_path / "img", [tar_layer({"k": b"v"})])
    skopeo_encrypt(public, image.reference, f"oci:{tmp_path / 'enc'}:latest")

    status = regseal(
        "--kms", f"oci:{tmp_path / 'enc'}:latest", f"oci:{tmp_path / 'out'}"
    )

    assert status == 1
    assert (
        f"KMS: the layer has no {ANNOTATION_KMS} annotation" in capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------
# the command as a program, KMS on moto's server


@pytest.fixture(scope="module")
def kms_server(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto-decrypt")) as server:
        key = server.client("kms").create_key()["KeyMetadata"]["Arn"]
        admin = server.user("admin", ["kms:*"])
        users = {
            "runtime": server.user("runtime", ["kms:Decrypt"]),
            "no-grant": server.user("no-grant", ["kms:DescribeKey"]),
        }
        server.enforce_iam(admin)
        yield server, key, users


def kms_sealed_layout(path: Path, server, key: str) -> tuple[bytes, str]:
    """A one-layer image whose key is wrapped only with KMS, as sealing does."""
    plaintext = random_layer(4000)
    options = PrivateOptions.generate(sha256_digest(plaintext))
    encryptor = LayerEncryptor(options)
    ciphertext = encryptor.update(plaintext)
    layer = encryptor.finalize()
    item = KmsWrapper(server.client("kms")).wrap(
        options.to_json(), key, encryption_context("team-a/app", options.digest)
    )
    config_digest, config_size = write_json_blob(
        path, {"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": []}}
    )
    store_manifest(
        path,
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": OCI_GZIP + "+encrypted",
                    "digest": write_blob(path, ciphertext),
                    "size": layer.size,
                    "annotations": {
                        ANNOTATION_PUBOPTS: PublicOptions(layer.hmac).to_annotation(),
                        ANNOTATION_KMS: item,
                    },
                }
            ],
            "annotations": {ANNOTATION_PLAINTEXT: "sha256:" + "1" * 64},
        },
        tag="1",
    )
    return plaintext, base64.b64encode(options.symkey).decode()


def run_regseal(server, credentials, *args):
    return subprocess.run(
        [REGSEAL, "decrypt", *args],
        capture_output=True,
        text=True,
        env=server.env(credentials),
        timeout=120,
        check=False,
    )


def test_kms_decrypt_as_a_program_with_a_granted_principal(tmp_path, kms_server):
    server, key, users = kms_server
    plaintext, _ = kms_sealed_layout(tmp_path / "sealed", server, key)

    result = run_regseal(
        server,
        users["runtime"],
        f"oci:{tmp_path / 'sealed'}:1",
        f"oci:{tmp_path / 'out'}:1",
    )

    assert result.returncode == 0, result.stderr
    assert "1 manifest(s), 1 layer(s)" in result.stderr
    manifest = read_image_layout(tmp_path / "out", "1").manifest
    assert manifest.layer_digests == (sha256_digest(plaintext),)
    assert read_blob(tmp_path / "out", manifest.layer_digests[0]) == plaintext


def test_denied_kms_decrypt_names_key_and_repository_and_writes_nothing(
    tmp_path, kms_server
):
    server, key, users = kms_server
    _, symkey = kms_sealed_layout(tmp_path / "sealed", server, key)
    os.makedirs(tmp_path / "out")

    result = run_regseal(
        server,
        users["no-grant"],
        f"oci:{tmp_path / 'sealed'}:1",
        f"oci:{tmp_path / 'out'}:1",
    )

    assert result.returncode == 1
    assert (
        f"KMS Decrypt denied (HTTP 403) with KMS key {key} for repository 'team-a/app'"
        in result.stderr
    )
    assert symkey not in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_a_broken_destination_layout_is_refused_before_any_work(
    tmp_path, sealed_layout, key_files, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.json").write_text("{not json")
    (out / "stray").write_text("kept")

    status = regseal(
        "--key", str(key_files[0]), f"oci:{sealed_layout}:1.0", f"oci:{out}:1.0"
    )

    assert status == 1
    assert "expected an OCI index.json" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "stray"]
