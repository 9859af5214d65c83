"""The reference: skopeo (ocicrypt in Go) encrypting and decrypting layers.

:func:`write_layout` builds an OCI image layout around a layer file (a hard
link, so a 1 GiB layer costs no copy), :func:`skopeo_encrypt` and
:func:`skopeo_decrypt` time ``skopeo copy`` between layouts, and
:func:`regseal_decrypt` times regseal's codec on skopeo's own output, so both
decrypt the very same bytes. :func:`regseal_decrypt_image` times the whole
``regseal decrypt`` command on an image of several layers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from benchmarks.data import LayerFile, MiB, copy_prefix
from benchmarks.engine import Run, best_of
from regseal import jwe, ocicrypt
from regseal.cli import main as regseal_main
from regseal.digest import Digest

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class KeyFiles:
    public: Path
    private: Path


def write_keys(directory: Path) -> KeyFiles:
    """An RSA-2048 key pair as PEM files (the private one PKCS#8)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = directory / "priv.pem"
    public = directory / "pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyFiles(public, private)


def _blob(layout: Path, digest: Digest | str) -> Path:
    return layout / "blobs" / "sha256" / str(digest).removeprefix("sha256:")


def _write_json_blob(layout: Path, document: object) -> tuple[str, int]:
    data = json.dumps(document, separators=(",", ":")).encode()
    digest = Digest.of(data)
    _blob(layout, digest).write_bytes(data)
    return str(digest), len(data)


def write_layout(
    layout: Path, layers: Sequence[LayerFile], tag: str = "latest"
) -> Path:
    """An OCI layout at ``layout`` whose one image has ``layers``."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        target = _blob(layout, layer.digest)
        if target.exists():
            continue
        if layer.size == layer.path.stat().st_size:
            os.link(layer.path, target)
        else:
            copy_prefix(layer, target)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {
            "type": "layers",
            "diff_ids": [str(layer.diff_id or layer.digest) for layer in layers],
        },
    }
    config_digest, config_size = _write_json_blob(layout, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {"mediaType": OCI_LAYER, "digest": str(layer.digest), "size": layer.size}
            for layer in layers
        ],
    }
    manifest_digest, manifest_size = _write_json_blob(layout, manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {REF_NAME: tag},
            }
        ],
    }
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _skopeo(arguments: list[str]) -> None:
    subprocess.run(
        [SKOPEO, "copy", "--quiet", *arguments], check=True, capture_output=True
    )


def _timed_copies(
    arguments: list[str], destination: Path, size: int, repeat: int
) -> Run:
    best: tuple[float, float] | None = None
    for _ in range(repeat):
        shutil.rmtree(destination, ignore_errors=True)
        cpu, start = _children_cpu(), time.perf_counter()
        _skopeo([*arguments, f"oci:{destination}:latest"])
        elapsed, used = time.perf_counter() - start, _children_cpu() - cpu
        if best is None or elapsed < best[0]:
            best = (elapsed, used)
    assert best is not None
    return Run(best[0], best[1], size, repeat)


def skopeo_encrypt(
    source: Path, destination: Path, keys: KeyFiles, size: int, repeat: int
) -> Run:
    """``skopeo copy --encryption-key jwe:pub.pem oci:source oci:destination``."""
    arguments = ["--encryption-key", f"jwe:{keys.public}", f"oci:{source}:latest"]
    return _timed_copies(arguments, destination, size, repeat)


def skopeo_decrypt(
    source: Path, destination: Path, keys: KeyFiles, size: int, repeat: int
) -> Run:
    """``skopeo copy --decryption-key priv.pem oci:source oci:destination``."""
    arguments = ["--decryption-key", str(keys.private), f"oci:{source}:latest"]
    return _timed_copies(arguments, destination, size, repeat)


def plain_copy(source: Path, destination: Path, size: int, repeat: int) -> Run:
    """``skopeo copy`` without crypto: skopeo's own cost of moving the layer."""
    return _timed_copies([f"oci:{source}:latest"], destination, size, repeat)


def encrypted_layer(layout: Path) -> tuple[dict[str, object], Path]:
    """The only layer descriptor of an encrypted layout, and its blob file."""
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]).read_bytes())
    descriptor: dict[str, object] = manifest["layers"][0]
    return descriptor, _blob(layout, str(descriptor["digest"]))


def regseal_decrypt(layout: Path, keys: KeyFiles, output: Path, repeat: int) -> Run:
    """regseal's decrypt of skopeo's encrypted layer: unwrap the JWE, then
    :func:`regseal.ocicrypt.decrypt_layer` (authenticate the whole blob,
    then release plaintext), writing the plaintext to ``output``."""
    descriptor, blob = encrypted_layer(layout)
    annotations = descriptor["annotations"]
    assert isinstance(annotations, dict)
    size = int(str(descriptor["size"]))
    private_key = jwe.load_private_key(keys.private.read_bytes(), source="bench key")

    def open_blob() -> Iterator[bytes]:
        with blob.open("rb", buffering=0) as file:
            while data := file.read(16 * MiB):
                yield data

    def decrypt() -> None:
        public = ocicrypt.PublicOptions.from_annotation(
            annotations[ocicrypt.ANNOTATION_PUBOPTS]
        )
        private = ocicrypt.PrivateOptions.from_json(
            jwe.unwrap(annotations[ocicrypt.ANNOTATION_JWE], [private_key])
        )
        plaintext = ocicrypt.decrypt_layer(
            open_blob,
            public,
            private,
            expected_digest=Digest.parse(str(descriptor["digest"])),
            expected_size=size,
            enforce_plaintext_digest=True,
        )
        with output.open("wb") as out:
            for piece in plaintext:
                out.write(piece)

    try:
        return best_of(repeat, size, decrypt)
    finally:
        output.unlink(missing_ok=True)


def regseal_decrypt_image(
    layout: Path, keys: KeyFiles, destination: Path, size: int
) -> Run:
    """One ``regseal decrypt --key priv.pem oci:layout oci:destination``, in
    this process (its CPU is this process's), the key loaded from its file."""

    def decrypt() -> None:
        shutil.rmtree(destination, ignore_errors=True)
        said = io.StringIO()  # its one-line summary, or why it failed
        with contextlib.redirect_stderr(said):
            status = regseal_main(
                [
                    "decrypt",
                    "--no-progress",
                    "--key",
                    str(keys.private),
                    f"oci:{layout}:latest",
                    f"oci:{destination}:latest",
                ]
            )
        if status != 0:
            raise RuntimeError(
                f"regseal decrypt of {layout} exited with {status}: {said.getvalue()}"
            )

    try:
        return best_of(1, size, decrypt)
    finally:
        shutil.rmtree(destination, ignore_errors=True)
