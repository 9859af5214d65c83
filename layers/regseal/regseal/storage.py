"""The S3 adapter: the only module that speaks S3's names.

Everything regseal reads or writes in a bucket goes through
:class:`ObjectStore`, which turns botocore errors into regseal errors
(missing object, lost conditional write, anything else) and counts requests
so that benchmarks can report S3 calls per sealed image.

Conditional writes follow S3's semantics: ``if_match`` is an ETag compare-and-
swap, ``create_only`` is ``If-None-Match: *``.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from regseal.errors import NotFoundError, PreconditionFailedError, StorageError

logger = logging.getLogger(__name__)

_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}

# CopyObject copies at most 5 GiB in one request; above that S3 requires
# UploadPartCopy.
MAX_SINGLE_COPY = 5 * 1024**3
COPY_PART_SIZE = 512 * 1024**2

# Pieces in which read_range_into copies a body into the caller's buffer.
_READ_PIECE = 1024**2


@dataclass(frozen=True)
class StoredObject:
    """An object's bytes and the ETag they were read at."""

    key: str
    data: bytes
    etag: str


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of an object (HEAD)."""

    key: str
    size: int
    etag: str
    last_modified: datetime


class ObjectStore:
    """One bucket, seen through regseal's error model.

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
    """

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self.requests: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def _count(self, operation: str) -> None:
        with self._lock:
            self.requests[operation] += 1

    def _call(self, operation: str, key: str, **kwargs: Any) -> Any:
        self._count(operation)
        method = getattr(self.client, _SNAKE[operation])
        try:
            return method(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            raise _translate(exc, operation, self.bucket, key) from exc

    def get(self, key: str) -> StoredObject:
        """Read a whole (small) object.

        Raises:
            NotFoundError: the object does not exist.
        """
        reply = self._call("GetObject", key, Key=key)
        return StoredObject(key, reply["Body"].read(), reply["ETag"])

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Read bytes ``start`` to ``end`` (exclusive) of an object."""
        if end <= start:
            return b""
        reply = self._call("GetObject", key, Key=key, Range=f"bytes={start}-{end - 1}")
        data: bytes = reply["Body"].read()
        if len(data) != end - start:
            raise StorageError(
                f"s3://{self.bucket}/{key}: expected {end - start} bytes at offset "
                f"{start}, got {len(data)}"
            )
        return data

    def read_range_into(self, key: str, start: int, out: memoryview) -> None:
        """Fill ``out`` with the object's bytes from offset ``start`` on.

        The body is copied into ``out`` one piece at a time, so a caller that
        reuses its buffers allocates nothing the size of a part.

        Raises:
            StorageError: the object ended early, or the transfer failed.
        """
        target = out.cast("B") if out.format != "B" else out
        if not target:
            return
        end = start + len(target)
        reply = self._call("GetObject", key, Key=key, Range=f"bytes={start}-{end - 1}")
        body = reply["Body"]
        filled = 0
        try:
            while filled < len(target):
                piece = body.read(min(_READ_PIECE, len(target) - filled))
                if not piece:
                    break
                target[filled : filled + len(piece)] = piece
                filled += len(piece)
        except BotoCoreError as exc:
            raise StorageError(
                f"s3://{self.bucket}/{key}: reading bytes {start}-{end - 1} failed: "
                f"{exc}"
            ) from exc
        finally:
            body.close()
        if filled != len(target):
            raise StorageError(
                f"s3://{self.bucket}/{key}: expected {len(target)} bytes at offset "
                f"{start}, got {filled}"
            )

    def head(self, key: str) -> ObjectInfo | None:
        """Metadata of an object, or None when it does not exist."""
        try:
            reply = self._call("HeadObject", key, Key=key)
        except NotFoundError:
            return None
        return ObjectInfo(
            key, reply["ContentLength"], reply["ETag"], reply["LastModified"]
        )

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_match: str | None = None,
        create_only: bool = False,
    ) -> str:
        """Write an object and return its ETag.

        Raises:
            PreconditionFailedError: ``if_match`` no longer holds, or
                ``create_only`` and the object exists.
        """
        conditions: dict[str, str] = {}
        if if_match is not None:
            conditions["IfMatch"] = if_match
        if create_only:
            conditions["IfNoneMatch"] = "*"
        reply = self._call(
            "PutObject", key, Key=key, Body=data, ContentType=content_type, **conditions
        )
        etag: str = reply["ETag"]
        return etag

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete an object; deleting a missing object is not an error."""
        conditions = {"IfMatch": if_match} if if_match is not None else {}
        self._call("DeleteObject", key, Key=key, **conditions)

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, in S3's (lexicographic) order."""
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            reply = self._call("ListObjectsV2", prefix, Prefix=prefix, **extra)
            for item in reply.get("Contents", []):
                yield item["Key"]
            if not reply.get("IsTruncated"):
                return
            token = reply["NextContinuationToken"]

    def list_children(self, prefix: str) -> Iterator[str]:
        """The next path segment of every key under ``prefix`` (one level)."""
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            reply = self._call(
                "ListObjectsV2", prefix, Prefix=prefix, Delimiter="/", **extra
            )
            for item in reply.get("CommonPrefixes", []):
                yield item["Prefix"][len(prefix) :].rstrip("/")
            if not reply.get("IsTruncated"):
                return
            token = reply["NextContinuationToken"]

    def copy(self, source_key: str, dest_key: str, size: int) -> None:
        """Copy an object inside the bucket, server side."""
        if size <= MAX_SINGLE_COPY:
            self._call(
                "CopyObject",
                dest_key,
                Key=dest_key,
                CopySource={"Bucket": self.bucket, "Key": source_key},
                ContentType="application/octet-stream",
            )
            return
        upload = self.start_multipart(dest_key)
        try:
            for number, start in enumerate(range(0, size, COPY_PART_SIZE), 1):
                end = min(start + COPY_PART_SIZE, size) - 1
                reply = self._call(
                    "UploadPartCopy",
                    dest_key,
                    Key=dest_key,
                    UploadId=upload.upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": source_key},
                    CopySourceRange=f"bytes={start}-{end}",
                )
                upload.add_part(number, reply["CopyPartResult"]["ETag"])
            upload.complete()
        except BaseException:
            upload.abort()
            raise

    def start_multipart(self, key: str) -> MultipartUpload:
        """Begin a multipart upload of ``key``."""
        reply = self._call(
            "CreateMultipartUpload",
            key,
            Key=key,
            ContentType="application/octet-stream",
        )
        return MultipartUpload(self, key, reply["UploadId"])


