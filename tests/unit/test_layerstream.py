"""The layer engine against a file-backed store: round trips, failures, memory."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from regseal.digest import Digest
from regseal.errors import IntegrityError, StorageError
from regseal.layerstream import (
    MIN_PART_SIZE,
    StreamSettings,
    available_cpus,
    encrypt_blob,
)
from regseal.ocicrypt import (
    LayerEncryptor,
    PrivateOptions,
    PublicOptions,
    decrypt_layer,
)
from tests.support.filestore import FileStore, FileUpload

PART = MIN_PART_SIZE
STAGING = "regseal/staging/"


def blob_key(digest: Digest) -> str:
    return f"blobs/sha256/{digest.hex}/data"


def source(store: FileStore, data: bytes) -> Digest:
    store.put("plain", data)
    return Digest.of(data)


def decrypt(store: FileStore, key: str, layer, options: PrivateOptions) -> bytes:
    def open_blob():
        size = store.size(key)
        for start in range(0, size, 3 * 1024 * 1024):
            yield store.read_range(key, start, min(start + 3 * 1024 * 1024, size))

    plaintext = decrypt_layer(
        open_blob,
        PublicOptions(layer.hmac),
        options,
        expected_digest=layer.digest,
        expected_size=layer.size,
        enforce_plaintext_digest=True,
    )
    return b"".join(plaintext)


@pytest.fixture
def store(tmp_path):
    store = FileStore(tmp_path / "bucket")
    yield store
    store.close()


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_multipart_layer_round_trips_through_the_codec(store, lanes):
    data = os.urandom(5 * PART + 12345)
    options = PrivateOptions.generate(source(store, data))
    settings = StreamSettings(PART, 2, lanes)

    layer = encrypt_blob(
        store, "plain", len(data), options, blob_key, STAGING, settings
    )

    requests = dict(store.requests)
    key = blob_key(layer.digest)
    assert store.keys() == sorted(["plain", key])
    assert Digest.of(store.get_bytes(key)) == layer.digest
    assert layer.plaintext_digest == Digest.of(data)
    assert layer.size == len(data)
    assert decrypt(store, key, layer, options) == data
    assert requests == {
        "PutObject": 1,  # the source
        "CreateMultipartUpload": 1,
        "GetObject": 6,
        "UploadPart": 6,
        "CompleteMultipartUpload": 1,
        "HeadObject": 1,
        "CopyObject": 1,
        "DeleteObject": 1,
    }


def test_layer_of_exactly_two_parts_has_two_full_parts(store):
    data = os.urandom(2 * PART)
    options = PrivateOptions.generate(source(store, data))

    layer = encrypt_blob(
        store, "plain", len(data), options, blob_key, STAGING, StreamSettings(PART, 1)
    )

    assert store.requests["UploadPart"] == 2
    assert decrypt(store, blob_key(layer.digest), layer, options) == data


def test_small_layer_is_written_straight_to_its_key(store):
    data = os.urandom(PART - 1)
    options = PrivateOptions.generate(source(store, data))

    layer = encrypt_blob(store, "plain", len(data), options, blob_key, STAGING)

    assert store.keys() == sorted(["plain", blob_key(layer.digest)])
    assert store.requests["CreateMultipartUpload"] == 0
    assert store.requests["PutObject"] == 2  # the source and the blob
    assert decrypt(store, blob_key(layer.digest), layer, options) == data


def test_existing_blob_is_not_copied_again(store):
    data = os.urandom(2 * PART + 1)
    options = PrivateOptions.generate(source(store, data))
    settings = StreamSettings(PART, 2)
    first = encrypt_blob(
        store, "plain", len(data), options, blob_key, STAGING, settings
    )

    again = encrypt_blob(
        store, "plain", len(data), options, blob_key, STAGING, settings
    )

    assert again == first
    assert store.requests["CopyObject"] == 1
    assert store.keys() == sorted(["plain", blob_key(first.digest)])


class FailingUpload(FileUpload):
    def upload_part(self, number, data):
        if number == self.store.fail_part:
            raise StorageError(f"injected failure of part {number}")
        super().upload_part(number, data)


class FailingStore(FileStore):
    def __init__(self, root, *, fail_part=None, fail_read_at=None):
        super().__init__(root)
        self.fail_part = fail_part
        self.fail_read_at = fail_read_at
        self.uploads: list[FailingUpload] = []

    def start_multipart(self, key):
        self._count("CreateMultipartUpload")
        upload = FailingUpload(self, key)
        self.uploads.append(upload)
        return upload

    def read_range_into(self, key, start, out):
        if start == self.fail_read_at:
            raise StorageError(f"injected failure of the read at {start}")
        super().read_range_into(key, start, out)


def test_upload_failure_mid_stream_aborts_and_leaves_nothing(tmp_path):
    store = FailingStore(tmp_path / "bucket", fail_part=3)
    data = os.urandom(8 * PART)
    options = PrivateOptions.generate(source(store, data))

    with pytest.raises(StorageError, match="injected failure of part 3"):
        encrypt_blob(
            store,
            "plain",
            len(data),
            options,
            blob_key,
            STAGING,
            StreamSettings(PART, 2),
        )

    assert [upload.state for upload in store.uploads] == ["aborted"]
    assert store.uploads[0].parts == {}
    assert store.requests["CompleteMultipartUpload"] == 0
    assert store.keys() == ["plain"]
    assert sorted(os.listdir(tmp_path / "bucket" / "data")) == [
        store._objects["plain"][0].path.name
    ]
    store.close()


def test_read_failure_mid_stream_aborts_and_leaves_nothing(tmp_path):
    store = FailingStore(tmp_path / "bucket", fail_read_at=4 * PART)
    data = os.urandom(8 * PART)
    options = PrivateOptions.generate(source(store, data))

    with pytest.raises(StorageError, match="injected failure of the read"):
        encrypt_blob(
            store,
            "plain",
            len(data),
            options,
            blob_key,
            STAGING,
            StreamSettings(PART, 2),
        )

    assert [upload.state for upload in store.uploads] == ["aborted"]
    assert store.keys() == ["plain"]
    store.close()


def test_plaintext_not_matching_its_digest_aborts_without_writing(store):
    data = os.urandom(3 * PART)
    store.put("plain", data)
    options = PrivateOptions.generate(Digest.of(b"another blob"))

    with pytest.raises(IntegrityError):
        encrypt_blob(
            store,
            "plain",
            len(data),
            options,
            blob_key,
            STAGING,
            StreamSettings(PART, 2),
        )

    assert store.keys() == ["plain"]
    assert store.requests["CompleteMultipartUpload"] == 0
    assert store.requests["AbortMultipartUpload"] == 1


@pytest.mark.parametrize("lanes", [1, 2, 3])
@pytest.mark.parametrize("size", [PART - 1, 3 * PART + 5], ids=["one-part", "parts"])
def test_trusting_stream_seals_a_changed_blob_that_decryption_refuses(
    store, monkeypatch, lanes, size
):
    data = os.urandom(size)
    store.put("plain", data)
    options = PrivateOptions.generate(Digest.of(b"the blob the manifest names"))
    hashed = []
    original = LayerEncryptor.hash_plaintext
    monkeypatch.setattr(
        LayerEncryptor,
        "hash_plaintext",
        lambda self, chunk: hashed.append(len(chunk)) or original(self, chunk),
    )
    settings = StreamSettings(PART, 2, lanes, verify_plaintext=False)

    layer = encrypt_blob(store, "plain", size, options, blob_key, STAGING, settings)

    assert hashed == []
    assert layer.plaintext_digest == options.digest
    assert layer.plaintext_verified is False
    key = blob_key(layer.digest)
    assert store.keys() == sorted(["plain", key])
    with pytest.raises(IntegrityError):
        decrypt(store, key, layer, options)


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_verifying_stream_hashes_every_plaintext_byte_once(store, monkeypatch, lanes):
    data = os.urandom(3 * PART + 5)
    options = PrivateOptions.generate(source(store, data))
    hashed = []
    original = LayerEncryptor.hash_plaintext
    monkeypatch.setattr(
        LayerEncryptor,
        "hash_plaintext",
        lambda self, chunk: hashed.append(len(chunk)) or original(self, chunk),
    )

    layer = encrypt_blob(
        store,
        "plain",
        len(data),
        options,
        blob_key,
        STAGING,
        StreamSettings(PART, 2, lanes),
    )

    assert sum(hashed) == len(data)
    assert layer.plaintext_verified is True
    assert decrypt(store, blob_key(layer.digest), layer, options) == data


def test_short_source_fails_and_aborts(store):
    data = os.urandom(3 * PART)
    options = PrivateOptions.generate(source(store, data))

    with pytest.raises(StorageError, match="expected"):
        encrypt_blob(
            store,
            "plain",
            len(data) + PART,
            options,
            blob_key,
            STAGING,
            StreamSettings(PART, 2),
        )

    assert store.keys() == ["plain"]
    assert store.requests["AbortMultipartUpload"] == 1


class CountingStore(FileStore):
    """Counts part buffers, parts in flight and concurrent requests.

    Uploads are slow, so the engine backs up behind them: an unbounded
    engine would read ahead and allocate a buffer for every part.
    """

    def __init__(self, root):
        super().__init__(root)
        self.lock = threading.Lock()
        self.buffers: dict[int, object] = {}  # keeps them alive: ids stay unique
        self.reads = self.peak_reads = 0
        self.uploads = self.peak_uploads = 0
        self.in_flight = self.peak_in_flight = 0
        self.reused = 0

    def _bump(self, name, delta):
        with self.lock:
            value = getattr(self, name) + delta
            setattr(self, name, value)
            if value > getattr(self, "peak_" + name):
                setattr(self, "peak_" + name, value)

    def read_range_into(self, key, start, out):
        with self.lock:
            owner = id(out.obj)
            self.reused += owner in self.buffers
            self.buffers[owner] = out.obj
        self._bump("in_flight", 1)  # a part is in flight from GET to upload
        self._bump("reads", 1)
        try:
            super().read_range_into(key, start, out)
        finally:
            self._bump("reads", -1)

    def start_multipart(self, key):
        self._count("CreateMultipartUpload")
        return CountingUpload(self, key)


class CountingUpload(FileUpload):
    def upload_part(self, number, data):
        store = self.store
        owner = id(data.obj if isinstance(data, memoryview) else data)
        with store.lock:
            assert owner in store.buffers, "uploads a buffer the GETs never filled"
        store._bump("uploads", 1)
        try:
            time.sleep(0.01)
            super().upload_part(number, data)
        finally:
            store._bump("uploads", -1)
            store._bump("in_flight", -1)


@pytest.mark.parametrize(("workers", "lanes"), [(1, 3), (3, 2), (2, 1)])
def test_memory_stays_bounded_for_a_layer_of_many_parts(tmp_path, workers, lanes):
    store = CountingStore(tmp_path / "bucket")
    size = 12 * PART + 1
    data = os.urandom(size)
    options = PrivateOptions.generate(source(store, data))
    settings = StreamSettings(PART, workers, lanes)
    del data

    layer = encrypt_blob(store, "plain", size, options, blob_key, STAGING, settings)

    assert store.requests["UploadPart"] == 13
    # Every part's data lived in one of at most 2 * workers + 2 buffers,
    # allocated once and reused by later parts.
    assert settings.buffers == 2 * workers + 2
    assert 1 <= len(store.buffers) <= settings.buffers
    assert store.reused == 13 - len(store.buffers)
    assert 1 <= store.peak_in_flight <= settings.buffers
    assert 1 <= store.peak_reads <= workers
    assert 1 <= store.peak_uploads <= workers
    assert store.in_flight == 0
    assert settings.memory_bound(size) == settings.buffers * PART
    assert Digest.of(store.get_bytes(blob_key(layer.digest))) == layer.digest
    store.close()


def test_part_size_grows_for_layers_beyond_ten_thousand_parts():
    settings = StreamSettings(PART, 4)

    assert settings.part_size_for(10_000 * PART) == PART
    grown = settings.part_size_for(10_000 * PART + 1)
    assert grown == 6 * 1024 * 1024
    assert -(-(10_000 * PART + 1) // grown) <= 10_000


@pytest.mark.parametrize(
    ("part_size", "workers", "lanes", "message"),
    [
        (PART - 1, 1, None, "part_size"),
        (PART, 0, None, "workers"),
        (PART, 1, 4, "lanes"),
    ],
)
def test_stream_settings_reject_bad_values(part_size, workers, lanes, message):
    with pytest.raises(ValueError, match=message):
        StreamSettings(part_size, workers, lanes)


@pytest.mark.parametrize(("memory_mb", "lanes"), [("1769", 1), ("10240", None)])
def test_lambda_memory_size_caps_the_cpus_and_picks_the_lanes(
    monkeypatch, memory_mb, lanes
):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb)
    cpus = available_cpus()

    assert cpus <= int(memory_mb) / 1769
    expected = lanes if lanes is not None else (2 if cpus >= 2 else 1)
    assert StreamSettings().hash_lanes == expected
    assert StreamSettings(lanes=3).hash_lanes == 3


def test_ciphertext_is_identical_to_the_single_threaded_codec(store):
    data = os.urandom(3 * PART + 77)
    options = PrivateOptions.generate(source(store, data))

    layer = encrypt_blob(
        store, "plain", len(data), options, blob_key, STAGING, StreamSettings(PART, 3)
    )

    reference = LayerEncryptor(options)
    expected = reference.update(data)
    assert reference.finalize() == layer
    stored = store.get_bytes(blob_key(layer.digest))
    assert hashlib.sha256(stored).digest() == hashlib.sha256(expected).digest()


@pytest.mark.parametrize(
    ("step", "lanes"),
    [
        ("hash_ciphertext", 3),
        ("mac_ciphertext", 3),
        ("encrypt_into", 3),
        ("hash_ciphertext", 2),
        ("mac_ciphertext", 2),
        ("mac_ciphertext", 1),
    ],
)
def test_failure_on_a_lane_stops_the_stream_and_aborts(store, monkeypatch, step, lanes):
    data = os.urandom(6 * PART)
    options = PrivateOptions.generate(source(store, data))
    original = getattr(LayerEncryptor, step)
    calls = []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError(f"injected failure in {step}")
        return original(self, *args)

    monkeypatch.setattr(LayerEncryptor, step, failing)

    with pytest.raises(RuntimeError, match=f"injected failure in {step}"):
        encrypt_blob(
            store,
            "plain",
            len(data),
            options,
            blob_key,
            STAGING,
            StreamSettings(PART, 2, lanes),
        )

    assert store.keys() == ["plain"]
    assert store.requests["AbortMultipartUpload"] == 1
    assert store.requests["CompleteMultipartUpload"] == 0


def test_next_layer_reuses_the_part_buffers_of_the_last(tmp_path):
    store = CountingStore(tmp_path / "bucket")
    settings = StreamSettings(PART, 1)
    first, second = os.urandom(6 * PART), os.urandom(6 * PART)
    store.put("one", first)
    store.put("two", second)

    encrypt_blob(
        store,
        "one",
        len(first),
        PrivateOptions.generate(Digest.of(first)),
        blob_key,
        STAGING,
        settings,
    )
    used_first = set(store.buffers)
    store.buffers.clear()
    encrypt_blob(
        store,
        "two",
        len(second),
        PrivateOptions.generate(Digest.of(second)),
        blob_key,
        STAGING,
        settings,
    )

    assert len(used_first) == settings.buffers
    assert set(store.buffers) == used_first
    store.close()
