"""A TUF repository on moto for tests: bucket, KMS keys, offline key files, client.

``tuf_world`` starts in-process ``mock_aws`` with the two test-only moto fixes
(DIGEST signing, atomic conditional writes), creates a versioned bucket (so a
test can count how many times each key was written), ECC_NIST_P256 KMS keys for
snapshot, timestamp and teams, ed25519 key files for root and targets, and
initializes the repository.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from securesystemslib.signer import Signer
from tuf.ngclient import Updater

from regseal.tuf import admin
from regseal.tuf.fetcher import S3Fetcher
from regseal.tuf.publish import Publisher, RefreshResult
from regseal.tuf.settings import TufSettings
from regseal.tuf.signers import generate_key_file, load_signer
from regseal.tuf.store import MetadataLocation, MetadataStore
from regseal.tuf.targets import TargetCustom
from regseal.tuf.updates import TargetsWriter
from tests.support.moto_kms import kms_digest_signing
from tests.support.moto_s3 import atomic_conditional_writes

REGION = "us-east-1"
BUCKET = "regseal-test"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_aliases = itertools.count()


def no_sleep(_: float) -> None:
    """A sleep that does not wait (backoff in tests)."""


def manifest(n: int | str) -> bytes:
    """A small distinct 'sealed manifest'."""
    return (
        b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'",'
        b'"annotations":{"n":"' + str(n).encode() + b'"}}'
    )


def custom(**extra: Any) -> TargetCustom:
    """Typical custom fields of a sealed manifest."""
    return TargetCustom(
        media_type=OCI_MANIFEST,
        plaintext_digest="sha256:" + "ab" * 32,
        platforms=("linux/amd64",),
        kms_key="arn:aws:kms:us-east-1:123456789012:key/test",
        recipients=("jwe:test-recipient",),
        extra=extra,
    )


@dataclass
class World:
    """Everything a TUF test needs; see the module docstring."""

    tmp: Path
    s3: Any
    kms: Any
    store: MetadataStore
    settings: TufSettings
    root_key: str
    targets_key: str
    snapshot_uri: str
    timestamp_uri: str
    root: bytes
    team_keys: dict[str, str] = field(default_factory=dict)

    def kms_key(self, spec: str = "ECC_NIST_P256") -> str:
        """A new KMS signing key, as an ``awskms:alias/...`` URI."""
        key_id = self.kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=spec)[
            "KeyMetadata"
        ]["KeyId"]
        alias = f"alias/regseal-test-{next(_aliases)}"
        self.kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        return f"awskms:{alias}"

    def signer(self, reference: str) -> Signer:
        return load_signer(reference)

    def writer(self, **kwargs: Any) -> TargetsWriter:
        kwargs.setdefault("sleep", no_sleep)
        return TargetsWriter(self.store, **kwargs)

    def publisher(self, **kwargs: Any) -> Publisher:
        kwargs.setdefault("sleep", no_sleep)
        settings = kwargs.pop("settings", self.settings)
        return Publisher(self.store, settings, **kwargs)

    def refresh(self, **kwargs: Any) -> RefreshResult:
        return self.publisher().refresh_snapshot_and_timestamp(**kwargs)

    def add_team(self, team: str, *globs: str, **kwargs: Any) -> str:
        uri = self.kms_key()
        admin.add_team(
            self.store,
            self.settings,
            team,
            uri,
            list(globs) or [f"{team}/*"],
            targets_signers=[self.signer(self.targets_key)],
            **kwargs,
        )
        self.team_keys[team] = uri
        return uri

    def updater(self, cache: Path | None = None, root: bytes | None = None) -> Updater:
        """A fresh ngclient Updater reading the bucket through S3Fetcher."""
        cache = cache or self.tmp / f"client-{next(_aliases)}"
        cache.mkdir(parents=True, exist_ok=True)
        return Updater(
            metadata_dir=str(cache),
            metadata_base_url=self.store.location.url,
            fetcher=S3Fetcher(self.s3),
            bootstrap=root or self.root,
        )

    def put_raw(self, name: str, data: bytes) -> None:
        """Write a metadata file unconditionally (an attacker with S3 access)."""
        self.s3.put_object(Bucket=BUCKET, Key=f"tuf/{name}", Body=data)
        self.store.forget_cache()

    def get_raw(self, name: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=BUCKET, Key=f"tuf/{name}")[
            "Body"
        ].read()
        return body

    def object_versions(self, prefix: str = "tuf/") -> dict[str, int]:
        """Key -> number of times it was written (the bucket is versioned)."""
        counts: dict[str, int] = {}
        paginator = self.s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
            for version in page.get("Versions", []):
                counts[version["Key"]] = counts.get(version["Key"], 0) + 1
        return counts


@contextlib.contextmanager
def tuf_world(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> Iterator[World]:
    """An initialized repository on moto (see the module docstring)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_KMS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws(), kms_digest_signing(), atomic_conditional_writes():
        s3 = boto3.client("s3", region_name=REGION)
        kms = boto3.client("kms", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(
            Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
        )
        location = MetadataLocation(BUCKET, "tuf/")
        store = MetadataStore(s3, location)
        world_settings = TufSettings(location=location, **settings)
        root_key = str(tmp / "root.pem")
        targets_key = str(tmp / "targets.pem")
        generate_key_file(root_key)
        generate_key_file(targets_key)
        world = World(
            tmp=tmp,
            s3=s3,
            kms=kms,
            store=store,
            settings=world_settings,
            root_key=root_key,
            targets_key=targets_key,
            snapshot_uri="",
            timestamp_uri="",
            root=b"",
        )
        world.snapshot_uri = world.kms_key()
        world.timestamp_uri = world.kms_key()
        result = admin.init_repository(
            store,
            world_settings,
            root_signers=[load_signer(root_key)],
            targets_signers=[load_signer(targets_key)],
            snapshot_key=world.snapshot_uri,
            timestamp_key=world.timestamp_uri,
        )
        world.root = result.root
        yield world
