"""Streaming one layer blob from S3, through the layer cipher, back to S3.

The ciphertext's digest (its blob key) is known only after the last byte,
so a large layer is uploaded as a multipart upload to a staging key under
regseal's own prefix and then copied server side to its content address
(docs/decisions/0003). A layer that fits in one part is encrypted in memory
and written straight to its final key.

A large layer flows through a pipeline of threads. Every stage spends its
time in C code that releases the GIL (sockets, OpenSSL's AES, sha256 and
HMAC), so the stages overlap on every core:

- ``workers`` threads fetch parts with ranged GETs, each into a buffer from
  a fixed pool, ahead of the cipher;
- the cipher lane takes the parts in blob order and, one slice at a time,
  hashes the plaintext (to check the blob's digest, unless
  :attr:`StreamSettings.verify_plaintext` is off), encrypts the slice in
  place with AES-256-CTR and feeds the ciphertext to the HMAC, while the
  slice is still in this core's cache;
- the digest lane feeds each ciphertext slice to the sha256 that becomes
  the blob's digest, on the other core;
- ``workers`` threads upload each part as soon as its last slice is MACed
  and hashed; its buffer then goes back to the pool for a later part.

A lane is a single-threaded executor, so it sees its slices in blob order,
which the HMAC and both digests need; the lanes run at the same time. Every
slice a lane hands to another thread is read again from another core, which
costs CPU, so the engine hands off as little as keeps two cores busy: two
lanes by default, the HMAC on a third lane of its own on request, and with
fewer than two CPUs one lane that does every step itself, slice by slice
(:attr:`StreamSettings.lanes`; the measurements are in docs/performance.md).

Memory is bounded whatever the layer size: a part holds one buffer from its
GET to the end of its upload, and the pool has :attr:`StreamSettings.buffers`
of them (``2 * workers + 2``: GETs, uploads, and two parts in the lanes), so
the engine never holds more than :meth:`StreamSettings.memory_bound` bytes of
layer data. Buffers are allocated once and reused by later parts and by the
next layer; nothing is allocated per part.

:func:`encrypt_in_order` runs the same pipeline into a :class:`PartSink`
that must receive its parts in order and one at a time (a registry's
chunked blob upload): each upload thread waits for its part's turn.

Any failure stops the pipeline: queued work is cancelled, in-flight
requests finish, the multipart upload is aborted and a staged object is
deleted, so a failed seal leaves nothing behind under the staging prefix.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from regseal.digest import Digest
from regseal.ocicrypt import EncryptedLayer, LayerEncryptor, PrivateOptions

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload

SLICE = 1 * MiB
"""Bytes of a part hashed, encrypted and handed to the other lanes at a time.

Small enough that AES and the MAC and digest lanes find the slice in a CPU
cache right after the cipher lane read it, large enough that the Python
hand-off costs little next to the hashing.
"""


class BlobStore(Protocol):
    """What the engine needs of a bucket; :class:`regseal.storage.ObjectStore`."""

    def read_range(self, key: str, start: int, end: int) -> bytes: ...

    def read_range_into(self, key: str, start: int, out: memoryview) -> None:
        """Fill ``out`` with the object's bytes from ``start`` on."""

    def exists(self, key: str) -> bool: ...

    def put(self, key: str, data: bytes) -> str: ...

    def start_multipart(self, key: str) -> PartUpload: ...

    def copy(self, source_key: str, dest_key: str, size: int) -> None: ...

    def delete(self, key: str) -> None: ...


class PartUpload(Protocol):
    """A multipart upload; :class:`regseal.storage.MultipartUpload`."""

    def upload_part(self, number: int, data: bytes | bytearray | memoryview) -> None:
        """Upload part ``number``; called from several threads at once."""

    def complete(self) -> None: ...

    def abort(self) -> None: ...


class PartSink(Protocol):
    """Where ciphertext parts go in order: a registry's chunked blob upload.

    ``data`` is only valid during the call: its buffer is reused afterwards.
    """

    def upload_part(self, number: int, data: bytes | bytearray | memoryview) -> None:
        """Take part ``number`` (from 1); called in part order, one at a time."""


