"""JWE key wrapping: what regseal writes, and which JWEs it accepts."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk

from regseal import jwe
from regseal.errors import KeyWrapError
from regseal.ocicrypt import PrivateOptions, encode_base64
from tests.support.keys import generate_keypair

PAYLOAD = PrivateOptions.generate("sha256:" + "ab" * 32).to_json()


def b64url_json(text: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def item_json(item: str) -> dict:
    return json.loads(base64.b64decode(item, validate=True))


def recipient(keypair) -> jwe.Recipient:
    return jwe.Recipient.from_pem(keypair.public_pem, source=f"{keypair.kind}.pem")


def private(keypair) -> jwe.PrivateKey:
    return jwe.load_private_key(keypair.private_pem, source=f"{keypair.kind}.pem")


def foreign_item(keypair, *, alg: str, enc: str = "A256GCM", compact=False) -> str:
    """A JWE made by jwcrypto directly, as another producer might write it."""
    token = jwcrypto_jwe.JWE(
        PAYLOAD,
        protected=json.dumps({"alg": alg, "enc": enc}),
        algs=[alg, enc],
    )
    token.add_recipient(jwk.JWK.from_pem(keypair.public_pem))
    return encode_base64(token.serialize(compact=compact).encode())


@pytest.mark.parametrize(
    ("kind", "alg"),
    [("rsa", "RSA-OAEP"), ("p256", "ECDH-ES+A256KW"), ("p384", "ECDH-ES+A256KW")],
)
def test_wrap_writes_flattened_json_with_the_recommended_header(kind, alg):
    keypair = generate_keypair(kind)

    item = jwe.wrap(PAYLOAD, recipient(keypair))

    document = item_json(item)
    assert "recipients" not in document
    assert {"protected", "encrypted_key", "iv", "ciphertext", "tag"} <= set(document)
    assert b64url_json(document["protected"]) == {"alg": alg, "enc": "A256GCM"}
    assert "kid" not in json.dumps(document)
    assert jwe.unwrap(item, [private(keypair)]) == PAYLOAD


def test_p521_recipient_round_trip():
    keypair = generate_keypair("p521")

    value = jwe.wrap_all(PAYLOAD, [recipient(keypair)])

    assert jwe.unwrap(value, [private(keypair)]) == PAYLOAD


def test_wrap_all_gives_one_jwe_per_recipient_each_opened_by_its_key(
    rsa_keypair, ec_keypair
):
    value = jwe.wrap_all(PAYLOAD, [recipient(rsa_keypair), recipient(ec_keypair)])

    items = value.split(",")
    assert len(items) == 2
    assert [b64url_json(item_json(i)["protected"])["alg"] for i in items] == [
        "RSA-OAEP",
        "ECDH-ES+A256KW",
    ]
    assert jwe.unwrap(value, [private(rsa_keypair)]) == PAYLOAD
    assert jwe.unwrap(value, [private(ec_keypair)]) == PAYLOAD
    assert jwe.unwrap(items[1], [private(rsa_keypair), private(ec_keypair)]) == PAYLOAD


def test_wrap_all_needs_a_recipient():
    with pytest.raises(KeyWrapError, match="at least one JWE recipient"):
        jwe.wrap_all(PAYLOAD, [])


def test_unwrap_with_another_key_fails_without_key_material(
    rsa_keypair, other_rsa_keypair
):
    value = jwe.wrap_all(PAYLOAD, [recipient(rsa_keypair)])

    with pytest.raises(KeyWrapError, match="no recipient key could unwrap") as caught:
        jwe.unwrap(value, [private(other_rsa_keypair)])

    assert "item 0: none of 1 keys decrypts it" in str(caught.value)
    assert PAYLOAD.decode() not in str(caught.value)
    assert b"PRIVATE" not in str(caught.value).encode()


def test_unwrap_with_no_keys_fails(rsa_keypair):
    with pytest.raises(KeyWrapError, match="none of 0 keys"):
        jwe.unwrap(jwe.wrap(PAYLOAD, recipient(rsa_keypair)), [])


def test_tampered_wrapped_item_fails(rsa_keypair):
    document = item_json(jwe.wrap(PAYLOAD, recipient(rsa_keypair)))
    ciphertext = bytearray(base64.urlsafe_b64decode(document["ciphertext"] + "=="))
    ciphertext[0] ^= 1
    document["ciphertext"] = base64.urlsafe_b64encode(ciphertext).decode().rstrip("=")

    with pytest.raises(KeyWrapError, match="none of 1 keys"):
        jwe.unwrap(encode_base64(json.dumps(document).encode()), [private(rsa_keypair)])


def test_compact_serialization_accepted(rsa_keypair):
    item = foreign_item(rsa_keypair, alg="RSA-OAEP", compact=True)

    assert jwe.unwrap(item, [private(rsa_keypair)]) == PAYLOAD


@pytest.mark.parametrize(
    ("alg", "enc"), [("RSA-OAEP-256", "A256GCM"), ("RSA-OAEP", "A128CBC-HS256")]
)
def test_other_allowed_algorithms_accepted(rsa_keypair, alg, enc):
    item = foreign_item(rsa_keypair, alg=alg, enc=enc)

    assert jwe.unwrap(item, [private(rsa_keypair)]) == PAYLOAD


def test_general_serialization_with_go_jose_top_level_encrypted_key(
    rsa_keypair, ec_keypair
):
    # What skopeo (go-jose) writes for two recipients, reference §3.1.
    token = jwcrypto_jwe.JWE(PAYLOAD, protected=json.dumps({"enc": "A256GCM"}))
    token.add_recipient(
        jwk.JWK.from_pem(rsa_keypair.public_pem), header=json.dumps({"alg": "RSA-OAEP"})
    )
    token.add_recipient(
        jwk.JWK.from_pem(ec_keypair.public_pem),
        header=json.dumps({"alg": "ECDH-ES+A256KW"}),
    )
    document = json.loads(token.serialize())
    document["encrypted_key"] = document["recipients"][0]["encrypted_key"]
    item = encode_base64(json.dumps(document).encode())

    assert jwe.unwrap(item, [private(ec_keypair)]) == PAYLOAD
    assert jwe.unwrap(item, [private(rsa_keypair)]) == PAYLOAD


def test_one_disallowed_recipient_rejects_the_whole_jwe_like_go_jose(rsa_keypair):
    token = jwcrypto_jwe.JWE(
        PAYLOAD,
        protected=json.dumps({"enc": "A256GCM"}),
        algs=["RSA-OAEP", "RSA1_5", "A256GCM"],
    )
    public = jwk.JWK.from_pem(rsa_keypair.public_pem)
    token.add_recipient(public, header=json.dumps({"alg": "RSA-OAEP"}))
    token.add_recipient(public, header=json.dumps({"alg": "RSA1_5"}))
    item = encode_base64(token.serialize().encode())

    with pytest.raises(KeyWrapError, match="alg 'RSA1_5' is not one of"):
        jwe.unwrap(item, [private(rsa_keypair)])


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"alg": "dir", "enc": "A256GCM"}, "alg 'dir'"),
        ({"alg": "ECDH-ES", "enc": "A256GCM"}, "alg 'ECDH-ES'"),
        ({"alg": "RSA1_5", "enc": "A256GCM"}, "alg 'RSA1_5'"),
        ({"alg": "RSA-OAEP", "enc": "A256KW"}, "enc 'A256KW'"),
        ({"alg": "RSA-OAEP", "enc": "A256GCM", "zip": "DEF"}, "'zip'"),
        ({"alg": "RSA-OAEP", "enc": "A256GCM", "crit": ["x"], "x": 1}, "'crit'"),
    ],
)
def test_headers_outside_go_allow_lists_rejected(header, message):
    protected = base64.urlsafe_b64encode(json.dumps(header).encode()).decode()
    document = {
        "protected": protected.rstrip("="),
        "encrypted_key": "AA",
        "iv": "AA",
        "ciphertext": "AA",
        "tag": "AA",
    }
    compact = ".".join([protected.rstrip("="), "AA", "AA", "AA", "AA"])

    for text in (json.dumps(document), compact):
        with pytest.raises(KeyWrapError, match=message):
            jwe.unwrap(encode_base64(text.encode()), [])


def test_bad_items_are_skipped_and_a_good_one_still_opens(rsa_keypair):
    good = jwe.wrap(PAYLOAD, recipient(rsa_keypair))
    urlsafe = base64.urlsafe_b64encode(base64.b64decode(good)).decode().rstrip("=")
    not_json = encode_base64(b"{nope")

    value = ",".join([urlsafe, not_json, good])

    assert jwe.unwrap(value, [private(rsa_keypair)]) == PAYLOAD


def test_all_items_bad_reports_each(rsa_keypair):
    urlsafe = base64.urlsafe_b64encode(b"{}>>>").decode().rstrip("=")

    with pytest.raises(KeyWrapError) as caught:
        jwe.unwrap(f"{urlsafe},{encode_base64(b'a.b')}", [private(rsa_keypair)])

    assert "item 0: expected item 0 of" in str(caught.value)
    assert "standard padded base64" in str(caught.value)
    assert "item 1: expected a JWE in JSON or compact serialization" in str(
        caught.value
    )


def test_recipient_fingerprint_names_the_public_key(rsa_keypair, ec_keypair):
    first = recipient(rsa_keypair)

    assert first.fingerprint == recipient(rsa_keypair).fingerprint
    assert first.fingerprint != recipient(ec_keypair).fingerprint
    assert first.fingerprint.startswith("sha256:")
    assert len(first.fingerprint) == 71


def test_recipient_from_pkcs1_rsa_public_key(rsa_keypair):
    key = serialization.load_pem_public_key(rsa_keypair.public_pem)
    pkcs1 = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )

    assert jwe.Recipient.from_pem(pkcs1, source="pkcs1.pem").algorithm == "RSA-OAEP"


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: public_pem(ed25519.Ed25519PrivateKey.generate()), "Ed25519PublicKey"),
        (
            lambda: public_pem(ec.generate_private_key(ec.SECP256K1())),
            "EC key on secp256k1",
        ),
        (
            lambda: public_pem(rsa.generate_private_key(65537, 1024)),  # noqa: S505
            "at least 2048 bits",
        ),
        (
            lambda: b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "none",
        ),
        (lambda: b"not a key", "none that loads"),
    ],
)
def test_recipient_refuses_other_keys_naming_the_input(make, message):
    with pytest.raises(KeyWrapError, match=message) as caught:
        jwe.Recipient.from_pem(make(), source="policy team-a recipient 2")

    assert "policy team-a recipient 2" in str(caught.value)


def test_private_keys_load_from_pkcs8_sec1_and_traditional_rsa(rsa_keypair, ec_keypair):
    value = jwe.wrap_all(PAYLOAD, [recipient(rsa_keypair), recipient(ec_keypair)])
    traditional = [
        serialization.load_pem_private_key(pair.private_pem, None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        for pair in (rsa_keypair, ec_keypair)
    ]
    assert traditional[0].startswith(b"-----BEGIN RSA PRIVATE KEY")
    assert traditional[1].startswith(b"-----BEGIN EC PRIVATE KEY")

    for pem in traditional:
        key = jwe.load_private_key(pem, source="key.pem")
        assert jwe.unwrap(value, [key]) == PAYLOAD


def test_encrypted_private_key_needs_its_password(rsa_keypair):
    key = serialization.load_pem_private_key(rsa_keypair.private_pem, None)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )

    assert isinstance(
        jwe.load_private_key(pem, source="enc.pem", password=b"secret"),
        rsa.RSAPrivateKey,
    )
    with pytest.raises(KeyWrapError, match=r"enc\.pem, found none that loads"):
        jwe.load_private_key(pem, source="enc.pem")
    with pytest.raises(KeyWrapError, match="with the given password"):
        jwe.load_private_key(pem, source="enc.pem", password=b"wrong")


@pytest.fixture
def key_cache():
    """The module's key caches, emptied before and restored after the test."""
    jwe.set_key_cache_size(jwe.KEY_CACHE_SIZE)
    yield
    jwe.set_key_cache_size(jwe.KEY_CACHE_SIZE)


