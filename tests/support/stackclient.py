"""Look at, and poke, a running local stack from a test.

A :class:`StackClient` wraps the stack's state file: the registry bucket in
moto's S3 (what a push stored, snapshots for "nothing changed" checks, link
objects written by hand), the event queue and its dead-letter queue (drain
waits, re-sent notifications), the TUF function's queue and the TUF metadata
it publishes, and the registry's HTTP API. It also reads the
seal handler's JSON log lines from the stack's output.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote_plus

import boto3

from regseal.local.state import StackState
from tests.support.registry import s3_event

REGISTRY_ROOT = "docker/registry/v2/"
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
# The registry listens on loopback; a proxy from the environment must not apply.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Raises:
        TimeoutError: ``timeout`` seconds passed; the message says ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class StoredManifest:
    """A manifest (or index) as the registry stored it, read from the bucket."""

    digest: str
    document: Mapping[str, Any] = field(repr=False)
    children: tuple[StoredManifest, ...] = ()
    platform: str | None = None

    @property
    def media_type(self) -> str:
        return str(self.document.get("mediaType", ""))

    @property
    def layer_digests(self) -> tuple[str, ...]:
        return tuple(layer["digest"] for layer in self.document.get("layers", []))

    def by_platform(self) -> dict[str, tuple[str, ...]]:
        """``os/arch`` -> layer digests of each child of an index."""
        return {str(c.platform): c.layer_digests for c in self.children}


@dataclass(frozen=True)
class ObjectVersion:
    """What a snapshot records of one object: enough to see any rewrite."""

    etag: str
    size: int
    last_modified: str


@dataclass(frozen=True)
class LogRecord:
    """One JSON line the handler (Powertools) or the pump logged."""

    level: str
    message: str
    fields: Mapping[str, Any] = field(repr=False)
    line: str = field(repr=False)


class StackClient:
    """The AWS side and the registry API of one running stack."""

    def __init__(self, state: StackState, output: Path | None = None) -> None:
        self.state = state
        self.output = output
        options: dict[str, Any] = {
            "endpoint_url": state.s3_endpoint,
            "region_name": state.region,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        self.s3 = boto3.client("s3", **options)
        self.sqs = boto3.client("sqs", **options)

    # -- the bucket -----------------------------------------------------------

    def get(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.state.bucket, Key=key)[
            "Body"
        ].read()
        return body

    def put(self, key: str, data: bytes) -> str:
        """Write an object behind the registry's back; return its ETag."""
        etag: str = self.s3.put_object(Bucket=self.state.bucket, Key=key, Body=data)[
            "ETag"
        ]
        return etag

    def keys(self, prefix: str) -> list[str]:
        return list(self.snapshot(prefix))

    def snapshot(self, prefix: str = "") -> dict[str, ObjectVersion]:
        """Every object under ``prefix`` with its ETag, size and modification time."""
        found: dict[str, ObjectVersion] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.state.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = ObjectVersion(
                    item["ETag"], item["Size"], item["LastModified"].isoformat()
                )
        return found

    def blob(self, digest: str) -> bytes:
        """A blob's data from the registry's storage, checked against its digest."""
        hex_part = digest.removeprefix("sha256:")
        data = self.get(f"{REGISTRY_ROOT}blobs/sha256/{hex_part[:2]}/{hex_part}/data")
        if sha256_digest(data) != digest:
            raise AssertionError(f"stored blob {digest} does not match its digest")
        return data

    def stored_manifest(
        self, digest: str, platform: str | None = None
    ) -> StoredManifest:
        """The manifest ``digest`` as stored, with an index's children.

        Blob data stays in storage after a seal hides the plaintext from the
        registry's API, so this works before and after the seal.
        """
        document = json.loads(self.blob(digest))
        children: tuple[StoredManifest, ...] = ()
        if document.get("mediaType") in INDEX_TYPES:
            children = tuple(
                self.stored_manifest(
                    child["digest"],
                    "{os}/{architecture}".format(**child["platform"])
                    if "platform" in child
                    else None,
                )
                for child in document["manifests"]
            )
        return StoredManifest(digest, document, children, platform)

    @staticmethod
    def tag_link_key(repository: str, tag: str) -> str:
        return (
            f"{REGISTRY_ROOT}repositories/{repository}/_manifests/tags/{tag}"
            "/current/link"
        )

    @staticmethod
    def revision_link_key(repository: str, digest: str) -> str:
        hex_part = digest.removeprefix("sha256:")
        return (
            f"{REGISTRY_ROOT}repositories/{repository}/_manifests/revisions/sha256/"
            f"{hex_part}/link"
        )

    def tag_target(self, repository: str, tag: str) -> str:
        """The digest a tag's ``current/link`` holds."""
        return self.get(self.tag_link_key(repository, tag)).decode()

    # -- the queues -----------------------------------------------------------

    def queue_depth(self, queue_url: str | None = None) -> int:
        """Messages waiting plus messages in flight in a queue (default: events)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url or self.state.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def wait_drained(self, timeout: float = 60.0) -> None:
        """Wait until the pump has handled and deleted every queued event.

        A message the handler failed stays in flight until its visibility
        timeout ends and comes back, so the queue is empty only once every
        message was handled successfully or moved to the dead-letter queue.
        """
        wait_for(
            lambda: self.queue_depth() == 0,
            timeout=timeout,
            what=f"draining {self.state.queue_url}",
        )

    def send_notification(self, key: str) -> str:
        """Queue the S3 notification the bucket sends when ``key`` is written."""
        body = json.dumps(s3_event(self.state.bucket, key))
        message_id: str = self.sqs.send_message(
            QueueUrl=self.state.queue_url, MessageBody=body
        )["MessageId"]
        return message_id

    def take_dead_letters(self, keys: Iterable[str]) -> dict[str, int]:
        """Remove the dead-letter queue's messages about ``keys``; count them.

        Messages about other keys are put back (made visible again).
        """
        wanted = set(keys)
        found: dict[str, int] = {}
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.state.dlq_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=30,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                named = set(notification_keys(message["Body"])) & wanted
                if named:
                    for key in named:
                        found[key] = found.get(key, 0) + 1
                    self.sqs.delete_message(
                        QueueUrl=self.state.dlq_url,
                        ReceiptHandle=message["ReceiptHandle"],
                    )
                else:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.state.dlq_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=0,
                    )

    # -- the registry API ---------------------------------------------------

    def wait_tuf_drained(self, timeout: float = 60.0) -> None:
        """Wait until the TUF function has handled every "targets changed"
        message (the stack must run with TUF)."""
        queue_url = self.state.tuf_queue_url
        if queue_url is None:
            raise ValueError("this stack runs without TUF")
        wait_for(
            lambda: self.queue_depth(queue_url) == 0,
            timeout=timeout,
            what=f"draining {queue_url}",
        )

    def tuf_metadata(self, name: str) -> dict[str, Any]:
        """A TUF metadata file, fetched anonymously from ``tuf_metadata_url``."""
        if self.state.tuf_metadata_url is None:
            raise ValueError("this stack runs without TUF")
        with _DIRECT.open(self.state.tuf_metadata_url + name, timeout=10) as response:
            document: dict[str, Any] = json.loads(response.read())
        return document

    def registry_manifest(self, repository: str, reference: str) -> bytes:
        """The manifest bytes the registry serves for a tag or digest."""
        request = urllib.request.Request(
            f"http://{self.state.registry}/v2/{repository}/manifests/{reference}",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        with _DIRECT.open(request, timeout=10) as response:
            body: bytes = response.read()
        return body

    def registry_delete(self, path: str) -> int:
        """DELETE ``/v2/<path>`` at the registry; return the HTTP status."""
        request = urllib.request.Request(
            f"http://{self.state.registry}/v2/{path}", method="DELETE"
        )
        try:
            with _DIRECT.open(request, timeout=10) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def registry_get(self, path: str, accept: str = MANIFEST_ACCEPT) -> int:
        """GET ``/v2/<path>`` from the registry; return the HTTP status."""
        request = urllib.request.Request(
            f"http://{self.state.registry}/v2/{path}", headers={"Accept": accept}
        )
        try:
            with _DIRECT.open(request, timeout=10) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    # -- the stack's output -------------------------------------------------

    def log_records(self) -> list[LogRecord]:
        """Every JSON log line in the stack's output so far, oldest first."""
        if self.output is None:
            raise ValueError("this client was made without the stack's output file")
        records = []
        for line in self.output.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                fields = json.loads(line)
            except ValueError:
                continue
            if isinstance(fields, dict) and "message" in fields:
                records.append(
                    LogRecord(
                        str(fields.get("level", "")),
                        str(fields["message"]),
                        fields,
                        line,
                    )
                )
        return records

    def log_tail(self, lines: int = 30) -> str:
        if self.output is None:
            return ""
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])


def notification_keys(body: str) -> list[str]:
    """The object keys an S3 notification message body names (decoded)."""
    try:
        document = json.loads(body)
    except ValueError:
        return []
    return [
        unquote_plus(record["s3"]["object"]["key"])
        for record in document.get("Records", [])
        if isinstance(record, dict) and "s3" in record
    ]
