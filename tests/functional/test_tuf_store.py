import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from tuf.api.exceptions import DownloadHTTPError, DownloadLengthMismatchError

from regseal.errors import NotFoundError, PreconditionFailedError, StorageError
from regseal.tuf.fetcher import S3Fetcher
from regseal.tuf.store import MetadataLocation, MetadataStore


@pytest.fixture
def store(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="meta")
        yield MetadataStore(s3, MetadataLocation("meta", "tuf/"))


def test_create_is_create_only(store):
    store.create("1.team-a.json", b"one")
    with pytest.raises(PreconditionFailedError, match="conditional write lost") as info:
        store.create("1.team-a.json", b"other")
    assert isinstance(info.value.__cause__, ClientError)
    store.forget_cache()
    assert store.get("1.team-a.json").data == b"one"


def test_replace_is_compare_and_swap(store):
    etag = store.create("timestamp.json", b"v1")
    newer = store.replace("timestamp.json", b"v2", etag)
    with pytest.raises(PreconditionFailedError):
        store.replace("timestamp.json", b"stale", etag)
    assert store.get("timestamp.json").data == b"v2"
    assert store.get("timestamp.json").etag == newer


def test_missing_file_is_not_found(store):
    with pytest.raises(NotFoundError, match=r"s3://meta/tuf/9\.root\.json") as info:
        store.get("9.root.json")
    assert isinstance(info.value.__cause__, ClientError)
    assert store.get_optional("9.root.json") is None


def test_other_s3_errors_are_storage_errors(store):
    other = MetadataStore(store.client, MetadataLocation("no-such-bucket", "tuf/"))
    with pytest.raises(StorageError, match="no-such-bucket") as info:
        other.create("1.root.json", b"x")
    assert isinstance(info.value.__cause__, ClientError)


def test_latest_version_probes_instead_of_listing(store):
    assert store.latest_version("team-a") is None
    for version in range(1, 38):
        store.create(f"{version}.team-a.json", b"x")
    fresh = MetadataStore(store.client, store.location)
    assert fresh.latest_version("team-a") == 37
    heads = fresh.stats().requests["HeadObject"]
    assert heads <= 2 * 6 + 2  # exponential probe then bisection: O(log n)
    assert "ListObjectsV2" not in fresh.stats().requests

    fresh.reset_stats()
    assert fresh.latest_version("team-a") == 37
    assert fresh.stats().requests == {"HeadObject": 1}


@pytest.mark.parametrize("name", ["../x.json", "0.root.json", "a/b.json", "root"])
def test_bad_metadata_names_are_refused(store, name):
    with pytest.raises(StorageError, match="expected a metadata file name"):
        store.get(name)


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://meta/tuf/", "meta", "tuf/"),
        ("s3://meta/a/b", "meta", "a/b/"),
        ("s3://meta", "meta", ""),
    ],
)
def test_location_parse(url, bucket, prefix):
    assert MetadataLocation.parse(url) == MetadataLocation(bucket, prefix)


@pytest.mark.parametrize("url", ["http://meta/tuf/", "s3:///tuf/", "s3://Bad_Bucket/"])
def test_location_parse_refuses_other_urls(url):
    with pytest.raises(StorageError):
        MetadataLocation.parse(url)


def test_s3_fetcher_reports_missing_objects_as_http_404(store):
    store.create("1.root.json", b"root bytes")
    fetcher = S3Fetcher(store.client)
    assert fetcher.download_bytes("s3://meta/tuf/1.root.json", 100) == b"root bytes"
    assert fetcher.bytes_fetched == len(b"root bytes")
    with pytest.raises(DownloadHTTPError) as info:
        fetcher.download_bytes("s3://meta/tuf/2.root.json", 100)
    assert info.value.status_code == 404
    with pytest.raises(DownloadLengthMismatchError):
        fetcher.download_bytes("s3://meta/tuf/1.root.json", 4)