class MultipartUpload:
    """A multipart upload in progress; parts may be uploaded from any thread."""

    def __init__(self, store: ObjectStore, key: str, upload_id: str) -> None:
        self.store = store
        self.key = key
        self.upload_id = upload_id
        self._parts: dict[int, str] = {}
        self._lock = threading.Lock()

    def upload_part(self, number: int, data: bytes | bytearray | memoryview) -> None:
        """Upload part ``number``; a bytearray goes to botocore as it is, a
        memoryview is copied to bytes first."""
        reply = self.store._call(
            "UploadPart",
            self.key,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=bytes(data) if isinstance(data, memoryview) else data,
        )
        self.add_part(number, reply["ETag"])

    def add_part(self, number: int, etag: str) -> None:
        with self._lock:
            self._parts[number] = etag

    def complete(self) -> None:
        parts = [
            {"PartNumber": n, "ETag": etag} for n, etag in sorted(self._parts.items())
        ]
        self.store._call(
            "CompleteMultipartUpload",
            self.key,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )

    def abort(self) -> None:
        try:
            self.store._call(
                "AbortMultipartUpload", self.key, Key=self.key, UploadId=self.upload_id
            )
        except StorageError:
            logger.debug("abort of upload %s failed", self.upload_id, exc_info=True)


_WRITES = frozenset(
    {
        "PutObject",
        "DeleteObject",
        "CopyObject",
        "UploadPartCopy",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
    }
)


class ReadOnlyPrefixStore(ObjectStore):
    """An :class:`ObjectStore` that refuses every write under some prefixes.

    Used in registry-API mode: there the registry writes its own storage, and
    a write by regseal under the registry root would be a bug that bypasses
    the registry's database (Harbor).

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
        read_only: key prefixes nothing may be written or deleted under.
    """

    def __init__(self, client: Any, bucket: str, read_only: tuple[str, ...]) -> None:
        super().__init__(client, bucket)
        self.read_only = read_only

    def _call(self, operation: str, key: str, **kwargs: Any) -> Any:
        if operation in _WRITES and key.startswith(self.read_only):
            raise StorageError(
                f"s3://{self.bucket}/{key}: {operation} refused: expected no writes "
                f"under {', '.join(self.read_only)} (the registry writes its own "
                "storage in registry-API mode)"
            )
        return super()._call(operation, key, **kwargs)


_SNAKE = {
    "GetObject": "get_object",
    "HeadObject": "head_object",
    "PutObject": "put_object",
    "DeleteObject": "delete_object",
    "ListObjectsV2": "list_objects_v2",
    "CopyObject": "copy_object",
    "UploadPartCopy": "upload_part_copy",
    "CreateMultipartUpload": "create_multipart_upload",
    "UploadPart": "upload_part",
    "CompleteMultipartUpload": "complete_multipart_upload",
    "AbortMultipartUpload": "abort_multipart_upload",
}


def _translate(exc: ClientError, operation: str, bucket: str, key: str) -> StorageError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    where = f"s3://{bucket}/{key}"
    if code in _NOT_FOUND:
        return NotFoundError(f"{where}: no such object ({operation})")
    if code in _PRECONDITION:
        return PreconditionFailedError(
            f"{where}: conditional {operation} lost, the object changed"
        )
    if code in _DENIED:
        return StorageError(
            f"{where}: {operation} refused with {code}; check the AWS credentials "
            "in use and the IAM and bucket policies they fall under"
        )
    if code == "NoSuchBucket":
        return StorageError(
            f"{where}: {operation} failed, no bucket {bucket!r}; check --bucket or "
            "REGSEAL_BUCKET (and AWS_ENDPOINT_URL)"
        )
    return StorageError(f"{where}: {operation} failed with {code or exc}")
