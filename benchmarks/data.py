"""Benchmark data: random layer files, generated once per run and reused.

Random bytes come from AES-256-CTR over zeros (several GB/s), written in
16 MiB pieces. One file serves several layer sizes: the digests of its
prefixes are computed while it is written, and a store can expose a prefix
as an object of its own.

:func:`gzip_layer` wraps random bytes in a gzip stream of stored (level 0)
deflate blocks: a valid ``tar+gzip`` blob as far as skopeo can tell, so it is
copied as it is instead of being compressed on the way, which would measure
gzip rather than encryption.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from regseal.digest import Digest

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB
_PIECE = 16 * MiB


@dataclass(frozen=True)
class LayerFile:
    """The first ``size`` bytes of ``path``, a plaintext layer with ``digest``.

    ``diff_id`` is the digest of the uncompressed content, for a gzip layer.
    """

    path: Path
    size: int
    digest: Digest
    diff_id: Digest | None = None

    def chunks(self, chunk: int = _PIECE) -> Iterator[bytes]:
        """The layer's bytes in pieces of ``chunk`` (the last may be shorter)."""
        with self.path.open("rb", buffering=0) as file:
            left = self.size
            while left:
                data = file.read(min(chunk, left))
                if not data:
                    raise OSError(f"{self.path}: ends before {self.size} bytes")
                left -= len(data)
                yield data


def random_layers(path: Path, sizes: Iterable[int]) -> dict[int, LayerFile]:
    """A random file as long as the largest of ``sizes``, and a layer per size.

    A file written earlier with the same sizes is reused; its digests are
    kept next to it in ``<path>.json``.
    """
    wanted = sorted(set(sizes))
    total = wanted[-1]
    index = path.with_name(path.name + ".json")
    if path.exists() and path.stat().st_size == total and index.exists():
        known = {int(k): v for k, v in json.loads(index.read_text()).items()}
        if all(size in known for size in wanted):
            logger.info("reusing %s", path)
            return {s: LayerFile(path, s, Digest.parse(known[s])) for s in wanted}

    logger.info("writing %d MiB of random data to %s", total // MiB, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keystream = Cipher(
        algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))
    ).encryptor()
    zeros = bytes(_PIECE)
    piece = bytearray(_PIECE)
    sha = hashlib.sha256()
    digests: dict[int, str] = {}
    written = 0
    with path.open("wb") as file:
        while written < total:
            boundary = min(s for s in wanted if s > written)
            n = min(_PIECE, boundary - written)
            view = memoryview(piece)[:n]
            keystream.update_into(zeros[:n], view)
            sha.update(view)
            file.write(view)
            written += n
            if written == boundary:
                digests[written] = str(Digest.from_hash(sha.copy()))
    index.write_text(json.dumps({str(k): v for k, v in digests.items()}))
    return {s: LayerFile(path, s, Digest.parse(digests[s])) for s in wanted}


def copy_prefix(layer: LayerFile, target: Path) -> Path:
    """Write the layer's bytes to ``target`` (in the kernel, no Python copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with layer.path.open("rb") as source, target.open("wb") as out:
        left = layer.size
        offset = 0
        while left:
            n = os.copy_file_range(source.fileno(), out.fileno(), left, offset, offset)
            if n == 0:
                raise OSError(f"{layer.path}: ends before {layer.size} bytes")
            offset += n
            left -= n
    return target


def gzip_layer(path: Path, payload: int) -> LayerFile:
    """A gzip file of ``payload`` random bytes in stored blocks (reused if there)."""
    index = path.with_name(path.name + ".json")
    if path.exists() and index.exists():
        known = json.loads(index.read_text())
        if known.get("payload") == payload and known.get("size") == path.stat().st_size:
            logger.info("reusing %s", path)
            return LayerFile(
                path,
                int(known["size"]),
                Digest.parse(known["digest"]),
                Digest.parse(known["diff_id"]),
            )

    logger.info("writing a gzip layer of %d MiB to %s", payload // MiB, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keystream = Cipher(
        algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))
    ).encryptor()
    deflate = zlib.compressobj(level=0, wbits=31)
    zeros = bytes(_PIECE)
    sha, uncompressed = hashlib.sha256(), hashlib.sha256()
    size = 0
    with path.open("wb") as file:
        left = payload
        while left:
            n = min(_PIECE, left)
            content = keystream.update(zeros[:n])
            uncompressed.update(content)
            out = deflate.compress(content)
            out += deflate.flush(zlib.Z_FULL_FLUSH) if n == left else b""
            sha.update(out)
            file.write(out)
            size += len(out)
            left -= n
        tail = deflate.flush()
        sha.update(tail)
        file.write(tail)
        size += len(tail)
    digest, diff_id = Digest.from_hash(sha), Digest.from_hash(uncompressed)
    index.write_text(
        json.dumps(
            {
                "payload": payload,
                "size": size,
                "digest": str(digest),
                "diff_id": str(diff_id),
            }
        )
    )
    return LayerFile(path, size, digest, diff_id)
