"""Re-wrap: new recipients or KMS key, layer blobs untouched."""

from __future__ import annotations

import copy
import json
from base64 import b64decode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from regseal.digest import Digest
from regseal.errors import KeyWrapError
from regseal.kms import ANNOTATION_KMS
from regseal.layerkeys import LayerKeys
from regseal.rewrap import Rewrapper
from regseal.seal import Outcome
from tests.support.crypto import open_layer
from tests.support.registry import random_layer


def pem_public(key) -> str:
    return (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )


@pytest.fixture
def newcomer():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def layers_of(stack, repository, tag):
    doc = stack.registry.manifest(stack.registry.tag_digest(repository, tag))
    return doc, doc["layers"]


def ciphertext(stack, descriptor):
    return stack.store.get(
        stack.sealer.layout.blob_data(Digest.parse(descriptor["digest"]))
    ).data


def rewrapper(stack):
    return Rewrapper(stack.sealer, LayerKeys(kms=lambda _region: stack.sealer.kms))


def test_rewrap_swaps_recipients_and_keeps_every_blob(stack, newcomer):
    plaintext = [random_layer(), random_layer()]
    stack.registry.push_image("team-a/app", "1", plaintext)
    stack.sealer.seal_tag("team-a/app", "1")
    old_doc, old_layers = layers_of(stack, "team-a/app", "1")
    old_digest = stack.registry.tag_digest("team-a/app", "1")
    rsa_key, ec_key = stack.private_keys
    policy = copy.deepcopy(stack.policy)
    policy["version"] = "test-2"
    policy["teams"]["team-a"]["recipients"] = [
        policy["teams"]["team-a"]["recipients"][0],  # rsa stays, ec leaves
        {"name": "newcomer", "public_key": pem_public(newcomer)},
    ]
    stack.set_policy(policy)

    result = rewrapper(stack).rewrap_tag("team-a/app", "1")

    assert (result.outcome, result.reason) == (Outcome.SEALED, "re-wrapped")
    doc, layers = layers_of(stack, "team-a/app", "1")
    assert [layer["digest"] for layer in layers] == [x["digest"] for x in old_layers]
    assert doc["annotations"]["dev.regseal.policy-version"] == "test-2"
    for descriptor, expected in zip(layers, plaintext, strict=True):
        blob = ciphertext(stack, descriptor)
        assert open_layer(descriptor, blob, newcomer) == expected
        assert open_layer(descriptor, blob, rsa_key) == expected
        with pytest.raises(KeyWrapError):
            open_layer(descriptor, blob, ec_key)
    layout = stack.sealer.layout
    assert not stack.store.exists(layout.revision_link("team-a/app", old_digest))
    assert (
        old_doc["annotations"]["dev.regseal.plaintext-manifest"]
        == (doc["annotations"]["dev.regseal.plaintext-manifest"])
    )

    again = rewrapper(stack).rewrap_tag("team-a/app", "1")
    assert again.reason == "already wrapped for the current keys"


def test_rewrap_moves_team_to_a_new_kms_key(stack):
    stack.registry.push_image("team-a/app", "1", [random_layer()])
    stack.sealer.seal_tag("team-a/app", "1")
    new_key = stack.kms.create_key()["KeyMetadata"]["Arn"]
    policy = copy.deepcopy(stack.policy)
    policy["teams"]["team-a"]["kms_key"] = new_key
    stack.set_policy(policy)

    rewrapper(stack).rewrap_tag("team-a/app", "1")

    _, [layer] = layers_of(stack, "team-a/app", "1")
    packet = json.loads(b64decode(layer["annotations"][ANNOTATION_KMS]))
    assert packet["kid"] == new_key
    options = json.loads(stack.sealer.kms.unwrap(layer["annotations"][ANNOTATION_KMS]))
    assert options["digest"] == packet["annotations"]["encryption_context"]["layer"]


def test_rewrap_dry_run_writes_nothing(stack, newcomer):
    stack.registry.push_image("team-a/app", "1", [random_layer()])
    stack.sealer.seal_tag("team-a/app", "1")
    policy = copy.deepcopy(stack.policy)
    policy["teams"]["team-a"]["recipients"].append(
        {"name": "newcomer", "public_key": pem_public(newcomer)}
    )
    stack.set_policy(policy)
    before = stack.registry.snapshot()

    result = rewrapper(stack).rewrap_tag("team-a/app", "1", dry_run=True)

    assert result.outcome is Outcome.PENDING
    assert stack.registry.snapshot() == before


def test_rewrap_of_an_index_rewraps_every_child(stack, newcomer):
    amd, arm = [random_layer()], [random_layer()]
    stack.registry.push_index("team-a/multi", "1", [("amd64", amd), ("arm64", arm)])
    stack.sealer.seal_tag("team-a/multi", "1")
    policy = copy.deepcopy(stack.policy)
    policy["teams"]["team-a"]["recipients"] = [
        {"name": "newcomer", "public_key": pem_public(newcomer)}
    ]
    stack.set_policy(policy)

    rewrapper(stack).rewrap_tag("team-a/multi", "1")

    index = stack.registry.manifest(stack.registry.tag_digest("team-a/multi", "1"))
    for child, expected in zip(index["manifests"], (amd, arm), strict=True):
        [descriptor] = stack.registry.manifest(Digest.parse(child["digest"]))["layers"]
        assert (
            open_layer(descriptor, ciphertext(stack, descriptor), newcomer)
            == expected[0]
        )


def test_rewrap_without_any_usable_key_fails_clearly(stack, newcomer):
    stack.registry.push_image("team-a/app", "1", [random_layer()])
    stack.sealer.seal_tag("team-a/app", "1")
    policy = copy.deepcopy(stack.policy)
    policy["teams"]["team-a"]["recipients"] = []
    stack.set_policy(policy)
    from regseal import jwe
    from tests.support.crypto import pem_private

    keys = LayerKeys(
        private_keys=[jwe.load_private_key(pem_private(newcomer), source="x")]
    )
    before = stack.registry.snapshot()

    with pytest.raises(KeyWrapError, match="team-a/app"):
        Rewrapper(stack.sealer, keys).rewrap_tag("team-a/app", "1")
    assert stack.registry.snapshot() == before
