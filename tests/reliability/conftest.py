"""Fixtures for the reliability suites: moto in-process, atomic like S3.

moto checks ``If-Match`` and ``If-None-Match`` for real, but checks and
writes in two steps, so two threads can both pass the check. S3 applies a
conditional write atomically; :func:`atomic_moto` serializes moto's mutating
S3 requests so the race tests see S3's semantics, not moto's gap.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws
from moto.s3.responses import S3Response

from regseal.events import Action, ObjectEvent
from regseal.invariants import Keys, Report, check_registry
from regseal.jwe import load_private_key
from regseal.kms import KmsWrapper
from regseal.layout import RegistryLayout
from regseal.policy import PolicySource, load_policy_bytes
from regseal.seal import Sealer
from regseal.settings import Settings
from regseal.storage import ObjectStore
from tests.support.registry import FakeRegistry

REGION = "us-east-1"
MiB = 1024 * 1024

_S3_WRITE_LOCK = threading.RLock()
_MUTATIONS = ("put_object", "copy_object", "delete_object", "_key_response_post")


def _atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make each mutating moto S3 request atomic, as S3 makes it."""
    for name in _MUTATIONS:
        original = getattr(S3Response, name)

        def locked(self, *args, __original=original, **kwargs):
            with _S3_WRITE_LOCK:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(S3Response, name, locked)


@pytest.fixture(scope="module")
def aws():
    """moto for a whole module: each test works in buckets of its own."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        _atomic_moto(monkeypatch)
        with mock_aws():
            yield


def policy_document(rsa_public: bytes, ec_public: bytes) -> dict:
    return {
        "version": "rel-1",
        "unmatched": "skip",
        "teams": {
            "team-a": {
                "repositories": ["team-a/*"],
                "kms_key": "alias/team-a",
                "recipients": [
                    {"name": "rsa", "public_key": rsa_public.decode()},
                    {"name": "ec", "public_key": ec_public.decode()},
                ],
            }
        },
    }


@dataclass
class Registry:
    """One registry bucket: its store, a FakeRegistry to push with, events."""

    store: ObjectStore
    registry: FakeRegistry
    layout: RegistryLayout

    @property
    def bucket(self) -> str:
        return self.store.bucket

    def tag_event(self, repository: str, tag: str) -> ObjectEvent:
        return ObjectEvent(
            self.bucket, self.layout.tag_link(repository, tag), Action.CREATED
        )

    def revision_event(self, repository: str, digest) -> ObjectEvent:
        return ObjectEvent(
            self.bucket, self.layout.revision_link(repository, digest), Action.CREATED
        )

    def snapshot(self) -> dict[str, bytes]:
        """Every object in the bucket (registry root and regseal's prefix)."""
        return {key: self.store.get(key).data for key in self.store.list_keys("")}


@dataclass
class Rig:
    """moto S3 and KMS, a team policy with two JWE recipients, and helpers."""

    s3: object
    kms: KmsWrapper
    policy: dict
    jwe_keys: list
    settings_for: Callable[[str], Settings]
    _names: Iterator[int]

    def registry(self) -> Registry:
        name = f"registry-{next(self._names)}"
        self.s3.create_bucket(Bucket=name)
        store = ObjectStore(self.s3, name)
        return Registry(store, FakeRegistry(store), RegistryLayout())

    def sealer(
        self,
        store: ObjectStore,
        kms: KmsWrapper | None = None,
        clock: Callable[[], float] | None = None,
    ) -> Sealer:
        policy = self.policy
        sealer = Sealer(
            store,
            self.settings_for(store.bucket),
            PolicySource("test", reader=lambda _loc: json.dumps(policy).encode()),
            kms or self.kms,
        )
        if clock is not None:
            sealer.clock = clock
        return sealer

    def check(
        self,
        store: ObjectStore,
        *,
        finished: bool,
        kms: bool = False,
        fast: bool = False,
        repositories: tuple[str, ...] | list[str] = (),
    ) -> Report:
        """Check the invariants; ``fast`` opens layers with the EC key and KMS.

        jwcrypto converts an RSA private key for every unwrap (about 30 ms),
        so the suites that check hundreds of states skip the RSA recipient.
        """
        if fast:
            keys = Keys(jwe_keys=self.jwe_keys[1:], kms=self.kms)
        else:
            keys = Keys(jwe_keys=self.jwe_keys, kms=self.kms if kms else None)
        policy = load_policy_bytes(json.dumps(self.policy).encode(), "test")
        return check_registry(
            store,
            keys=keys,
            finished=finished,
            sealable=lambda repository: policy.team_for(repository) is not None,
            repositories=repositories,
        )


@pytest.fixture(scope="module")
def rig(aws, rsa_keypair, ec_keypair) -> Rig:
    s3 = boto3.client("s3", region_name=REGION)
    kms_client = boto3.client("kms", region_name=REGION)
    key_id = kms_client.create_key()["KeyMetadata"]["Arn"]
    kms_client.create_alias(AliasName="alias/team-a", TargetKeyId=key_id)
    policy = policy_document(rsa_keypair.public_pem, ec_keypair.public_pem)
    load_policy_bytes(json.dumps(policy).encode(), "test")  # must be valid
    keys = [
        load_private_key(pair.private_pem, source=f"test {pair.kind} key")
        for pair in (rsa_keypair, ec_keypair)
    ]

    def settings_for(bucket: str) -> Settings:
        return Settings(
            bucket=bucket, part_size=5 * MiB, workers=2, digest_push_grace=60
        )

    return Rig(
        s3, KmsWrapper(kms_client), policy, keys, settings_for, itertools.count(1)
    )
