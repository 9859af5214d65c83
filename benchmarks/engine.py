"""The seal engine's throughput, and the hashing bound it is held against.

- :func:`engine_throughput` streams a layer through
  :func:`regseal.layerstream.encrypt_blob` on a :class:`FileStore`, which
  costs about what a socket costs (one copy per direction) and nothing for
  what S3 does server side.
- :func:`hashing_bounds` runs the same cryptographic work on data already in
  memory, in several thread arrangements, and keeps the best: no store, no
  pipeline, just AES and the hashes on this machine's cores.
- :func:`engine_on_moto_server` streams through boto3 against moto's server
  on loopback: the whole client stack, but moto's Python request handling
  shares the same two cores, so it says more about moto than about S3.
"""

from __future__ import annotations

import hashlib
import os
import queue
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from tests.support.filestore import FileStore

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

from benchmarks.data import LayerFile, MiB
from regseal.digest import Digest
from regseal.layerstream import StreamSettings, encrypt_blob
from regseal.local.motoserver import start_moto
from regseal.ocicrypt import PrivateOptions
from regseal.storage import ObjectStore


@dataclass(frozen=True)
class Run:
    """The best of several timed runs."""

    seconds: float
    cpu_seconds: float
    size: int
    runs: int

    @property
    def mib_per_s(self) -> float:
        return self.size / MiB / self.seconds

    @property
    def cores(self) -> float:
        """Average cores busy during the best run."""
        return self.cpu_seconds / self.seconds


def faster(best: Run | None, run: Run) -> Run:
    """The faster of two runs of the same work, counting both."""
    if best is None:
        return run
    winner = run if run.seconds < best.seconds else best
    return Run(winner.seconds, winner.cpu_seconds, winner.size, best.runs + run.runs)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def best_of(repeat: int, size: int, work: Callable[[], None]) -> Run:
    """Time ``work`` ``repeat`` times; keep the fastest run."""
    best: tuple[float, float] | None = None
    for _ in range(repeat):
        cpu, start = _cpu(), time.perf_counter()
        work()
        elapsed, used = time.perf_counter() - start, _cpu() - cpu
        if best is None or elapsed < best[0]:
            best = (elapsed, used)
    assert best is not None
    return Run(best[0], best[1], size, repeat)


def _blob_key(digest: Digest) -> str:
    return f"blobs/sha256/{digest.hex[:2]}/{digest.hex}/data"


def engine_throughput(
    layer: LayerFile, root: Path, settings: StreamSettings, repeat: int
) -> Run:
    """Seal ``layer`` from a file store into the same store, best of ``repeat``."""
    store = FileStore(root)
    store.add_file("plain", layer.path, layer.size)

    def seal() -> None:
        options = PrivateOptions.generate(layer.digest)
        sealed = encrypt_blob(
            store, "plain", layer.size, options, _blob_key, "staging/", settings
        )
        store.delete(_blob_key(sealed.digest))

    try:
        return best_of(repeat, layer.size, seal)
    finally:
        store.close()


# --------------------------------------------------------------------------
# The hashing bound

WINDOW = 64 * MiB
CHUNK = 16 * MiB
SLICE_SINGLE = 256 * 1024
SLICE_LANES = 1 * MiB


class _Work:
    """``size`` bytes of AES and hashing over a 64 MiB window of the layer."""

    def __init__(self, layer: LayerFile, size: int) -> None:
        window = min(WINDOW, layer.size)
        chunks = []
        for data in layer.chunks(CHUNK):
            chunks.append(bytearray(data))
            if sum(len(c) for c in chunks) >= window:
                break
        self.sources = chunks
        self.targets = [bytearray(len(c)) for c in chunks]
        self.size = size
        self.key = os.urandom(32)
        self.nonce = os.urandom(16)

    def plan(self) -> list[tuple[memoryview, memoryview]]:
        pairs = []
        done = 0
        index = 0
        while done < self.size:
            source = self.sources[index % len(self.sources)]
            n = min(len(source), self.size - done)
            target = self.targets[index % len(self.targets)]
            pairs.append((memoryview(source)[:n], memoryview(target)[:n]))
            done += n
            index += 1
        return pairs

    def cipher(self) -> Callable[[memoryview, memoryview], int]:
        context = Cipher(algorithms.AES(self.key), modes.CTR(self.nonce)).encryptor()
        return context.update_into

    def mac(self) -> Callable[[memoryview], None]:
        return hmac.HMAC(self.key, hashes.SHA256()).update


def _single_thread(work: _Work, plaintext_hash: bool) -> None:
    encrypt, mac = work.cipher(), work.mac()
    digest, plain = hashlib.sha256(), hashlib.sha256()
    for source, target in work.plan():
        for start in range(0, len(source), SLICE_SINGLE):
            piece, out = source[start : start + SLICE_SINGLE], target[start:]
            out = out[: len(piece)]
            if plaintext_hash:
                plain.update(piece)
            encrypt(piece, out)
            mac(out)
            digest.update(out)


