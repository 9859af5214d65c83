"""KMS wrapping against moto's KMS, which enforces the encryption context."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from regseal.errors import AccessDeniedError, IntegrityError, KeyWrapError
from regseal.kms import KmsWrapper, encryption_context
from regseal.ocicrypt import PrivateOptions, encode_base64

REGION = "eu-west-1"
LAYER = "sha256:" + "ef" * 32


@pytest.fixture
def kms(monkeypatch) -> Iterator[object]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield boto3.client("kms", region_name=REGION)


def new_key(kms) -> str:
    return kms.create_key(Description="regseal test key")["KeyMetadata"]["KeyId"]


def payload() -> bytes:
    return PrivateOptions.generate(LAYER).to_json()


def edit_packet(item: str, **changes: object) -> str:
    obj = json.loads(base64.b64decode(item))
    obj.update(changes)
    return encode_base64(json.dumps(obj).encode())


def test_wrap_then_unwrap_returns_the_private_options(kms):
    key_id = new_key(kms)
    wrapper = KmsWrapper(kms)
    data = payload()
    context = encryption_context("team-a/app", LAYER)

    item = wrapper.wrap(data, key_id, context)

    packet = json.loads(base64.b64decode(item))
    assert packet["kid"] == kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    assert packet["provider_settings"] == {"region": REGION}
    assert packet["annotations"] == {"encryption_context": context}
    assert base64.b64decode(packet["wrapped_data"]) != data
    assert wrapper.unwrap(item) == data
    assert wrapper.unwrap(item, expected_context=context) == data


def test_wrap_with_an_alias_records_the_key_arn(kms):
    key_id = new_key(kms)
    kms.create_alias(AliasName="alias/team-a", TargetKeyId=key_id)
    wrapper = KmsWrapper(kms)

    item = wrapper.wrap(payload(), "alias/team-a", encryption_context("a/b", LAYER))

    assert json.loads(base64.b64decode(item))["kid"].endswith(f":key/{key_id}")


def test_packet_moved_to_another_repository_context_fails(kms):
    wrapper = KmsWrapper(kms)
    item = wrapper.wrap(
        payload(), new_key(kms), encryption_context("team-a/app", LAYER)
    )
    moved = edit_packet(
        item,
        annotations={"encryption_context": encryption_context("team-b/app", LAYER)},
    )

    with pytest.raises(IntegrityError, match="repository 'team-b/app'") as caught:
        wrapper.unwrap(moved)

    assert caught.value.__cause__ is not None
    assert "InvalidCiphertextException" in str(caught.value.__cause__)


def test_expected_context_must_match_the_packet(kms):
    wrapper = KmsWrapper(kms)
    item = wrapper.wrap(
        payload(), new_key(kms), encryption_context("team-a/app", LAYER)
    )

    with pytest.raises(KeyWrapError, match="bound to repository 'team-a/app'"):
        wrapper.unwrap(item, expected_context=encryption_context("team-b/app", LAYER))


def test_another_key_cannot_unwrap(kms):
    wrapper = KmsWrapper(kms)
    first = new_key(kms)
    other_arn = kms.describe_key(KeyId=new_key(kms))["KeyMetadata"]["Arn"]
    item = wrapper.wrap(payload(), first, encryption_context("team-a/app", LAYER))

    # moto answers AccessDeniedException, real KMS IncorrectKeyException.
    with pytest.raises(AccessDeniedError, match=f"KMS key {other_arn}"):
        wrapper.unwrap(edit_packet(item, kid=other_arn))


def test_tampered_wrapped_data_fails(kms):
    wrapper = KmsWrapper(kms)
    item = wrapper.wrap(
        payload(), new_key(kms), encryption_context("team-a/app", LAYER)
    )
    blob = bytearray(
        base64.b64decode(json.loads(base64.b64decode(item))["wrapped_data"])
    )
    blob[-1] ^= 1

    with pytest.raises(IntegrityError, match="ciphertext is damaged"):
        wrapper.unwrap(edit_packet(item, wrapped_data=encode_base64(blob)))


def test_wrap_with_unknown_key_is_a_key_wrap_error_naming_it(kms):
    wrapper = KmsWrapper(kms)
    missing = "11111111-2222-3333-4444-555555555555"

    with pytest.raises(KeyWrapError, match=f"NotFoundException.*{missing}") as caught:
        wrapper.wrap(payload(), missing, encryption_context("team-a/app", LAYER))

    assert not isinstance(caught.value, AccessDeniedError)


def test_packet_from_another_region_is_refused_before_calling_kms(kms):
    wrapper = KmsWrapper(kms)
    item = wrapper.wrap(
        payload(), new_key(kms), encryption_context("team-a/app", LAYER)
    )

    with pytest.raises(KeyWrapError, match="region 'us-east-1'"):
        wrapper.unwrap(edit_packet(item, provider_settings={"region": "us-east-1"}))


def test_errors_never_contain_key_bytes(kms):
    wrapper = KmsWrapper(kms)
    data = payload()
    item = wrapper.wrap(data, new_key(kms), encryption_context("team-a/app", LAYER))
    moved = edit_packet(
        item, annotations={"encryption_context": encryption_context("x/y", LAYER)}
    )

    with pytest.raises(IntegrityError) as caught:
        wrapper.unwrap(moved)

    symkey = json.loads(data)["symkey"]
    wrapped = json.loads(base64.b64decode(item))["wrapped_data"]
    assert symkey not in str(caught.value)
    assert wrapped not in str(caught.value)
