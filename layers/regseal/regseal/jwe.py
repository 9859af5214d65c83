"""JWE key wrapping: the ``org.opencontainers.image.enc.keys.jwe`` annotation.

Each item of the annotation is standard base64 of one JWE whose plaintext is
the layer's private-options JSON (``reference/ocicrypt.md`` §3). regseal
writes what every decoder accepts (§3.3): one JWE per recipient in flattened
JSON serialization, ``enc`` ``A256GCM``, ``alg`` ``RSA-OAEP`` for RSA keys
and ``ECDH-ES+A256KW`` for EC P-256/P-384/P-521 keys. It reads compact,
flattened and general JSON serializations, ignores go-jose's extra top-level
``encrypted_key``, and accepts exactly go-jose's ``alg`` and ``enc``
allow-lists, checked for every recipient of a JWE as go-jose does.

Public API: :class:`Recipient` (a public key to wrap for), :func:`wrap`,
:func:`wrap_all`, :func:`load_private_key` and :func:`unwrap`; the constants
:data:`KEY_ALGORITHMS` and :data:`CONTENT_ALGORITHMS`; :func:`set_key_cache_size`.

Loading an RSA private key checks it (OpenSSL tests its primes), about 100 ms
for 2,048 bits and several times that for 4,096, and jwcrypto builds the key
again from its numbers for every new JWK. Both results are cached, bounded:
:func:`load_private_key` by a sha256 of the PEM bytes (and password), and
:func:`unwrap` keeps one JWK per key object, so decrypting an image of many
layers pays for each key once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk
from jwcrypto.common import JWException

from regseal.errors import KeyWrapError, OcicryptError
from regseal.ocicrypt import (
    ANNOTATION_JWE,
    decode_base64,
    encode_base64,
    load_json_object,
    split_items,
)

logger = logging.getLogger(__name__)

PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

RSA_ALGORITHM = "RSA-OAEP"
EC_ALGORITHM = "ECDH-ES+A256KW"
CONTENT_ALGORITHM = "A256GCM"

KEY_ALGORITHMS = frozenset(
    {"RSA-OAEP", "RSA-OAEP-256", "ECDH-ES+A128KW", "ECDH-ES+A192KW", "ECDH-ES+A256KW"}
)
"""``alg`` values go-jose (and so ocicrypt) accepts when decrypting."""

CONTENT_ALGORITHMS = frozenset(
    {
        "A128CBC-HS256",
        "A192CBC-HS384",
        "A256CBC-HS512",
        "A128GCM",
        "A192GCM",
        "A256GCM",
    }
)
"""``enc`` values go-jose (and so ocicrypt) accepts when decrypting."""

_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_MIN_RSA_BITS = 2048


def _check_key_type(key: object, source: str, kind: str) -> None:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if key.curve.name in _CURVES:
            return
        got = f"an EC key on {key.curve.name}"
    else:
        got = f"a {type(key).__name__}"
    raise KeyWrapError(
        f"expected an RSA or EC P-256/P-384/P-521 {kind} key in {source}, got {got}"
    )


@dataclass(frozen=True)
class Recipient:
    """A JWE recipient: a public key, and where it came from for messages."""

    key: PublicKey
    source: str

    def __post_init__(self) -> None:
        _check_key_type(self.key, self.source, "public")
        if isinstance(self.key, rsa.RSAPublicKey) and self.key.key_size < _MIN_RSA_BITS:
            raise KeyWrapError(
                f"expected an RSA key of at least {_MIN_RSA_BITS} bits in "
                f"{self.source}, got {self.key.key_size} bits"
            )

    @classmethod
    def from_pem(cls, data: bytes, *, source: str) -> Recipient:
        """Load a recipient from a PEM public key (SubjectPublicKeyInfo or PKCS#1).

        Args:
            data: The PEM text.
            source: Names the input in error messages (a path, a policy entry).

        Raises:
            KeyWrapError: Not a PEM public key, or not RSA or EC
                P-256/P-384/P-521.
        """
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise KeyWrapError(
                f"expected a PEM public key in {source}, found none that loads"
            ) from None
        _check_key_type(key, source, "public")
        assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        return cls(key, source)

    @property
    def algorithm(self) -> str:
        """The JWE ``alg`` regseal uses for this key."""
        return RSA_ALGORITHM if isinstance(self.key, rsa.RSAPublicKey) else EC_ALGORITHM

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the DER SubjectPublicKeyInfo.

        JWE items carry no ``kid``; this is how a caller can record which
        item belongs to which recipient.
        """
        der = self.key.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        return "sha256:" + hashlib.sha256(der).hexdigest()


def wrap(privopts_json: bytes, recipient: Recipient) -> str:
    """Wrap private options for one recipient.

    Args:
        privopts_json: The private-options JSON bytes
            (:meth:`regseal.ocicrypt.PrivateOptions.to_json`).
        recipient: Who may unwrap it.

    Returns:
        One annotation item: standard base64 of a flattened JSON JWE.
    """
    header = {"alg": recipient.algorithm, "enc": CONTENT_ALGORITHM}
    token = jwcrypto_jwe.JWE(
        privopts_json, protected=json.dumps(header, separators=(",", ":"))
    )
    token.add_recipient(jwk.JWK.from_pyca(recipient.key))
    serialized: str = token.serialize(compact=False)
    return encode_base64(serialized.encode("ascii"))


def wrap_all(privopts_json: bytes, recipients: Sequence[Recipient]) -> str:
    """The ``keys.jwe`` annotation value: one item per recipient, comma-joined.

    Raises:
        KeyWrapError: ``recipients`` is empty.
    """
    if not recipients:
        raise KeyWrapError("expected at least one JWE recipient, got none")
    items = [wrap(privopts_json, recipient) for recipient in recipients]
    logger.debug("wrapped layer options for %d JWE recipients", len(items))
    return ",".join(items)


class _Cache:
    """A small least-recently-used map, safe to share between threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # outside the lock: a slow load must not block hits
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


KEY_CACHE_SIZE = 32
"""Private keys (and as many JWKs) kept by default."""

_loaded = _Cache(KEY_CACHE_SIZE)
_jwks = _Cache(KEY_CACHE_SIZE)


def set_key_cache_size(size: int) -> None:
    """Keep at most ``size`` loaded keys (0 turns the caches off); empties them.

    Raises:
        ValueError: ``size`` is negative.
    """
    if size < 0:
        raise ValueError(f"key cache size: expected 0 or more, got {size}")
    for cache in (_loaded, _jwks):
        cache.clear()
        cache.size = size


def load_private_key(
    data: bytes, *, source: str, password: bytes | None = None
) -> PrivateKey:
    """Load an RSA or EC private key from PEM: PKCS#8, PKCS#1 or SEC1.

    The same PEM bytes and password give the same key object again without
    loading it a second time (see the module docstring).

    NOTE: skopeo only takes PKCS#8 EC keys (``reference/registry-on-s3.md``
    §6.2); regseal also reads the traditional forms.

    Raises:
        KeyWrapError: No PEM private key that loads with ``password``, or a
            key that is not RSA or EC P-256/P-384/P-521. The message names
            ``source`` and never the key.
    """
    fingerprint = hashlib.sha256()
    if password is not None:
        # Another password must load (or fail) afresh, never hit this entry.
        fingerprint.update(b"%d:" % len(password) + password)
    fingerprint.update(data)

    def load() -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyWrapError(
                f"expected a PEM private key in {source}, found none that loads"
                + (" with the given password" if password is not None else "")
            ) from None
        _check_key_type(key, source, "private")
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        return key

    if _loaded.size == 0:
        return load()
    key: PrivateKey = _loaded.get(fingerprint.digest(), load)
    return key


def _jwk(key: PrivateKey) -> jwk.JWK:
    """The JWK of ``key``, built once per key object while it stays cached."""
    if _jwks.size == 0:
        return jwk.JWK.from_pyca(key)
    # The entry holds the key itself, so its id cannot be reused meanwhile.
    entry: tuple[PrivateKey, jwk.JWK] = _jwks.get(
        id(key), lambda: (key, jwk.JWK.from_pyca(key))
    )
    return entry[1]


# --------------------------------------------------------------------------
# Unwrapping


def _b64url_json(text: object, what: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise OcicryptError(f"expected {what} as a base64url string")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise OcicryptError(f"expected {what} in base64url") from None
    return load_json_object(raw, what)


def _optional_object(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name, {})
    if not isinstance(value, dict):
        raise OcicryptError(f"expected JWE member {name!r} to be an object")
    return value


def _check_header(header: dict[str, Any]) -> None:
    """Apply go-jose's allow-lists to one recipient's joint header."""
    alg, enc = header.get("alg"), header.get("enc")
    if alg not in KEY_ALGORITHMS:
        raise OcicryptError(f"JWE alg {alg!r} is not one of {sorted(KEY_ALGORITHMS)}")
    if enc not in CONTENT_ALGORITHMS:
        raise OcicryptError(
            f"JWE enc {enc!r} is not one of {sorted(CONTENT_ALGORITHMS)}"
        )
    # No ocicrypt producer compresses or marks critical extensions.
    for name in ("zip", "crit"):
        if name in header:
            raise OcicryptError(f"JWE header {name!r} is not accepted")


def _checked_jwe(text: str) -> str:
    """Validate one JWE's headers; return it in a form jwcrypto reads.

    Raises:
        OcicryptError: Malformed, or a header outside the allow-lists.
    """
    if not text.lstrip().startswith("{"):
        parts = text.split(".")
        if len(parts) != 5:
            raise OcicryptError("expected a JWE in JSON or compact serialization")
        _check_header(_b64url_json(parts[0], "JWE protected header"))
        return text

    obj = load_json_object(text.encode("utf-8"), "JWE")
    protected = (
        _b64url_json(obj["protected"], "JWE protected header")
        if "protected" in obj
        else {}
    )
    shared = _optional_object(obj, "unprotected")
    if "recipients" in obj:
        recipients = obj["recipients"]
        if not isinstance(recipients, list) or not recipients:
            raise OcicryptError("expected JWE 'recipients' to be a non-empty list")
        if "header" in obj:
            raise OcicryptError("JWE with 'recipients' has a top-level 'header'")
        # go-jose repeats recipient 0's key at the top level; drop it.
        obj.pop("encrypted_key", None)
    else:
        recipients = [obj]
    for recipient in recipients:
        if not isinstance(recipient, dict):
            raise OcicryptError("expected each JWE recipient to be an object")
        _check_header({**protected, **shared, **_optional_object(recipient, "header")})
    return json.dumps(obj)


def unwrap(annotation_value: str, private_keys: Sequence[PrivateKey]) -> bytes:
    """Unwrap the private options from a ``keys.jwe`` annotation value.

    Every item is tried with every key, in order; the first that decrypts
    wins. Items that are malformed or outside the allow-lists are skipped.

    Args:
        annotation_value: The comma-joined annotation value.
        private_keys: Keys from :func:`load_private_key`.

    Returns:
        The private-options JSON bytes (parse them with
        :meth:`regseal.ocicrypt.PrivateOptions.from_json`).

    Raises:
        KeyWrapError: No item could be unwrapped with any key. The message
            says why each item failed, without key material.
    """
    keys = [_jwk(key) for key in private_keys]
    algorithms = sorted(KEY_ALGORITHMS | CONTENT_ALGORITHMS)
    reasons: list[str] = []
    for index, item in enumerate(split_items(annotation_value)):
        try:
            raw = decode_base64(item, f"item {index} of {ANNOTATION_JWE}")
            token = _checked_jwe(raw.decode("utf-8"))
        except (OcicryptError, UnicodeDecodeError) as exc:
            reasons.append(f"item {index}: {exc}")
            continue
        for key in keys:
            candidate = jwcrypto_jwe.JWE(algs=algorithms)
            try:
                candidate.deserialize(token, key)
            except (JWException, ValueError, TypeError, KeyError):
                continue
            logger.debug("unwrapped JWE item %d", index)
            payload: bytes = candidate.payload
            return payload
        reasons.append(f"item {index}: none of {len(keys)} keys decrypts it")
    raise KeyWrapError(
        "no recipient key could unwrap the layer's JWE annotation ("
        + "; ".join(reasons)
        + ")"
    )
