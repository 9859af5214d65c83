"""S3 requests, KMS calls and crypto work of sealing an image, and of a re-push.

Runs the real :class:`regseal.seal.Sealer` against moto in-process: the
registry's writes come from :class:`tests.support.registry.FakeRegistry`,
S3 requests from :attr:`ObjectStore.requests`, KMS calls from a counting
wrapper around the KMS client, and the bytes that went through the cipher
from a counting wrapper around :class:`regseal.ocicrypt.LayerEncryptor`.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto import mock_aws
from tests.support.registry import FakeRegistry, tar_gz

from regseal import ocicrypt
from regseal.events import Action, ObjectEvent
from regseal.kms import KmsWrapper
from regseal.policy import PolicySource
from regseal.seal import Sealer, SealResult
from regseal.settings import Settings
from regseal.storage import ObjectStore

BUCKET = "registry"
REPOSITORY = "team-a/app"
MiB = 1024 * 1024


class CountingClient:
    """A boto3 client that counts its API calls by method name."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith("_") or name == "meta":
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        return call


@dataclass
class CryptoWork:
    layers: int = 0
    bytes: int = 0


@contextlib.contextmanager
def counting_crypto() -> Iterator[CryptoWork]:
    """Count layers and bytes that :class:`LayerEncryptor` finalizes."""
    work = CryptoWork()
    original = ocicrypt.LayerEncryptor.finalize

    def finalize(self: ocicrypt.LayerEncryptor) -> ocicrypt.EncryptedLayer:
        layer = original(self)
        work.layers += 1
        work.bytes += layer.size
        return layer

    ocicrypt.LayerEncryptor.finalize = finalize  # type: ignore[method-assign]
    try:
        yield work
    finally:
        ocicrypt.LayerEncryptor.finalize = original  # type: ignore[method-assign]


@dataclass(frozen=True)
class SealCost:
    """What one seal cost."""

    result: SealResult
    s3: dict[str, int]
    kms: dict[str, int]
    crypto: CryptoWork

    @property
    def s3_total(self) -> int:
        return sum(self.s3.values())

    @property
    def kms_total(self) -> int:
        return sum(self.kms.values())


@dataclass(frozen=True)
class ImageCosts:
    layers: int
    layer_sizes: tuple[int, ...]
    first: SealCost
    repush: SealCost
    changed_bytes: int


def _public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )


def _layer(size: int) -> bytes:
    return tar_gz({"data.bin": os.urandom(size)})


def _seal(
    sealer: Sealer, store: ObjectStore, kms: CountingClient, tag: str
) -> SealCost:
    before_s3 = collections.Counter(store.requests)
    before_kms = collections.Counter(kms.calls)
    event = ObjectEvent(BUCKET, sealer.layout.tag_link(REPOSITORY, tag), Action.CREATED)
    with counting_crypto() as crypto:
        result = sealer.handle(event)
    s3 = collections.Counter(store.requests)
    s3.subtract(before_s3)
    calls = collections.Counter(kms.calls)
    calls.subtract(before_kms)
    return SealCost(
        result,
        {k: v for k, v in sorted(s3.items()) if v},
        {k: v for k, v in sorted(calls.items()) if v},
        crypto,
    )


def image_costs(layer_sizes: tuple[int, ...]) -> ImageCosts:
    """Seal an image of ``layer_sizes``, then a re-push whose last layer changed."""
    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in [*environment, "AWS_ENDPOINT_URL"]}
    os.environ.update(environment)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with mock_aws():
            return _image_costs(layer_sizes)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _image_costs(layer_sizes: tuple[int, ...]) -> ImageCosts:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    kms = CountingClient(boto3.client("kms", region_name="us-east-1"))
    key_id = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/team-a", TargetKeyId=key_id)
    policy = {
        "version": "bench-1",
        "unmatched": "skip",
        "teams": {
            "team-a": {
                "repositories": ["team-a/*"],
                "kms_key": "alias/team-a",
                "recipients": [{"name": "ops", "public_key": _public_pem()}],
            }
        },
    }
    document = json.dumps(policy).encode()
    store = ObjectStore(s3, BUCKET)
    settings = Settings(bucket=BUCKET, part_size=5 * MiB, workers=2)
    sealer = Sealer(
        store,
        settings,
        PolicySource("bench", reader=lambda _location: document),
        KmsWrapper(kms),  # type: ignore[arg-type]
    )
    registry = FakeRegistry(store)
    kms.calls.clear()

    layers = [_layer(size) for size in layer_sizes]
    registry.push_image(REPOSITORY, "1", layers)
    first = _seal(sealer, store, kms, "1")

    changed = _layer(layer_sizes[-1])
    registry.push_image(REPOSITORY, "2", [*layers[:-1], changed])
    repush = _seal(sealer, store, kms, "2")
    return ImageCosts(
        len(layers), tuple(len(x) for x in layers), first, repush, len(changed)
    )
