"""Decrypt sealed layers in tests with regseal's own codec."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from regseal import jwe, ocicrypt
from regseal.digest import Digest


def pem_private(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def open_layer(descriptor: dict, ciphertext: bytes, private_key) -> bytes:
    """Unwrap a sealed layer's key with a JWE private key and decrypt it."""
    annotations = descriptor["annotations"]
    private = jwe.unwrap(
        annotations[ocicrypt.ANNOTATION_JWE],
        [jwe.load_private_key(pem_private(private_key), source="test key")],
    )
    return decrypt_with_options(descriptor, ciphertext, private)


def decrypt_with_options(descriptor: dict, ciphertext: bytes, private: bytes) -> bytes:
    annotations = descriptor["annotations"]
    pub = ocicrypt.PublicOptions.from_annotation(
        annotations[ocicrypt.ANNOTATION_PUBOPTS]
    )
    priv = ocicrypt.PrivateOptions.from_json(private)
    chunks = ocicrypt.decrypt_layer(
        lambda: [ciphertext],
        pub,
        priv,
        expected_digest=Digest.parse(descriptor["digest"]),
        expected_size=descriptor["size"],
        enforce_plaintext_digest=True,
    )
    return b"".join(chunks)
