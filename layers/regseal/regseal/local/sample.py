"""A sample image for the demo, written as an OCI image layout without Docker.

The layout follows the OCI image layout spec: ``oci-layout``, ``index.json``
naming the manifest by its ``org.opencontainers.image.ref.name`` annotation,
and content-addressed blobs under ``blobs/sha256/``. The image has three
layers that exercise different paths of a seal:

- a small ``tar+gzip`` layer of text files;
- a small uncompressed ``tar`` layer, which skopeo gzips on the way to a
  registry, so the registry's digest differs from the local one;
- a ``tar+gzip`` layer of one large random file (64 MiB by default), above
  the registry's 32 MiB multipart-copy threshold.

Every build carries a fresh build id in each layer, so no blob of one build
matches a blob already in a registry (no cross-repository mounts).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from regseal.digest import Digest

MIB = 1024 * 1024
DEFAULT_BIG_LAYER_BYTES = 64 * MIB

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

_CHUNK = 1 * MIB


@dataclass(frozen=True)
class SampleLayer:
    """One layer blob as the local layout holds it."""

    media_type: str
    digest: Digest
    size: int
    diff_id: Digest
    """The digest of the uncompressed tar (the config's ``rootfs.diff_ids``)."""


@dataclass(frozen=True)
class SampleImage:
    """What :func:`write_sample_image` wrote."""

    directory: Path
    tag: str
    manifest_digest: Digest
    layers: tuple[SampleLayer, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "directory": str(self.directory),
            "tag": self.tag,
            "manifest_digest": str(self.manifest_digest),
            "layers": [
                {
                    "mediaType": layer.media_type,
                    "digest": str(layer.digest),
                    "size": layer.size,
                    "diff_id": str(layer.diff_id),
                }
                for layer in self.layers
            ],
        }


def write_sample_image(
    directory: Path,
    *,
    tag: str = "latest",
    big_layer_bytes: int = DEFAULT_BIG_LAYER_BYTES,
) -> SampleImage:
    """Write a three-layer image into the OCI layout at ``directory``.

    Args:
        directory: the layout directory, created if needed; an existing
            ``index.json`` is replaced.
        tag: the reference name, as in ``oci:DIR:TAG``.
        big_layer_bytes: size of the random file in the third layer.
    """
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    build_id = os.urandom(16).hex().encode()

    layers = (
        _write_layer(
            blobs,
            [
                _member("etc/regseal-demo/hello.txt", b"sealed by regseal\n"),
                _member("etc/regseal-demo/build-id", build_id + b"\n"),
            ],
            compress=True,
        ),
        _write_layer(
            blobs,
            [
                _member("usr/share/regseal-demo/notes.txt", b"plain tar layer\n" * 64),
                _member("usr/share/regseal-demo/build-id", build_id + b"\n"),
            ],
            compress=False,
        ),
        _write_layer(
            blobs,
            [_member("opt/regseal-demo/random.bin", _RandomStream(), big_layer_bytes)],
            compress=True,
        ),
    )

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.title": "regseal demo"}},
        "rootfs": {"type": "layers", "diff_ids": [str(x.diff_id) for x in layers]},
        "history": [{"created_by": "regseal local sample-image"} for _ in layers],
    }
    config_digest, config_size = _write_json_blob(blobs, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": str(config_digest),
            "size": config_size,
        },
        "layers": [
            {"mediaType": x.media_type, "digest": str(x.digest), "size": x.size}
            for x in layers
        ],
    }
    manifest_digest, manifest_size = _write_json_blob(blobs, manifest)

    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": str(manifest_digest),
                "size": manifest_size,
                "annotations": {REF_NAME: tag},
            }
        ],
    }
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (directory / "index.json").write_text(json.dumps(index))
    return SampleImage(directory.resolve(), tag, manifest_digest, layers)


class _RandomStream:
    """An endless file of random bytes, for tarfile to copy from."""

    def read(self, size: int = _CHUNK) -> bytes:
        return os.urandom(size)


class _HashingWriter:
    """Passes writes on to ``target`` and hashes them on the way."""

    def __init__(self, target: BinaryIO | _HashingWriter | gzip.GzipFile) -> None:
        self._target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self._target.write(data)
        return len(data)

    def flush(self) -> None:
        self._target.flush()


_Member = tuple[tarfile.TarInfo, "BinaryIO | _RandomStream"]


def _member(name: str, content: bytes | _RandomStream, size: int = 0) -> _Member:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    info.mtime = 0
    if isinstance(content, bytes):
        info.size = len(content)
        return info, io.BytesIO(content)
    info.size = size
    return info, content


def _write_layer(
    blobs: Path, members: Iterable[_Member], *, compress: bool
) -> SampleLayer:
    partial = blobs / ".partial-layer"
    with partial.open("wb") as out:
        stored = _HashingWriter(out)
        if compress:
            with gzip.GzipFile(
                fileobj=stored,
                mode="wb",
                compresslevel=1,
                mtime=0,
            ) as compressed:
                tar_stream = _HashingWriter(compressed)
                _write_tar(tar_stream, members)
            diff_id = Digest.from_hash(tar_stream.sha256)
        else:
            _write_tar(stored, members)
            diff_id = Digest.from_hash(stored.sha256)

    digest = Digest.from_hash(stored.sha256)
    partial.replace(blobs / digest.hex)
    return SampleLayer(
        media_type=OCI_LAYER_TAR_GZIP if compress else OCI_LAYER_TAR,
        digest=digest,
        size=stored.size,
        diff_id=diff_id,
    )


def _write_tar(target: _HashingWriter, members: Iterable[_Member]) -> None:
    # Stream mode ("w|") only ever writes; typeshed's fileobj protocol also asks
    # for read, seek and tell, which this writer does not need.
    with tarfile.open(  # type: ignore[call-overload]
        fileobj=target, mode="w|", format=tarfile.PAX_FORMAT
    ) as tar:
        for info, content in members:
            tar.addfile(info, content)


def _write_json_blob(blobs: Path, document: Mapping[str, object]) -> tuple[Digest, int]:
    data = json.dumps(document, separators=(",", ":")).encode()
    digest = Digest.of(data)
    (blobs / digest.hex).write_bytes(data)
    return digest, len(data)