@dataclass(frozen=True)
class StreamSettings:
    """Part size and parallelism of one layer's stream.

    Attributes:
        part_size: bytes per ranged GET and per uploaded part (S3 allows at
            least 5 MiB). Raised automatically for layers that would need
            more than 10,000 parts.
        workers: parallel GETs, and parallel part uploads.
        lanes: threads that hash and encrypt: 1 (every step on one thread:
            the least CPU per byte), 2 (plaintext hash, AES and HMAC on the
            cipher lane, the ciphertext sha256 on a second: the most bytes
            per second on two CPUs) or 3 (the HMAC on a third lane of its
            own). None picks 2 when :func:`available_cpus` is at least 2,
            else 1.
        verify_plaintext: hash the plaintext and refuse a blob that does not
            hash to the digest its descriptor names. False trusts the
            registry, which checked the digest when the blob was pushed, and
            saves one sha256 pass over the layer; decryption still enforces
            the digest (docs/decisions/0010).
    """

    part_size: int = 16 * MiB
    workers: int = 4
    lanes: int | None = None
    verify_plaintext: bool = True

    def __post_init__(self) -> None:
        if self.part_size < MIN_PART_SIZE:
            raise ValueError(
                f"part_size: expected at least {MIN_PART_SIZE} bytes (S3's minimum "
                f"part), got {self.part_size}"
            )
        if self.workers < 1:
            raise ValueError(f"workers: expected at least 1, got {self.workers}")
        if self.lanes not in (None, 1, 2, 3):
            raise ValueError(f"lanes: expected 1, 2, 3 or None, got {self.lanes}")

    @property
    def hash_lanes(self) -> int:
        """The lanes in use: :attr:`lanes`, or the automatic choice."""
        if self.lanes is not None:
            return self.lanes
        return 2 if available_cpus() >= 2 else 1

    @property
    def buffers(self) -> int:
        """Part buffers in the pool: GETs, uploads, and two parts in the lanes."""
        return 2 * self.workers + 2

    def part_size_for(self, size: int) -> int:
        """The part size for a layer of ``size`` bytes (at most 10,000 parts)."""
        if size <= self.part_size * MAX_PARTS:
            return self.part_size
        return math.ceil(size / MAX_PARTS / MiB) * MiB

    def memory_bound(self, size: int) -> int:
        """The most layer data the engine holds at once for ``size`` bytes."""
        part_size = self.part_size_for(size)
        if size <= part_size:
            return 2 * size  # plaintext and ciphertext of the one part
        parts = math.ceil(size / part_size)
        return min(parts, self.buffers) * part_size


LAMBDA_MB_PER_VCPU = 1769
"""Lambda gives a function the equivalent of one vCPU at 1,769 MB."""


def available_cpus() -> float:
    """CPUs this process may use: affinity, cgroup quota and Lambda's share.

    Lambda sizes the CPU share by the function's memory
    (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``), whatever the number of CPUs the
    sandbox shows.
    """
    cpus = float(len(os.sched_getaffinity(0)))
    try:
        with open("/sys/fs/cgroup/cpu.max") as file:
            quota, period = file.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory.isdigit():
        cpus = min(cpus, int(memory) / LAMBDA_MB_PER_VCPU)
    return cpus


