"""The demo team's JWE key pair: RSA 3072, private key as unencrypted PKCS#8 PEM.

skopeo opens sealed layers with the private key (``--decryption-key``); the
stack's demo policy names the public key as the team's only JWE recipient.
The keys are made fresh for every stack and exist only on the local disk.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

logger = logging.getLogger(__name__)

RSA_KEY_BITS = 3072
PRIVATE_KEY_FILE = "jwe-private.pem"
PUBLIC_KEY_FILE = "jwe-public.pem"


@dataclass(frozen=True)
class DemoKeyPair:
    """Where the key pair was written, and the public key's PEM text."""

    private_key: Path
    public_key: Path
    public_pem: str


def write_demo_key_pair(directory: Path) -> DemoKeyPair:
    """Generate a key pair and write both PEM files into ``directory``.

    The private key file is created with mode 0600, replacing any earlier one.
    """
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )

    private_path = (directory / PRIVATE_KEY_FILE).resolve()
    public_path = (directory / PUBLIC_KEY_FILE).resolve()
    private_path.unlink(missing_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    public_path.write_bytes(public_pem)

    logger.debug("wrote demo JWE key pair to %s", directory)
    return DemoKeyPair(private_path, public_path, public_pem.decode("ascii"))
