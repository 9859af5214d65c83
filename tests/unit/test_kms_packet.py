"""The KMS annotation packet (CDH v2 "aws" shape): serialization and validation."""

from __future__ import annotations

import base64
import json

import pytest

from regseal.errors import DigestError, KeyWrapError, OcicryptError
from regseal.kms import ANNOTATION_KMS, KmsPacket, encryption_context
from regseal.ocicrypt import PROVIDER_ANNOTATION_PREFIX, encode_base64

LAYER = "sha256:" + "cd" * 32
ARN = "arn:aws:kms:eu-west-1:123456789012:key/0b9f3a9e-1111-2222-3333-444455556666"


def packet() -> KmsPacket:
    return KmsPacket(
        kid=ARN,
        wrapped_data=b"\x01\x02opaque",
        region="eu-west-1",
        encryption_context=encryption_context("team-a/app", LAYER),
    )


def item_of(obj: object) -> str:
    return encode_base64(json.dumps(obj).encode())


def packet_json(**changes: object) -> dict:
    obj = json.loads(base64.b64decode(packet().to_item()))
    for key, value in changes.items():
        if value is ...:
            del obj[key]
        else:
            obj[key] = value
    return obj


def test_annotation_key_is_the_regseal_provider():
    assert ANNOTATION_KMS == PROVIDER_ANNOTATION_PREFIX + "regseal"
    assert ANNOTATION_KMS == "org.opencontainers.image.enc.keys.provider.regseal"


def test_encryption_context_names_repository_and_layer():
    assert encryption_context("team-a/app", LAYER) == {
        "repository": "team-a/app",
        "layer": LAYER,
    }


def test_encryption_context_refuses_empty_repository_and_bad_digest():
    with pytest.raises(KeyWrapError, match="repository name"):
        encryption_context("", LAYER)
    with pytest.raises(DigestError):
        encryption_context("team-a/app", "sha256:zz")


def test_packet_bytes_have_the_cdh_v2_aws_shape():
    raw = base64.b64decode(packet().to_item(), validate=True)

    assert raw == (
        b'{"version":"0.1.0","provider":"aws","kid":"' + ARN.encode() + b'",'
        b'"wrapped_data":"AQJvcGFxdWU=","provider_settings":{"region":"eu-west-1"},'
        b'"annotations":{"encryption_context":{"repository":"team-a/app",'
        b'"layer":"' + LAYER.encode() + b'"}}}'
    )


def test_packet_round_trip_and_repr_hides_wrapped_data():
    assert KmsPacket.from_item(packet().to_item()) == packet()
    assert "opaque" not in repr(packet())


def test_packet_without_encryption_context_parses_as_cdh_writes_it():
    parsed = KmsPacket.from_item(item_of(packet_json(annotations={})))

    assert parsed.encryption_context == {}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (packet_json(version="0.2.0"), "version '0.1.0'"),
        (packet_json(provider="kbs"), "provider 'aws'"),
        (packet_json(kid=""), "'kid' naming a KMS key"),
        (packet_json(kid=...), "'kid' naming a KMS key"),
        (packet_json(iv="AAAA"), r"unknown members \['iv'\]"),
        (packet_json(provider_settings={}), "exactly {'region'"),
        (packet_json(provider_settings={"region": ""}), "exactly {'region'"),
        (packet_json(provider_settings=None), "'provider_settings' to be an object"),
        (packet_json(annotations={"x": {}}), "only 'encryption_context'"),
        (
            packet_json(annotations={"encryption_context": {"a": 1}}),
            "map strings to strings",
        ),
        (packet_json(wrapped_data=""), "'wrapped_data' is empty"),
        (packet_json(wrapped_data="AQJ-"), "standard padded base64"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_packet_validation_rejects(obj, message):
    with pytest.raises(OcicryptError, match=message):
        KmsPacket.from_item(item_of(obj))


def test_packet_item_must_be_standard_base64():
    item = packet().to_item()

    with pytest.raises(OcicryptError, match="standard padded base64"):
        KmsPacket.from_item(item.rstrip("="))
