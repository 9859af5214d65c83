"""The layer engine on moto's S3: multipart round trip and failures mid-stream."""

from __future__ import annotations

import os

import boto3
import pytest

from regseal.digest import Digest
from regseal.errors import StorageError
from regseal.layerstream import MIN_PART_SIZE, StreamSettings, encrypt_blob
from regseal.ocicrypt import PrivateOptions, PublicOptions, decrypt_layer
from regseal.storage import ObjectStore

BUCKET = "layers"
STAGING = "regseal/staging/"
PART = MIN_PART_SIZE


def blob_key(digest: Digest) -> str:
    return f"docker/registry/v2/blobs/sha256/{digest.hex[:2]}/{digest.hex}/data"


@pytest.fixture
def s3(aws):
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def keys(s3) -> list[str]:
    reply = s3.list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in reply.get("Contents", []))


def open_uploads(s3) -> list[str]:
    return [
        u["Key"] for u in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    ]


def fail_call(s3, operation: str, nth: int) -> list[int]:
    """Make the ``nth`` call of ``operation`` fail as S3 would with a 500."""
    calls = [0]

    def handler(**_kwargs):
        calls[0] += 1
        if calls[0] != nth:
            return None
        error = {"Error": {"Code": "InternalError", "Message": "injected"}}
        return _Http500(), {**error, "ResponseMetadata": {"HTTPStatusCode": 500}}

    s3.meta.events.register(f"before-call.s3.{operation}", handler)
    return calls


class _Http500:
    status_code = 500
    headers: dict[str, str] = {}  # noqa: RUF012
    content = b""


def test_multipart_layer_round_trips_on_s3(s3):
    data = os.urandom(3 * PART + 4321)
    s3.put_object(Bucket=BUCKET, Key="plain", Body=data)
    options = PrivateOptions.generate(Digest.of(data))
    store = ObjectStore(s3, BUCKET)

    layer = encrypt_blob(
        store, "plain", len(data), options, blob_key, STAGING, StreamSettings(PART, 2)
    )

    assert store.requests["UploadPart"] == 4
    assert keys(s3) == sorted(["plain", blob_key(layer.digest)])
    assert open_uploads(s3) == []
    stored = s3.get_object(Bucket=BUCKET, Key=blob_key(layer.digest))["Body"].read()
    assert Digest.of(stored) == layer.digest
    plaintext = decrypt_layer(
        lambda: [stored],
        PublicOptions(layer.hmac),
        options,
        expected_digest=layer.digest,
        expected_size=len(data),
        enforce_plaintext_digest=True,
    )
    assert b"".join(plaintext) == data


@pytest.mark.parametrize(
    ("operation", "nth"),
    [("UploadPart", 3), ("GetObject", 2), ("CompleteMultipartUpload", 1)],
)
def test_s3_failure_mid_stream_aborts_the_upload_and_stages_nothing(s3, operation, nth):
    data = os.urandom(6 * PART)
    s3.put_object(Bucket=BUCKET, Key="plain", Body=data)
    options = PrivateOptions.generate(Digest.of(data))
    store = ObjectStore(s3, BUCKET)
    calls = fail_call(s3, operation, nth)

    with pytest.raises(StorageError, match=f"{operation} failed with InternalError"):
        encrypt_blob(
            store,
            "plain",
            len(data),
            options,
            blob_key,
            STAGING,
            StreamSettings(PART, 2),
        )

    assert calls[0] >= nth
    assert store.requests["AbortMultipartUpload"] == 1
    assert open_uploads(s3) == []
    assert keys(s3) == ["plain"]


def test_failed_copy_still_deletes_the_staged_object(s3):
    data = os.urandom(2 * PART + 1)
    s3.put_object(Bucket=BUCKET, Key="plain", Body=data)
    options = PrivateOptions.generate(Digest.of(data))
    store = ObjectStore(s3, BUCKET)
    fail_call(s3, "CopyObject", 1)

    with pytest.raises(StorageError, match="CopyObject failed"):
        encrypt_blob(
            store,
            "plain",
            len(data),
            options,
            blob_key,
            STAGING,
            StreamSettings(PART, 2),
        )

    assert store.requests["CompleteMultipartUpload"] == 1
    assert open_uploads(s3) == []
    assert keys(s3) == ["plain"]