def test_same_pem_loads_the_same_key_once(rsa_keypair, monkeypatch, key_cache):
    loads = []
    original = serialization.load_pem_private_key
    monkeypatch.setattr(
        serialization,
        "load_pem_private_key",
        lambda data, password: loads.append(1) or original(data, password),
    )

    first = jwe.load_private_key(rsa_keypair.private_pem, source="a.pem")
    again = jwe.load_private_key(bytes(rsa_keypair.private_pem), source="b.pem")

    assert again is first
    assert loads == [1]


def test_a_password_for_an_unencrypted_cached_key_is_still_refused(
    rsa_keypair, key_cache
):
    jwe.load_private_key(rsa_keypair.private_pem, source="key.pem")

    with pytest.raises(KeyWrapError, match="with the given password"):
        jwe.load_private_key(rsa_keypair.private_pem, source="key.pem", password=b"x")


def test_unwrap_builds_each_keys_jwk_once_for_many_layers(
    rsa_keypair, monkeypatch, key_cache
):
    key = private(rsa_keypair)
    values = [jwe.wrap(PAYLOAD, recipient(rsa_keypair)) for _ in range(4)]
    built = []
    original = jwk.JWK.from_pyca
    monkeypatch.setattr(jwk.JWK, "from_pyca", lambda k: built.append(1) or original(k))

    payloads = [jwe.unwrap(value, [key]) for value in values]

    assert payloads == [PAYLOAD] * 4
    assert built == [1]


def test_key_cache_is_bounded_and_can_be_turned_off(monkeypatch, key_cache):
    pems = [generate_keypair("p256").private_pem for _ in range(3)]
    jwe.set_key_cache_size(2)
    first = [jwe.load_private_key(pem, source="k.pem") for pem in pems]

    assert jwe.load_private_key(pems[2], source="k.pem") is first[2]
    assert jwe.load_private_key(pems[1], source="k.pem") is first[1]
    assert jwe.load_private_key(pems[0], source="k.pem") is not first[0]
    jwe.set_key_cache_size(0)
    assert jwe.load_private_key(pems[2], source="k.pem") is not first[2]
    with pytest.raises(ValueError, match="expected 0 or more"):
        jwe.set_key_cache_size(-1)


def test_private_key_of_another_type_refused():
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    with pytest.raises(KeyWrapError, match=r"RSA or EC .* private key in ed\.pem"):
        jwe.load_private_key(pem, source="ed.pem")
