"""Streaming one layer blob from S3, through the layer cipher, back to S3.

The ciphertext's digest (its blob key) is known only after the last byte,
so a large layer is uploaded as a multipart upload to a staging key under
regseal's own prefix and then copied server side to its content address.
A layer that fits in one part is encrypted in memory and written straight
to its final key.

Memory is bounded: at most ``workers`` parts are being downloaded and at most
``workers`` parts uploaded while one is encrypted, whatever the layer size.
:func:`encrypt_in_order` streams into any :class:`PartSink` that must get
its parts in order, one at a time (a registry's chunked blob upload).
Downloads, uploads and the hashing inside the cipher release the GIL, so
transfer and crypto overlap on both cores.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from regseal.digest import Digest
from regseal.ocicrypt import EncryptedLayer, LayerEncryptor, PrivateOptions
from regseal.storage import ObjectStore

logger = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last


class PartSink(Protocol):
    """Where ciphertext parts go: an S3 multipart upload, a registry upload."""

    def upload_part(self, number: int, data: bytes) -> None:
        """Store part ``number`` (from 1); parts may arrive from any thread."""


@dataclass(frozen=True)
class StreamSettings:
    part_size: int = 16 * 1024 * 1024
    workers: int = 4

    def __post_init__(self) -> None:
        if self.part_size < MIN_PART_SIZE:
            raise ValueError(
                f"part_size: expected at least {MIN_PART_SIZE} bytes (S3's minimum "
                f"part), got {self.part_size}"
            )
        if self.workers < 1:
            raise ValueError(f"workers: expected at least 1, got {self.workers}")


def encrypt_blob(
    store: ObjectStore,
    source_key: str,
    size: int,
    options: PrivateOptions,
    blob_key: Callable[[Digest], str],
    staging_prefix: str,
    settings: StreamSettings | None = None,
) -> EncryptedLayer:
    """Encrypt the object at ``source_key`` into a new content-addressed blob.

    Args:
        store: the bucket.
        source_key: the plaintext blob's key.
        size: its expected size in bytes (the descriptor's).
        options: the layer's private options (key, nonce, plaintext digest).
        blob_key: maps the ciphertext digest to the key to write it at.
        staging_prefix: where a multipart upload is staged.
        settings: part size and parallelism.

    Returns:
        The ciphertext digest, HMAC and plaintext digest. The caller checks
        the plaintext digest against the descriptor.

    The caller has checked that the source holds exactly ``size`` bytes; a
    short read still fails here.

    Raises:
        StorageError: a part came back short, or S3 failed; a staged upload
            is aborted or deleted.
    """
    settings = settings or StreamSettings()
    encryptor = LayerEncryptor(options)
    if size <= settings.part_size:
        ciphertext = encryptor.update(store.read_range(source_key, 0, size))
        layer = encryptor.finalize()
        key = blob_key(layer.digest)
        if not store.exists(key):
            store.put(key, ciphertext)
        return layer

    staging = f"{staging_prefix}{uuid.uuid4()}"
    upload = store.start_multipart(staging)
    try:
        with (
            ThreadPoolExecutor(settings.workers, "regseal-get") as getters,
            ThreadPoolExecutor(settings.workers, "regseal-put") as putters,
        ):
            _pipeline(
                store, source_key, size, encryptor, upload, getters, putters, settings
            )
        upload.complete()
    except BaseException:
        upload.abort()
        raise
    try:
        layer = encryptor.finalize()
        key = blob_key(layer.digest)
        if not store.exists(key):
            store.copy(staging, key, size)
    finally:
        store.delete(staging)
    return layer


def encrypt_in_order(
    store: ObjectStore,
    source_key: str,
    size: int,
    options: PrivateOptions,
    sink: PartSink,
    settings: StreamSettings | None = None,
) -> EncryptedLayer:
    """Encrypt the object at ``source_key`` into ``sink``, one part at a time.

    For a sink that must receive its parts in order and one at a time (the
    registry's chunked blob upload): parts are still downloaded ``workers``
    at once, but handed to the sink by a single thread, in order. Memory stays
    bounded by about ``2 * workers + 1`` parts.

    Returns:
        The ciphertext digest, HMAC and plaintext digest; the caller checks
        the plaintext digest before it commits what the sink received.
    """
    settings = settings or StreamSettings()
    encryptor = LayerEncryptor(options)
    with (
        ThreadPoolExecutor(settings.workers, "regseal-get") as getters,
        ThreadPoolExecutor(1, "regseal-send") as sender,
    ):
        _pipeline(store, source_key, size, encryptor, sink, getters, sender, settings)
    return encryptor.finalize()


def _pipeline(
    store: ObjectStore,
    source_key: str,
    size: int,
    encryptor: LayerEncryptor,
    upload: PartSink,
    getters: ThreadPoolExecutor,
    putters: ThreadPoolExecutor,
    settings: StreamSettings,
) -> None:
    offsets = iter(range(0, size, settings.part_size))
    reads: deque[Future[bytes]] = deque()
    writes: deque[Future[None]] = deque()

    def schedule_read() -> None:
        start = next(offsets, None)
        if start is not None:
            end = min(start + settings.part_size, size)
            reads.append(getters.submit(store.read_range, source_key, start, end))

    for _ in range(settings.workers):
        schedule_read()
    number = 0
    while reads:
        plaintext = reads.popleft().result()
        schedule_read()
        ciphertext = encryptor.update(plaintext)
        del plaintext
        number += 1
        while len(writes) >= settings.workers:
            writes.popleft().result()
        writes.append(putters.submit(upload.upload_part, number, ciphertext))
    for write in writes:
        write.result()
