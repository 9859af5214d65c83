"""Fixtures for functional tests: moto in-process, a registry bucket, a team."""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from moto import mock_aws

from regseal.kms import KmsWrapper
from regseal.policy import PolicySource, load_policy_bytes
from regseal.seal import Sealer
from regseal.settings import Settings
from regseal.storage import ObjectStore
from tests.support.registry import FakeRegistry

BUCKET = "registry"


@dataclass
class Stack:
    s3: object
    kms: object
    store: ObjectStore
    registry: FakeRegistry
    sealer: Sealer
    key_id: str
    private_keys: list
    policy: dict

    def set_policy(self, doc: dict) -> None:
        self.policy = doc
        self.sealer.policies = PolicySource(
            "test", reader=lambda _loc: json.dumps(doc).encode(), max_age=0
        )


def _pem_public(key) -> str:
    return (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )


@pytest.fixture(scope="session")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def stack(aws, rsa_key, ec_key) -> Stack:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    kms = boto3.client("kms", region_name="us-east-1")
    key_id = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/team-a", TargetKeyId=key_id)
    policy = {
        "version": "test-1",
        "unmatched": "skip",
        "teams": {
            "team-a": {
                "repositories": ["team-a/*"],
                "kms_key": "alias/team-a",
                "recipients": [
                    {"name": "rsa", "public_key": _pem_public(rsa_key)},
                    {"name": "ec", "public_key": _pem_public(ec_key)},
                ],
            }
        },
    }
    load_policy_bytes(json.dumps(policy).encode(), "test")  # must be valid
    store = ObjectStore(s3, BUCKET)
    settings = Settings(
        bucket=BUCKET, part_size=5 * 1024 * 1024, workers=2, digest_push_grace=60
    )
    sealer = Sealer(
        store,
        settings,
        PolicySource("test", reader=lambda _loc: json.dumps(policy).encode()),
        KmsWrapper(kms),
    )
    return Stack(
        s3, kms, store, FakeRegistry(store), sealer, key_id, [rsa_key, ec_key], policy
    )
