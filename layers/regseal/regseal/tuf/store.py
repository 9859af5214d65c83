"""TUF metadata storage on S3, with the conditional writes that serialize writers.

Metadata lives under one location: a bucket and a prefix (by default the registry
bucket and ``tuf/``). The layout is the TUF specification's "consistent snapshots":
every role except timestamp is written once as ``VERSION.ROLE.json`` and never
rewritten (``If-None-Match: *``); ``timestamp.json`` is the only mutable object,
replaced by compare-and-swap on its ETag (``If-Match``).

Because a writer creates ``N+1.ROLE.json`` only after reading ``N.ROLE.json``,
the stored versions of a role are always 1..latest without gaps. The latest
version is therefore found with a few HEAD requests (exponential probing from a
known version, then bisection), never by listing the bucket.

This is the only module of :mod:`regseal.tuf` that speaks S3's names; botocore
errors become :class:`~regseal.errors.NotFoundError`,
:class:`~regseal.errors.PreconditionFailedError` or
:class:`~regseal.errors.StorageError`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from regseal.errors import NotFoundError, PreconditionFailedError, StorageError

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "tuf/"

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
# 412 for a lost condition; 409 when real S3 sees a concurrent conditional
# write on the same key (not produced by moto).
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX = re.compile(r"(?:[A-Za-z0-9!_.*'()-]+/)*")
# VERSION.ROLE.json, or the one unversioned file.
_NAME = re.compile(r"[1-9][0-9]*\.[a-z0-9][a-z0-9._-]*\.json|timestamp\.json")

# Versioned metadata files are immutable, so a process may keep them. The cache
# is bounded by total bytes so that a warm Lambda does not grow without limit.
_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class MetadataLocation:
    """Where a TUF repository's metadata lives.

    Attributes:
        bucket: the S3 bucket.
        prefix: the key prefix, empty or ending in ``/`` (default ``tuf/``).
    """

    bucket: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _BUCKET.fullmatch(self.bucket):
            raise StorageError(
                f"expected an S3 bucket name (3-63 of a-z 0-9 . -), got {self.bucket!r}"
            )
        if not _PREFIX.fullmatch(self.prefix) or "//" in self.prefix:
            raise StorageError(
                f"expected a key prefix that is empty or ends in '/', "
                f"got {self.prefix!r}"
            )

    @classmethod
    def parse(cls, url: str) -> MetadataLocation:
        """Parse ``s3://bucket/prefix/`` (the prefix may be empty)."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc or parsed.query:
            raise StorageError(f"expected an s3://bucket/prefix/ URL, got {url!r}")
        prefix = parsed.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(parsed.netloc, prefix)

    @property
    def url(self) -> str:
        """The location as ``s3://bucket/prefix/``."""
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        """The S3 key of metadata file ``name`` (``3.team-a.json``)."""
        if not _NAME.fullmatch(name):
            raise StorageError(
                f"expected a metadata file name like '3.targets.json', got {name!r}"
            )
        return self.prefix + name


@dataclass(frozen=True)
class StoredMetadata:
    """A metadata file's bytes, exactly as stored, and the ETag they had."""

    name: str
    data: bytes
    etag: str


@dataclass(frozen=True)
class StoreStats:
    """Requests and bytes a store has exchanged with S3 (for benchmarks)."""

    requests: dict[str, int]
    bytes_read: int
    bytes_written: int


def versioned_name(version: int, role: str) -> str:
    """The consistent-snapshot file name of a role version."""
    return f"{version}.{role}.json"


