"""OCI image layouts: reading one as a source, writing one as skopeo does.

An OCI image layout (opencontainers/image-spec ``image-layout.md``) is a
directory with ``oci-layout``, ``index.json`` and content-addressed blobs
under ``blobs/sha256/``; ``oci:DIR:TAG`` names the ``index.json`` entry whose
``org.opencontainers.image.ref.name`` annotation is ``TAG``.

:class:`LayoutWriter` writes what skopeo 1.9.3's ``oci:`` destination writes
(measured): blobs as files of mode 0644, ``oci-layout`` as
``{"imageLayoutVersion": "1.0.0"}`` (with the space), and ``index.json``
through Go's struct, with the new entry merged by skopeo's rule: the first
entry holding the same reference name loses that annotation, an unnamed
entry of the same digest is replaced, otherwise the entry is appended.

Everything is staged in a directory inside the destination and moved into
place by :meth:`LayoutWriter.commit`; :meth:`LayoutWriter.abort` (or an
error before the commit) leaves the destination as it was, and removes it
if the writer created it.

NOTE: two writers committing into one layout at the same time can lose one
``index.json`` entry (read, merge, replace is not locked; skopeo does not
lock either). Blobs are never lost or corrupted: they are content-addressed
and moved into place whole.

Public API: :data:`REF_NAME`, :class:`LayoutSource`, :class:`LayoutWriter`,
:func:`read_chunks`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from regseal import gojson
from regseal.digest import Digest
from regseal.errors import FormatError, IntegrityError, ManifestError, NotFoundError
from regseal.manifest import MAX_MANIFEST_BYTES

logger = logging.getLogger(__name__)

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_CONTENT = b'{"imageLayoutVersion": "1.0.0"}'
READ_CHUNK = 1 << 20
_FILE_MODE = 0o644
_STAGING_PREFIX = ".tmp-regseal-"


def _blob_path(root: Path, digest: Digest) -> Path:
    return root / "blobs" / "sha256" / digest.hex


def _load_index(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no index.json: not an OCI image layout") from None
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: expected an OCI index.json: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise FormatError(f"{path}: expected an object with a 'manifests' list")
    return doc


class LayoutSource:
    """Reads an image from an OCI layout directory.

    Args:
        root: The layout directory.
        tag: The reference name to read; None picks the only entry.
    """

    def __init__(self, root: Path, tag: str | None) -> None:
        self.root = root
        self.tag = tag
        self.name = f"oci:{root}" + (f":{tag}" if tag else "")
        self.repository: str | None = None

    def top(self) -> tuple[bytes, Digest]:
        """The manifest or index the tag names, checked against its digest."""
        entries = _load_index(self.root / INDEX_FILE)["manifests"]
        if self.tag is None:
            if len(entries) != 1:
                raise ManifestError(
                    f"{self.name}: expected a tag, the layout holds "
                    f"{len(entries)} images"
                )
            chosen = entries[0]
        else:
            named = [
                entry
                for entry in entries
                if isinstance(entry, dict)
                and (entry.get("annotations") or {}).get(REF_NAME) == self.tag
            ]
            if not named:
                raise NotFoundError(f"{self.name}: no image is tagged {self.tag!r}")
            chosen = named[0]
        if not isinstance(chosen, dict):
            raise ManifestError(f"{self.name}: index.json entry is not an object")
        try:
            digest = Digest.parse(chosen.get("digest"))  # type: ignore[arg-type]
        except FormatError as exc:
            raise ManifestError(f"{self.name}: index.json entry: {exc}") from None
        return self.manifest(digest), digest

    def manifest(self, digest: Digest) -> bytes:
        """A manifest blob, checked against its digest."""
        path = _blob_path(self.root, digest)
        try:
            size = path.stat().st_size
            if size > MAX_MANIFEST_BYTES:
                raise ManifestError(
                    f"{self.name}: manifest {digest} has {size} bytes, expected at "
                    f"most {MAX_MANIFEST_BYTES}"
                )
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"{self.name}: manifest blob {digest} is missing"
            ) from None
        if Digest.of(data) != digest:
            raise IntegrityError(f"{self.name}: manifest blob {digest} is corrupt")
        return data

    def fetch(
        self,
        digest: Digest,
        size: int,
        scratch: Callable[[], Path],
        report: Callable[[int], None],
    ) -> Path:
        """The path of a blob; its user checks the digest as it reads it."""
        path = _blob_path(self.root, digest)
        if not path.is_file():
            raise NotFoundError(f"{self.name}: blob {digest} is missing")
        return path


def read_chunks(path: Path) -> Iterator[bytes]:
    """The bytes of a file in chunks of :data:`READ_CHUNK`."""
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            yield chunk


class LayoutWriter:
    """Stages an image and commits it into an OCI layout.

    Args:
        root: The destination layout directory; created if missing. It must
            be missing, empty, or an OCI layout.
        tag: The reference name of the image, or None for an unnamed entry.
    """

    def __init__(self, root: Path, tag: str | None) -> None:
        self.root = root
        self.tag = tag
        self._created: list[Path] = []
        if root.exists():
            if not root.is_dir():
                raise FormatError(f"{root}: expected a directory for the OCI layout")
            if (root / INDEX_FILE).is_file():
                _load_index(root / INDEX_FILE)  # refuse a broken layout up front
            elif any(root.iterdir()):
                raise FormatError(
                    f"{root}: expected an empty directory or an OCI image layout"
                )
        else:
            self._make_dirs(root)
        self.staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root))
        self._blobs: dict[Digest, Path] = {}

    def _make_dirs(self, path: Path) -> None:
        missing = []
        while not path.exists():
            missing.append(path)
            path = path.parent
        for directory in reversed(missing):
            directory.mkdir()
            self._created.append(directory)

    def add_blob(self, chunks: Iterable[bytes]) -> tuple[Digest, int]:
        """Stage a blob from its chunks; returns its digest and size."""
        hasher = hashlib.sha256()
        size = 0
        handle, name = tempfile.mkstemp(dir=self.staging, prefix="blob-")
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                out.write(chunk)
        digest = Digest.from_hash(hasher)
        path = self.staging / digest.hex
        os.replace(name, path)
        self._blobs[digest] = path
        return digest, size

    def add_bytes(self, data: bytes) -> Digest:
        """Stage a small blob held in memory (a manifest, a config)."""
        digest, _ = self.add_blob([data])
        return digest

    def scratch(self) -> Path:
        """A fresh file path in the staging area (e.g. for a download)."""
        handle, name = tempfile.mkstemp(dir=self.staging, prefix="download-")
        os.close(handle)
        return Path(name)

    def commit(self, media_type: str, digest: Digest, size: int) -> None:
        """Move the staged blobs into place and point ``index.json`` at the image.

        ``index.json`` is replaced last and in one step: a crash before it
        leaves only unreferenced blobs.
        """
        blobs = self.root / "blobs" / "sha256"
        self._make_dirs(blobs)
        for blob_digest, path in self._blobs.items():
            target = _blob_path(self.root, blob_digest)
            if target.exists():
                continue  # content-addressed: the same bytes (skopeo reuses too)
            os.chmod(path, _FILE_MODE)
            os.replace(path, target)

        index_path = self.root / INDEX_FILE
        index: dict[str, Any] = (
            _load_index(index_path)
            if index_path.exists()
            else {"schemaVersion": 2, "manifests": []}
        )
        entry: dict[str, Any] = {
            "mediaType": media_type,
            "digest": digest.value,
            "size": size,
        }
        if self.tag:
            entry["annotations"] = {REF_NAME: self.tag}
        entries: list[Any] = index["manifests"]
        index["manifests"] = _merge_entry(entries, entry, self.tag or "")
        self._write(self.root / LAYOUT_FILE, LAYOUT_CONTENT)
        self._write(index_path, gojson.layout_index(index))
        shutil.rmtree(self.staging)
        self._created.clear()
        logger.debug("wrote %s as %r into %s", digest, self.tag, self.root)

    def _write(self, path: Path, data: bytes) -> None:
        partial = self.staging / f"{path.name}.partial"
        partial.write_bytes(data)
        os.chmod(partial, _FILE_MODE)
        os.replace(partial, path)

    def abort(self) -> None:
        """Remove everything staged, and the directories this writer created."""
        shutil.rmtree(self.staging, ignore_errors=True)
        for directory in reversed(self._created):
            try:
                directory.rmdir()
            except OSError:
                break
        self._created.clear()


def _merge_entry(
    entries: list[Any], entry: dict[str, Any], name: str
) -> list[dict[str, Any]]:
    """skopeo's rule for adding an image to ``index.json`` (c/image addManifest)."""
    merged = [dict(e) if isinstance(e, dict) else e for e in entries]
    for existing in merged:
        annotations = existing.get("annotations") or {}
        if annotations.get(REF_NAME, "") == name:
            existing["annotations"] = {
                k: v for k, v in annotations.items() if k != REF_NAME
            }
            break
    for position, existing in enumerate(merged):
        annotations = existing.get("annotations") or {}
        if existing.get("digest") == entry["digest"] and not annotations.get(REF_NAME):
            merged[position] = entry
            return merged
    merged.append(entry)
    return merged
