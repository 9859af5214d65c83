"""Throw-away key pairs for tests, in the PEM forms skopeo and regseal read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

KeyKind = Literal["rsa", "p256", "p384", "p521"]

_CURVES: dict[str, ec.EllipticCurve] = {
    "p256": ec.SECP256R1(),
    "p384": ec.SECP384R1(),
    "p521": ec.SECP521R1(),
}


@dataclass(frozen=True)
class KeyPair:
    """A private key (PKCS#8 PEM, as skopeo needs for EC) and its public key."""

    kind: KeyKind
    private_pem: bytes = field(repr=False)
    public_pem: bytes

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write ``<kind>-priv.pem`` and ``<kind>-pub.pem``; return both paths."""
        directory.mkdir(parents=True, exist_ok=True)
        private = directory / f"{self.kind}-priv.pem"
        public = directory / f"{self.kind}-pub.pem"
        private.write_bytes(self.private_pem)
        public.write_bytes(self.public_pem)
        return private, public


def generate_keypair(kind: KeyKind) -> KeyPair:
    """A fresh RSA-2048 or EC key pair."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(_CURVES[kind])
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return KeyPair(kind, private_pem, public_pem)