class MetadataStore:
    """The metadata files of one TUF repository in S3.

    A store may be shared by threads and kept for the life of a process: it
    caches immutable versioned files and the newest version seen per role, and
    both are only ever hints that the next read confirms.

    Args:
        client: a boto3 S3 client.
        location: bucket and prefix.
    """

    def __init__(self, client: Any, location: MetadataLocation) -> None:
        self.client = client
        self.location = location
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._bytes_read = 0
        self._bytes_written = 0
        self._known: dict[str, int] = {}
        self._cache: OrderedDict[str, StoredMetadata] = OrderedDict()
        self._cache_bytes = 0

    @classmethod
    def connect(
        cls, location: MetadataLocation, session: Any | None = None
    ) -> MetadataStore:
        """A store on a new S3 client from the standard AWS environment."""
        import boto3

        client = (session or boto3).client("s3")
        return cls(client, location)

    # -- statistics -----------------------------------------------------------

    def stats(self) -> StoreStats:
        """A copy of the counters."""
        with self._lock:
            return StoreStats(
                dict(self._requests), self._bytes_read, self._bytes_written
            )

    def reset_stats(self) -> None:
        """Zero the counters."""
        with self._lock:
            self._requests.clear()
            self._bytes_read = 0
            self._bytes_written = 0

    def _count(self, operation: str, read: int = 0, written: int = 0) -> None:
        with self._lock:
            self._requests[operation] += 1
            self._bytes_read += read
            self._bytes_written += written

    # -- S3 calls -------------------------------------------------------------

    def _call(self, operation: str, name: str, **kwargs: Any) -> Any:
        key = self.location.key(name)
        method = getattr(self.client, operation)
        try:
            return method(Bucket=self.location.bucket, Key=key, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            where = f"s3://{self.location.bucket}/{key}"
            if code in _NOT_FOUND:
                raise NotFoundError(f"{where}: no such metadata file") from exc
            if code in _PRECONDITION:
                raise PreconditionFailedError(
                    f"{where}: conditional write lost ({code}); another writer "
                    "changed it first"
                ) from exc
            raise StorageError(f"{where}: {operation} failed ({code})") from exc
        except BotoCoreError as exc:
            raise StorageError(
                f"s3://{self.location.bucket}/{key}: {operation} failed ({exc})"
            ) from exc

    def get(self, name: str) -> StoredMetadata:
        """Read a metadata file.

        Raises:
            NotFoundError: it does not exist.
        """
        cached = self._cached(name)
        if cached is not None:
            return cached
        reply = self._call("get_object", name)
        data: bytes = reply["Body"].read()
        self._count("GetObject", read=len(data))
        stored = StoredMetadata(name, data, reply["ETag"])
        if name != "timestamp.json":
            self._remember_file(stored)
        return stored

    def get_optional(self, name: str) -> StoredMetadata | None:
        """Read a metadata file, or None when it does not exist."""
        try:
            return self.get(name)
        except NotFoundError:
            self._count("GetObject")
            return None

    def exists(self, name: str) -> bool:
        """Whether a metadata file exists (one HEAD request unless cached)."""
        if self._cached(name) is not None:
            return True
        self._count("HeadObject")
        try:
            self._call("head_object", name)
        except NotFoundError:
            return False
        return True

    def create(self, name: str, data: bytes) -> str:
        """Write a new file; fail if the name exists (``If-None-Match: *``).

        Returns:
            The new object's ETag.

        Raises:
            PreconditionFailedError: another writer created it first.
        """
        self._count("PutObject", written=len(data))
        reply = self._call(
            "put_object",
            name,
            Body=data,
            ContentType="application/json",
            IfNoneMatch="*",
        )
        etag: str = reply["ETag"]
        if name != "timestamp.json":
            self._remember_file(StoredMetadata(name, data, etag))
        logger.debug("created %s (%d bytes)", name, len(data))
        return etag

    def replace(self, name: str, data: bytes, etag: str) -> str:
        """Replace a file only if it still has ``etag`` (``If-Match``).

        Returns:
            The new object's ETag.

        Raises:
            PreconditionFailedError: the file changed since it was read.
        """
        self._count("PutObject", written=len(data))
        reply = self._call(
            "put_object",
            name,
            Body=data,
            ContentType="application/json",
            IfMatch=etag,
        )
        new_etag: str = reply["ETag"]
        logger.debug("replaced %s (%d bytes)", name, len(data))
        return new_etag

    # -- versions -------------------------------------------------------------

    def known_version(self, role: str) -> int | None:
        """The newest version of ``role`` this process has seen, if any."""
        with self._lock:
            return self._known.get(role)

    def remember_version(self, role: str, version: int) -> None:
        """Record that ``version`` of ``role`` exists."""
        with self._lock:
            if version > self._known.get(role, 0):
                self._known[role] = version

    def latest_version(self, role: str, start: int | None = None) -> int | None:
        """The newest stored version of ``role``, or None if it has none.

        Versions are contiguous (see the module docstring), so the search
        probes ``start+1, start+2, start+4, ...`` until a miss and then bisects:
        one HEAD when nothing changed, O(log n) after n new versions.

        Args:
            role: role name.
            start: a version known to exist (a hint; the process cache is
                also used). Without any hint the search starts at version 1.
        """
        floor = max(start or 0, self.known_version(role) or 0)
        if floor == 0:
            if not self.exists(versioned_name(1, role)):
                return None
            floor = 1
        step = 1
        ceiling = None
        while ceiling is None:
            if self.exists(versioned_name(floor + step, role)):
                floor += step
                step *= 2
            else:
                ceiling = floor + step
        # floor exists, ceiling does not.
        while ceiling - floor > 1:
            middle = (floor + ceiling) // 2
            if self.exists(versioned_name(middle, role)):
                floor = middle
            else:
                ceiling = middle
        self.remember_version(role, floor)
        return floor

    # -- cache ----------------------------------------------------------------

    def _cached(self, name: str) -> StoredMetadata | None:
        with self._lock:
            stored = self._cache.get(name)
            if stored is not None:
                self._cache.move_to_end(name)
            return stored

    def _remember_file(self, stored: StoredMetadata) -> None:
        with self._lock:
            if stored.name in self._cache:
                return
            self._cache[stored.name] = stored
            self._cache_bytes += len(stored.data)
            while self._cache_bytes > _CACHE_BYTES and self._cache:
                _, dropped = self._cache.popitem(last=False)
                self._cache_bytes -= len(dropped.data)

    def forget_cache(self) -> None:
        """Drop cached files and versions (tests that rewrite storage use it)."""
        with self._lock:
            self._cache.clear()
            self._cache_bytes = 0
            self._known.clear()