def _lanes(
    work: _Work, plaintext_hash: bool, mac_with_aes: bool, plain_with_aes: bool
) -> None:
    """AES on this thread; each hash on a thread of its own, or here with AES.

    ``mac_with_aes`` keeps the HMAC on this thread, ``plain_with_aes`` the
    plaintext sha256 (hashed before AES overwrites the slice, as the engine
    does); the ciphertext sha256 always has a thread of its own.
    """
    encrypt, mac = work.cipher(), work.mac()
    digest, plain = hashlib.sha256(), hashlib.sha256()
    lanes: list[tuple[queue.SimpleQueue[memoryview | None], Callable[..., object]]] = [
        (queue.SimpleQueue(), digest.update)
    ]
    if not mac_with_aes:
        lanes.append((queue.SimpleQueue(), mac))
    plain_lane = plaintext_hash and not plain_with_aes
    if plain_lane:
        lanes.append((queue.SimpleQueue(), plain.update))

    def drain(
        q: queue.SimpleQueue[memoryview | None], feed: Callable[..., object]
    ) -> None:
        while (item := q.get()) is not None:
            feed(item)

    threads = [threading.Thread(target=drain, args=lane) for lane in lanes]
    for thread in threads:
        thread.start()
    to_digest = lanes[0][0]
    to_mac = None if mac_with_aes else lanes[1][0]
    to_plain = lanes[-1][0] if plain_lane else None
    plain_here = plaintext_hash and plain_with_aes
    for source, target in work.plan():
        if to_plain is not None:
            to_plain.put(source)
        for start in range(0, len(source), SLICE_LANES):
            piece = source[start : start + SLICE_LANES]
            out = target[start : start + len(piece)]
            if plain_here:
                plain.update(piece)
            encrypt(piece, out)
            if to_mac is None:
                mac(out)
            else:
                to_mac.put(out)
            to_digest.put(out)
    for q, _ in lanes:
        q.put(None)
    for thread in threads:
        thread.join()


ARRANGEMENTS: dict[str, Callable[[_Work, bool], None]] = {
    "1 thread, 256 KiB slices": _single_thread,
    "2 threads: AES+HMAC | sha256": lambda w, p: _lanes(
        w, p, mac_with_aes=True, plain_with_aes=True
    ),
    "a thread per hash, AES on the caller": lambda w, p: _lanes(
        w, p, mac_with_aes=False, plain_with_aes=False
    ),
}
"""The thread arrangements of the bound; with the plaintext hash, the two
thread one hashes the plaintext on the AES thread (the engine's two lanes)."""


def hashing_bounds(
    layer: LayerFile, size: int, repeat: int, *, plaintext_hash: bool
) -> dict[str, Run]:
    """Throughput of AES + HMAC + sha256 (and, if asked, a plaintext sha256)
    over ``size`` bytes in memory, per thread arrangement."""
    work = _Work(layer, size)
    results = {}
    for name, arrangement in ARRANGEMENTS.items():

        def run(arrangement: Callable[[_Work, bool], None] = arrangement) -> None:
            arrangement(work, plaintext_hash)

        results[name] = best_of(repeat, size, run)
    return results


# --------------------------------------------------------------------------
# Through moto's server


def engine_on_moto_server(
    layer: LayerFile, workdir: Path, settings: StreamSettings
) -> tuple[Run, dict[str, int]]:
    """Upload ``layer`` to moto's server, then time one seal through boto3.

    Returns:
        The timed run and the S3 requests the seal made, by operation.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cancel = threading.Event()
    process, endpoint = start_moto(workdir=workdir, cancel=cancel)
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(max_pool_connections=4 * settings.workers + 4),
        )
        client.create_bucket(Bucket="bench")
        upload = client.create_multipart_upload(Bucket="bench", Key="plain")
        parts: list[CompletedPartTypeDef] = []
        for number, chunk in enumerate(layer.chunks(64 * MiB), 1):
            reply = client.upload_part(
                Bucket="bench",
                Key="plain",
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=chunk,
            )
            parts.append({"PartNumber": number, "ETag": reply["ETag"]})
        client.complete_multipart_upload(
            Bucket="bench",
            Key="plain",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},
        )
        store = ObjectStore(client, "bench")
        options = PrivateOptions.generate(layer.digest)

        def seal() -> None:
            encrypt_blob(
                store, "plain", layer.size, options, _blob_key, "staging/", settings
            )

        run = best_of(1, layer.size, seal)
        return run, dict(store.requests)
    finally:
        cancel.set()
        process.stop()