def encrypt_blob(
    store: BlobStore,
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
        The ciphertext digest, HMAC and plaintext digest.

    The caller has checked that the source holds exactly ``size`` bytes; a
    short read still fails here.

    Raises:
        StorageError: a part came back short, or S3 failed; a staged upload
            is aborted or deleted.
        IntegrityError: the plaintext does not hash to ``options.digest``;
            nothing is written.
    """
    settings = settings or StreamSettings()
    encryptor = LayerEncryptor(options, verify_plaintext=settings.verify_plaintext)
    part_size = settings.part_size_for(size)
    if size <= part_size:
        plaintext = store.read_range(source_key, 0, size)
        ciphertext = bytearray(size)
        encryptor.update_into(plaintext, ciphertext)
        del plaintext
        layer = encryptor.finalize()
        key = blob_key(layer.digest)
        if not store.exists(key):
            store.put(key, bytes(ciphertext))
        return layer

    staging = f"{staging_prefix}{uuid.uuid4()}"
    upload = store.start_multipart(staging)
    try:
        _Pipeline(store, source_key, size, encryptor, upload, part_size, settings).run()
        layer = encryptor.finalize()
        upload.complete()
    except BaseException:
        upload.abort()
        raise
    try:
        key = blob_key(layer.digest)
        if not store.exists(key):
            store.copy(staging, key, size)
    finally:
        store.delete(staging)
    logger.debug(
        "streamed %s (%d bytes, %d parts) to %s",
        source_key,
        size,
        math.ceil(size / part_size),
        key,
    )
    return layer


def encrypt_in_order(
    store: BlobStore,
    source_key: str,
    size: int,
    options: PrivateOptions,
    sink: PartSink,
    settings: StreamSettings | None = None,
) -> EncryptedLayer:
    """Encrypt the object at ``source_key`` into ``sink``, one part at a time.

    Parts are still fetched ``workers`` at once and hashed on the lanes, but
    handed to the sink by a single thread, in part order, with the same
    bounded buffer pool as :func:`encrypt_blob`.

    Returns:
        The ciphertext digest, HMAC and plaintext digest.

    Raises:
        IntegrityError: the plaintext does not hash to ``options.digest``
            (after the sink got every part: the caller must not commit).
    """
    settings = settings or StreamSettings()
    encryptor = LayerEncryptor(options, verify_plaintext=settings.verify_plaintext)
    part_size = settings.part_size_for(size)
    upload = _SinkUpload(sink)
    pipeline = _Pipeline(
        store, source_key, size, encryptor, upload, part_size, settings
    )
    upload.stopped = pipeline.failed
    pipeline.run()
    return encryptor.finalize()


class _SinkUpload:
    """A :class:`PartSink` seen as a :class:`PartUpload` by the pipeline.

    The pipeline hands parts on in part order, but from callbacks on two
    lanes, so two neighbours can reach the upload threads swapped; each
    part waits here for its turn, and the sink sees one part at a time.
    """

    def __init__(self, sink: PartSink) -> None:
        self.sink = sink
        self.stopped: Callable[[], bool] = lambda: False
        self._next = 1
        self._failed = False
        self._turn = threading.Condition()

    def upload_part(self, number: int, data: bytes | bytearray | memoryview) -> None:
        with self._turn:
            # A part that never comes (its GET failed) must not keep the
            # others waiting: the pipeline's failure ends the wait.
            while self._next != number:
                if self._failed or self.stopped():
                    raise _Stopped()
                self._turn.wait(0.05)
        try:
            self.sink.upload_part(number, data)
        except BaseException:
            with self._turn:
                self._failed = True
                self._turn.notify_all()
            raise
        with self._turn:
            self._next = number + 1
            self._turn.notify_all()

    def complete(self) -> None:
        """The caller finishes its own upload."""

    def abort(self) -> None:
        """The caller cancels its own upload."""


class _Stopped(Exception):
    """The pipeline stopped because some thread failed first."""


@dataclass(frozen=True)
class _Part:
    number: int
    start: int
    buffer: bytearray
    view: memoryview

    @property
    def body(self) -> bytearray | memoryview:
        """What to upload: the whole buffer when the part fills it (no copy)."""
        return self.buffer if len(self.view) == len(self.buffer) else self.view


class _Pipeline:
    """One large layer's trip through the threads of the module docstring.

    The coordinator (the caller of :meth:`run`) only takes a buffer from the
    pool for each part in turn and schedules its GET; that blocks while every
    buffer is in use, which is the back pressure. Everything else happens in
    callbacks: a finished GET hands its part to the cipher lane, strictly in
    part order; the cipher lane hands slices to the MAC and digest lanes; the
    last slice of a part schedules its upload; a finished upload returns the
    buffer.
    """

    def __init__(
        self,
        store: BlobStore,
        source_key: str,
        size: int,
        encryptor: LayerEncryptor,
        upload: PartUpload,
        part_size: int,
        settings: StreamSettings,
    ) -> None:
        self._store = store
        self._source_key = source_key
        self._size = size
        self._encryptor = encryptor
        self._upload = upload
        self._part_size = part_size
        self._parts = math.ceil(size / part_size)
        self._max_buffers = min(settings.buffers, self._parts)
        self._keep = settings.buffers

        self._cond = threading.Condition()
        self._failure: BaseException | None = None
        self._free: list[bytearray] = []
        self._owned: list[bytearray] = []
        self._fetched: dict[int, _Part] = {}
        self._next_to_encrypt = 1
        self._uploaded = 0

        workers = settings.workers
        self._lanes = settings.hash_lanes
        self._getters = ThreadPoolExecutor(workers, "regseal-get")
        self._putters = ThreadPoolExecutor(workers, "regseal-put")
        self._cipher_lane = ThreadPoolExecutor(1, "regseal-aes")
        self._mac_lane = ThreadPoolExecutor(1, "regseal-hmac")
        self._digest_lane = ThreadPoolExecutor(1, "regseal-sha")

    def failed(self) -> bool:
        """Whether some thread of the pipeline has failed."""
        return self._failure is not None

    # -- the coordinator -----------------------------------------------------

    def run(self) -> None:
        """Stream every part; returns once every part is uploaded.

        Raises:
            BaseException: the first failure of any thread.
        """
        try:
            self._stream()
        except BaseException as exc:
            if not isinstance(exc, _Stopped):
                self._fail(exc)
            self._close(cancel=True)
            assert self._failure is not None
            raise self._failure from None
        self._close(cancel=False)

    def _close(self, *, cancel: bool) -> None:
        # GETs first (a finished GET feeds the cipher lane), then the lanes
        # in the order they feed each other, then the uploads; each waits for
        # the work already running.
        for executor in (
            self._getters,
            self._cipher_lane,
            self._mac_lane,
            self._digest_lane,
            self._putters,
        ):
            executor.shutdown(wait=True, cancel_futures=cancel)
        # Every thread has stopped: the buffers are free for the next layer.
        _SPARE.give(self._part_size, self._owned, self._keep)

    def _stream(self) -> None:
        for index, start in enumerate(range(0, self._size, self._part_size)):
            buffer = self._take_buffer()
            length = min(self._part_size, self._size - start)
            part = _Part(index + 1, start, buffer, memoryview(buffer)[:length])
            self._getters.submit(self._fetch, part)
        with self._cond:
            while self._uploaded < self._parts and self._failure is None:
                self._cond.wait()
            if self._failure is not None:
                raise _Stopped()

    # -- GETs, in any order; encryption in part order ------------------------

    def _fetch(self, part: _Part) -> None:
        try:
            if self._failure is None:
                self._store.read_range_into(self._source_key, part.start, part.view)
        except BaseException as exc:
            self._fail(exc)
        with self._cond:
            if self._failure is not None:
                return
            self._fetched[part.number] = part
            # Hand on every part that is now next in line (the lane queues
            # them in the order they are submitted, which is part order).
            while self._next_to_encrypt in self._fetched:
                ready = self._fetched.pop(self._next_to_encrypt)
                self._next_to_encrypt += 1
                self._submit(self._cipher_lane, self._encrypt, ready)

    def _encrypt(self, part: _Part) -> None:
        """On the cipher lane: hash, encrypt in place, hand slices on."""
        if self._failure is not None:
            return
        encryptor = self._encryptor
        if self._lanes == 1:
            try:
                # Every step, cache-sized slice by slice, in place.
                encryptor.update_into(part.view, part.view)
            except BaseException as exc:
                self._fail(exc)
                return
            self._send(part, None)
            return
        verify = encryptor.verify_plaintext
        mac_here = self._lanes == 2
        futures: list[Future[None]] = []
        try:
            for start in range(0, len(part.view), SLICE):
                piece = part.view[start : start + SLICE]
                # The plaintext is hashed before AES overwrites it.
                if verify:
                    encryptor.hash_plaintext(piece)
                encryptor.encrypt_into(piece, piece)
                futures = [
                    self._digest_lane.submit(
                        self._guard, encryptor.hash_ciphertext, piece
                    )
                ]
                if mac_here:
                    # While the digest lane reads the slice on another core,
                    # the HMAC reads it here, still in this core's cache.
                    encryptor.mac_ciphertext(piece)
                else:
                    futures.append(
                        self._mac_lane.submit(
                            self._guard, encryptor.mac_ciphertext, piece
                        )
                    )
        except BaseException as exc:
            self._fail(exc)
            return
        # The lanes keep blob order: once the part's last slice is MACed and
        # hashed, so is the whole part, and its buffer may leave.
        _when_done(futures, lambda failed: self._send(part, failed))

    def _guard(self, step: Callable[[memoryview], None], piece: memoryview) -> None:
        """Run one lane step; a failure stops the whole pipeline."""
        try:
            step(piece)
        except BaseException as exc:
            self._fail(exc)
            raise

    # -- uploads -------------------------------------------------------------

    def _send(self, part: _Part, failed: BaseException | None) -> None:
        if failed is not None:
            self._fail(failed)
        if self._failure is None:
            self._submit(self._putters, self._put, part)

    def _put(self, part: _Part) -> None:
        try:
            if self._failure is None:
                self._upload.upload_part(part.number, part.body)
        except BaseException as exc:
            self._fail(exc)
            return
        with self._cond:
            self._uploaded += 1
            self._free.append(part.buffer)
            self._cond.notify_all()

    # -- buffers -------------------------------------------------------------

    def _take_buffer(self) -> bytearray:
        with self._cond:
            while (
                not self._free
                and len(self._owned) >= self._max_buffers
                and self._failure is None
            ):
                self._cond.wait()
            if self._failure is not None:
                raise _Stopped()
            if self._free:
                return self._free.pop()
            buffer = _SPARE.take(self._part_size) or bytearray(self._part_size)
            self._owned.append(buffer)
            return buffer

    # -- failure and shutdown ------------------------------------------------

    def _submit(
        self, executor: ThreadPoolExecutor, task: Callable[[_Part], None], part: _Part
    ) -> None:
        try:
            executor.submit(task, part)
        except RuntimeError as exc:  # shut down after another failure
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            if self._failure is None:
                self._failure = exc
                logger.debug("layer stream of %s failed", self._source_key)
            self._cond.notify_all()


class _SparePool:
    """Part buffers kept between layers, so that each layer of an image does
    not pay again for fresh memory: faulting in the 160 MiB of a default
    pool costs about 60 ms of CPU here, a fifth of sealing a 20 MiB layer.
    At most one pipeline's worth is kept, of one part size."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: dict[int, list[bytearray]] = {}

    def take(self, size: int) -> bytearray | None:
        with self._lock:
            buffers = self._spare.get(size)
            return buffers.pop() if buffers else None

    def give(self, size: int, buffers: list[bytearray], keep: int) -> None:
        with self._lock:
            spare = self._spare.setdefault(size, [])
            spare.extend(buffers)
            del spare[: max(0, len(spare) - keep)]  # drop the oldest
            # Keep one part size only: a new size replaces the old buffers.
            for other in [k for k in self._spare if k != size]:
                del self._spare[other]


_SPARE = _SparePool()


def _when_done(
    futures: Iterable[Future[None]], then: Callable[[BaseException | None], None]
) -> None:
    """Call ``then`` once every future is done, with the first failure if any."""
    pending = list(futures)
    lock = threading.Lock()
    remaining = [len(pending)]
    failures: list[BaseException] = []

    def done(future: Future[None]) -> None:
        exc = _Stopped("cancelled") if future.cancelled() else future.exception()
        with lock:
            if exc is not None:
                failures.append(exc)
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            then(failures[0] if failures else None)

    for future in pending:
        future.add_done_callback(done)
