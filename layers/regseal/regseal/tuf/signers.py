"""Signers for TUF roles: AWS KMS keys for online roles, key files for offline ones.

Two kinds of reference name a private key:

- ``awskms:<key id | key ARN | alias/NAME | alias ARN>``: an asymmetric
  ``SIGN_VERIFY`` KMS key (ECC_NIST_P256 recommended), used through
  securesystemslib's ``AWSSigner`` (``kms:GetPublicKey`` once at setup,
  ``kms:Sign`` with a locally computed digest afterwards).
- a path to a PEM PKCS#8 private key file, or ``file2:<path>``: an offline key
  (ed25519, ECDSA or RSA) used through ``CryptoSigner``. :func:`generate_key_file`
  writes one.

Online keys (snapshot, timestamp, teams) carry their signer URI in the key's
custom field ``x-regseal-online-uri``, so the seal and TUF functions find the
signer from the metadata alone. The keyid is recomputed over the whole key
object including that field, so it stays the sha256 of the canonical key as the
specification defines it (tuf.md §3.2).

Every signer is checked with a probe signature when it is loaded for setup, so a
wrong URI or key fails at configuration time, not at the first real signing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives.serialization import (
    load_der_public_key,
    load_pem_private_key,
)
from securesystemslib.exceptions import KeyMismatchError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import (
    AWSSigner,
    CryptoSigner,
    Key,
    Signer,
    SSlibKey,
)

from regseal.errors import AccessDeniedError, TufError

logger = logging.getLogger(__name__)

ONLINE_URI_FIELD = "x-regseal-online-uri"
KMS_SCHEME = "awskms"
FILE_SCHEME = "file2"

# KMS key specs securesystemslib can verify, and the scheme regseal uses for each.
KMS_SCHEMES = {
    "ECC_NIST_P256": "ecdsa-sha2-nistp256",
    "ECC_NIST_P384": "ecdsa-sha2-nistp384",
    "RSA_2048": "rsassa-pss-sha256",
    "RSA_3072": "rsassa-pss-sha256",
    "RSA_4096": "rsassa-pss-sha256",
}
_PROBE = b"regseal signer probe"


def _kms_client() -> Any:
    import boto3

    return boto3.client("kms")


def _kms_key_id(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme != KMS_SCHEME or not parsed.path:
        raise TufError(
            f"expected a KMS key URI 'awskms:<key id or alias>', got {uri!r}"
        )
    return parsed.path


def is_kms_uri(reference: str) -> bool:
    """Whether ``reference`` names a KMS key."""
    return reference.startswith(f"{KMS_SCHEME}:")


def keyid_of(key: Key) -> str:
    """The keyid the specification defines: sha256 of the canonical key object."""
    canonical = encode_canonical(key.to_dict())
    assert isinstance(canonical, str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def with_online_uri(key: SSlibKey, uri: str) -> SSlibKey:
    """A copy of ``key`` that records its signer URI, with the keyid recomputed."""
    fields = dict(key.unrecognized_fields)
    fields[ONLINE_URI_FIELD] = uri
    draft = SSlibKey(key.keyid, key.keytype, key.scheme, dict(key.keyval), fields)
    return SSlibKey(keyid_of(draft), key.keytype, key.scheme, dict(key.keyval), fields)


def online_uri(key: Key) -> str | None:
    """The signer URI recorded in an online key, if any."""
    uri = key.unrecognized_fields.get(ONLINE_URI_FIELD)
    return uri if isinstance(uri, str) else None


def import_kms_key(uri: str, kms: Any | None = None) -> SSlibKey:
    """The public key of a KMS signing key, checked for a usable key spec.

    Args:
        uri: ``awskms:<key id or alias>``.
        kms: a boto3 KMS client (default: a new one from the environment).

    Raises:
        TufError: not an asymmetric SIGN_VERIFY key of a supported spec.
        AccessDeniedError: KMS refused ``GetPublicKey``.
    """
    key_id = _kms_key_id(uri)
    client = kms or _kms_client()
    try:
        reply = client.get_public_key(KeyId=key_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "AccessDeniedException":
            raise AccessDeniedError(
                f"{uri}: KMS refused GetPublicKey ({code})"
            ) from exc
        raise TufError(f"{uri}: KMS GetPublicKey failed ({code})") from exc
    except BotoCoreError as exc:
        raise TufError(f"{uri}: KMS GetPublicKey failed ({exc})") from exc

    spec = reply.get("KeySpec") or reply.get("CustomerMasterKeySpec")
    usage = reply.get("KeyUsage")
    if spec not in KMS_SCHEMES or usage != "SIGN_VERIFY":
        raise TufError(
            f"{uri}: expected a SIGN_VERIFY key of spec {sorted(KMS_SCHEMES)}, "
            f"got {spec} for {usage}"
        )
    public = load_der_public_key(reply["PublicKey"])
    return SSlibKey.from_crypto(public, scheme=KMS_SCHEMES[spec])


def _key_file_path(reference: str) -> Path:
    if reference.startswith(f"{FILE_SCHEME}:"):
        return Path(urlparse(reference).path)
    return Path(reference)


def _load_key_file(reference: str, key: SSlibKey | None = None) -> CryptoSigner:
    path = _key_file_path(reference)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise TufError(f"{reference}: cannot read the private key file") from exc
    try:
        private = load_pem_private_key(pem, password=None)
        return CryptoSigner(private, key)
    except KeyMismatchError as exc:
        raise TufError(
            f"{reference}: the private key does not match the public key in metadata"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise TufError(
            f"{reference}: expected an unencrypted PEM PKCS#8 ed25519, ECDSA or "
            "RSA private key"
        ) from exc


def public_key_for(reference: str, *, online: bool = False) -> SSlibKey:
    """The public key a private key reference signs with.

    Args:
        reference: ``awskms:...``, ``file2:<path>`` or a key file path.
        online: record the reference in the key (``x-regseal-online-uri``) so
            that functions can find the signer from metadata.
    """
    if is_kms_uri(reference):
        key = import_kms_key(reference)
    else:
        key = _load_key_file(reference).public_key
    if online:
        uri = reference
        if not is_kms_uri(reference) and not reference.startswith(f"{FILE_SCHEME}:"):
            uri = f"{FILE_SCHEME}:{_key_file_path(reference).resolve()}"
        key = with_online_uri(key, uri)
    return key


def load_signer(reference: str, *, online: bool = False, probe: bool = True) -> Signer:
    """A signer for a private key reference (see the module docstring).

    Args:
        reference: ``awskms:...``, ``file2:<path>`` or a key file path.
        online: sign as the online form of the key (keyid over the URI field).
        probe: sign and verify a probe payload before returning.

    Raises:
        TufError: the reference cannot be loaded or does not sign.
    """
    key = public_key_for(reference, online=online)
    signer = signer_for_key(key, reference)
    if probe:
        probe_signer(signer, reference)
    return signer


_signer_cache: dict[tuple[str, str], Signer] = {}
_signer_lock = threading.Lock()


def signer_for_key(key: Key, uri: str | None = None) -> Signer:
    """The signer of ``key`` from ``uri`` or from the key's recorded URI.

    Signers are cached per process by (keyid, URI).

    Raises:
        TufError: no URI, or one securesystemslib cannot load.
    """
    uri = uri or online_uri(key)
    if uri is None:
        raise TufError(
            f"key {key.keyid[:16]}...: expected an online signer URI in "
            f"{ONLINE_URI_FIELD!r}, found none"
        )
    with _signer_lock:
        cached = _signer_cache.get((key.keyid, uri))
    if cached is not None:
        return cached
    signer: Signer
    if is_kms_uri(uri):
        if not isinstance(key, SSlibKey):
            raise TufError(f"{uri}: expected an SSlibKey, got {type(key).__name__}")
        signer = AWSSigner(_kms_key_id(uri), key)
    else:
        if not isinstance(key, SSlibKey):
            raise TufError(f"{uri}: expected an SSlibKey, got {type(key).__name__}")
        signer = _load_key_file(uri, key)
    with _signer_lock:
        _signer_cache[(key.keyid, uri)] = signer
    return signer


def probe_signer(signer: Signer, reference: str) -> None:
    """Sign and verify a probe payload; raise TufError naming ``reference``."""
    try:
        signature = signer.sign(_PROBE)
        signer.public_key.verify_signature(signature, _PROBE)
    except Exception as exc:
        raise TufError(
            f"{reference}: the probe signature failed ({type(exc).__name__}); "
            "check the key, its spec and kms:Sign permission"
        ) from exc


def generate_key_file(path: str | os.PathLike[str], algorithm: str = "ed25519") -> Key:
    """Write a new offline private key (PEM PKCS#8, mode 0600); return its key.

    Args:
        path: file to create; it must not exist.
        algorithm: ``ed25519`` or ``ecdsa`` (P-256).

    Raises:
        TufError: unknown algorithm or the file exists.
    """
    makers = {
        "ed25519": CryptoSigner.generate_ed25519,
        "ecdsa": CryptoSigner.generate_ecdsa,
    }
    if algorithm not in makers:
        raise TufError(
            f"expected a key algorithm in {sorted(makers)}, got {algorithm!r}"
        )
    signer = makers[algorithm]()
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise TufError(f"{target}: refusing to overwrite an existing key file") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(signer.private_bytes)
    return signer.public_key


def keys_by_id(keys: Mapping[str, Key], keyids: list[str]) -> list[Key]:
    """The keys of ``keyids`` that ``keys`` holds, in keyid order."""
    return [keys[keyid] for keyid in keyids if keyid in keys]
