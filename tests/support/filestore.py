"""A bucket on local disk with the methods of regseal's ObjectStore.

The layer engine (``regseal.layerstream``) needs ranged reads, puts, multipart
uploads and a server-side copy. :class:`FileStore` provides them on files, so
that tests and benchmarks can stream gigabytes without moto's in-process
overhead: a ranged read is one ``pread`` (one copy out of the page cache, as a
socket read is one copy out of the kernel), an uploaded part is one write, and
what S3 does on its own servers (completing an upload, copying an object)
costs nothing here, because an object is a list of file segments that copies
share.

``requests`` counts calls by S3 operation name, as ObjectStore does, so a
benchmark can report requests per layer. :meth:`add_file` registers an
existing file as an object without copying it.
"""

from __future__ import annotations

import collections
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from regseal.errors import NotFoundError, StorageError


@dataclass(frozen=True)
class Segment:
    path: Path
    size: int


class FileStore:
    """Objects as lists of file segments under ``root``."""

    def __init__(self, root: Path, bucket: str = "filestore") -> None:
        self.root = Path(root)
        self.bucket = bucket
        self.requests: collections.Counter[str] = collections.Counter()
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self._objects: dict[str, tuple[Segment, ...]] = {}
        self._owned: collections.Counter[Path] = collections.Counter()
        self._fds: dict[Path, int] = {}
        self._lock = threading.Lock()

    # -- bookkeeping ---------------------------------------------------------

    def _count(self, operation: str) -> None:
        with self._lock:
            self.requests[operation] += 1

    def _new_file(self, data: bytes | bytearray | memoryview) -> Segment:
        path = self.root / "data" / uuid.uuid4().hex
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data).cast("B")
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)
        return Segment(path, len(data))

    def _fd(self, path: Path) -> int:
        with self._lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY)
            return fd

    def _set(self, key: str, segments: tuple[Segment, ...], owned: bool) -> None:
        with self._lock:
            old = self._objects.get(key, ())
            self._objects[key] = segments
            if owned:
                for segment in segments:
                    self._owned[segment.path] += 1
        self._drop(old)

    def _drop(self, segments: tuple[Segment, ...]) -> None:
        with self._lock:
            for segment in segments:
                if segment.path not in self._owned:
                    continue
                self._owned[segment.path] -= 1
                if self._owned[segment.path] == 0:
                    del self._owned[segment.path]
                    fd = self._fds.pop(segment.path, None)
                    if fd is not None:
                        os.close(fd)
                    segment.path.unlink(missing_ok=True)

    def _segments(self, key: str, operation: str) -> tuple[Segment, ...]:
        with self._lock:
            segments = self._objects.get(key)
        if segments is None:
            raise NotFoundError(
                f"file://{self.root}/{key}: no such object ({operation})"
            )
        return segments

    # -- the ObjectStore methods ---------------------------------------------

    def add_file(self, key: str, path: Path, size: int | None = None) -> None:
        """Make the existing file ``path`` (or its first ``size`` bytes) the
        object ``key``, without copying it; the file is never deleted."""
        length = os.path.getsize(path) if size is None else size
        self._set(key, (Segment(Path(path), length),), owned=False)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._objects)

    def size(self, key: str) -> int:
        return sum(s.size for s in self._segments(key, "HeadObject"))

    def get_bytes(self, key: str) -> bytes:
        return self.read_range(key, 0, self.size(key))

    def read_range(self, key: str, start: int, end: int) -> bytes:
        self._count("GetObject")
        if end <= start:
            return b""
        pieces: list[bytes] = []
        offset = 0
        for segment in self._segments(key, "GetObject"):
            lo, hi = max(start, offset), min(end, offset + segment.size)
            if lo < hi:
                pieces.append(os.pread(self._fd(segment.path), hi - lo, lo - offset))
            offset += segment.size
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if len(data) != end - start:
            raise StorageError(
                f"file://{self.root}/{key}: expected {end - start} bytes at offset "
                f"{start}, got {len(data)}"
            )
        return data

    def read_range_into(self, key: str, start: int, out: memoryview) -> None:
        self._count("GetObject")
        target = out.cast("B") if out.format != "B" else out
        filled = 0
        offset = 0
        for segment in self._segments(key, "GetObject"):
            lo = max(start + filled, offset)
            hi = min(start + len(target), offset + segment.size)
            while lo < hi:
                n = os.preadv(
                    self._fd(segment.path),
                    [target[filled : filled + hi - lo]],
                    lo - offset,
                )
                if n == 0:
                    break
                filled += n
                lo += n
            offset += segment.size
        if filled != len(target):
            raise StorageError(
                f"file://{self.root}/{key}: expected {len(target)} bytes at offset "
                f"{start}, got {filled}"
            )

    def exists(self, key: str) -> bool:
        self._count("HeadObject")
        with self._lock:
            return key in self._objects

    def put(self, key: str, data: bytes) -> str:
        self._count("PutObject")
        self._set(key, (self._new_file(data),), owned=True)
        return f'"{uuid.uuid4().hex}"'

    def delete(self, key: str) -> None:
        self._count("DeleteObject")
        with self._lock:
            old = self._objects.pop(key, ())
        self._drop(old)

    def copy(self, source_key: str, dest_key: str, size: int) -> None:
        self._count("CopyObject")
        segments = self._segments(source_key, "CopyObject")
        self._set(dest_key, segments, owned=True)

    def start_multipart(self, key: str) -> FileUpload:
        self._count("CreateMultipartUpload")
        return FileUpload(self, key)

    def close(self) -> None:
        """Close cached file descriptors and delete every owned file."""
        with self._lock:
            keys = list(self._objects)
        for key in keys:
            self.delete(key)
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


class FileUpload:
    """A multipart upload into a :class:`FileStore`."""

    def __init__(self, store: FileStore, key: str) -> None:
        self.store = store
        self.key = key
        self.parts: dict[int, Segment] = {}
        self.state = "open"
        self._lock = threading.Lock()

    def upload_part(self, number: int, data: bytes | bytearray | memoryview) -> None:
        self.store._count("UploadPart")
        if not 1 <= number <= 10_000:
            raise StorageError(f"part number {number} is outside 1..10000")
        segment = self.store._new_file(data)
        with self._lock:
            if self.state != "open":
                segment.path.unlink()
                raise StorageError(f"upload of {self.key} is {self.state}")
            old = self.parts.get(number)
            self.parts[number] = segment
        if old is not None:
            old.path.unlink()

    def complete(self) -> None:
        self.store._count("CompleteMultipartUpload")
        with self._lock:
            numbers = sorted(self.parts)
            if numbers != list(range(1, len(numbers) + 1)):
                raise StorageError(f"parts of {self.key} are not 1..n: {numbers}")
            self.state = "completed"
            segments = tuple(self.parts[n] for n in numbers)
        self.store._set(self.key, segments, owned=True)

    def abort(self) -> None:
        self.store._count("AbortMultipartUpload")
        with self._lock:
            self.state = "aborted"
            parts = list(self.parts.values())
            self.parts.clear()
        for segment in parts:
            segment.path.unlink(missing_ok=True)
