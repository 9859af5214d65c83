"""Re-key: fresh layer keys for sealed images, after a recipient is removed."""

from __future__ import annotations

import copy

import pytest

from regseal.digest import Digest
from regseal.errors import IntegrityError, KeyWrapError
from regseal.layerkeys import LayerKeys
from regseal.rewrap import Rewrapper
from regseal.seal import Outcome
from tests.support.crypto import open_layer
from tests.support.registry import random_layer


def layers_of(stack, repository, tag):
    return stack.registry.manifest(stack.registry.tag_digest(repository, tag))["layers"]


def blob(stack, descriptor):
    return stack.store.get(
        stack.sealer.layout.blob_data(Digest.parse(descriptor["digest"]))
    ).data


def rekeyer(stack):
    return Rewrapper(
        stack.sealer, LayerKeys(kms=lambda _region: stack.sealer.kms), rekey=True
    )


def drop_ec_recipient(stack):
    policy = copy.deepcopy(stack.policy)
    policy["version"] = "test-2"
    policy["teams"]["team-a"]["recipients"] = policy["teams"]["team-a"]["recipients"][
        :1
    ]
    stack.set_policy(policy)


def test_rekey_gives_new_ciphertext_that_a_removed_recipient_cannot_open(stack):
    plaintext = [random_layer(), random_layer(6 * 1024 * 1024)]  # one multipart
    stack.registry.push_image("team-a/app", "1", plaintext)
    stack.sealer.seal_tag("team-a/app", "1")
    old_layers = layers_of(stack, "team-a/app", "1")
    old_digest = stack.registry.tag_digest("team-a/app", "1")
    rsa_key, ec_key = stack.private_keys
    drop_ec_recipient(stack)

    result = rekeyer(stack).rewrap_tag("team-a/app", "1")

    assert (result.outcome, result.reason) == (Outcome.SEALED, "re-keyed")
    layers = layers_of(stack, "team-a/app", "1")
    for old, new, expected in zip(old_layers, layers, plaintext, strict=True):
        assert new["digest"] != old["digest"]
        assert new["mediaType"] == old["mediaType"]
        ciphertext = blob(stack, new)
        assert open_layer(new, ciphertext, rsa_key) == expected
        with pytest.raises(KeyWrapError):
            open_layer(new, ciphertext, ec_key)
    layout = stack.sealer.layout
    assert not stack.store.exists(layout.revision_link("team-a/app", old_digest))
    # The old ciphertext (openable with the old keys) is no longer linked.
    for old in old_layers:
        assert not stack.store.exists(
            layout.layer_link("team-a/app", Digest.parse(old["digest"]))
        )
    assert not list(stack.store.list_keys("regseal/staging/"))


def test_rekey_refuses_tampered_ciphertext_and_changes_nothing(stack):
    stack.registry.push_image("team-a/app", "1", [random_layer()])
    stack.sealer.seal_tag("team-a/app", "1")
    [layer] = layers_of(stack, "team-a/app", "1")
    key = stack.sealer.layout.blob_data(Digest.parse(layer["digest"]))
    data = bytearray(stack.store.get(key).data)
    data[10] ^= 1
    stack.store.put(key, bytes(data))
    before = stack.registry.snapshot()

    with pytest.raises(IntegrityError):
        rekeyer(stack).rewrap_tag("team-a/app", "1")

    assert stack.registry.snapshot() == before
