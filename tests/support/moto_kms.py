"""Test-only fix: make moto's KMS honour ``MessageType="DIGEST"`` when signing.

moto 5.2.5 ignores the message type and hashes the message again, so every
signature securesystemslib's AWSSigner makes (it sends a locally computed
digest) covers sha256(digest) and never verifies (getmoto/moto#10202; tuf.md §4).

:func:`kms_digest_signing` patches three moto internals for the duration of a
``with`` block:

- the KMS response handler's ``sign`` notes, in a context variable, whether
  the request asked for DIGEST;
- the EC and RSA private key classes' ``sign`` then sign the given bytes as a
  precomputed hash (``Prehashed``) instead of hashing them.

It works with in-process ``mock_aws`` (and a ThreadedMotoServer in the same
process), not with a separate moto_server process. The canary test in
tests/functional/test_tuf_moto_kms.py fails as soon as moto implements DIGEST,
which is the signal to delete this module.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from moto.kms import responses, utils

_digest_request: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "regseal_kms_digest_request", default=False
)
_response_sign = responses.KmsResponse.sign
_ec_sign = utils.ECDSAPrivateKey.sign
_rsa_sign = utils.RSAPrivateKey.sign


def _sign_response(self: Any) -> Any:
    token = _digest_request.set(self._get_param("MessageType") == "DIGEST")
    try:
        return _response_sign(self)
    finally:
        _digest_request.reset(token)


def _sign_ec(self: Any, message: bytes, signing_algorithm: str) -> bytes:
    if not _digest_request.get():
        return _ec_sign(self, message, signing_algorithm)
    utils.validate_signing_algorithm(signing_algorithm, self.valid_signing_algorithms)
    algorithm = self._ECDSAPrivateKey__hash_algorithm(signing_algorithm)
    signature: bytes = self.private_key.sign(message, ec.ECDSA(Prehashed(algorithm)))
    return signature


def _sign_rsa(self: Any, message: bytes, signing_algorithm: str) -> bytes:
    if not _digest_request.get():
        return _rsa_sign(self, message, signing_algorithm)
    pad, algorithm = self._RSAPrivateKey__padding_and_hash_algorithm(signing_algorithm)
    signature: bytes = self.private_key.sign(message, pad, Prehashed(algorithm))
    return signature


@contextlib.contextmanager
def kms_digest_signing() -> Iterator[None]:
    """Within the block, moto signs DIGEST messages as AWS KMS does."""
    with (
        mock.patch.object(responses.KmsResponse, "sign", _sign_response),
        mock.patch.object(utils.ECDSAPrivateKey, "sign", _sign_ec),
        mock.patch.object(utils.RSAPrivateKey, "sign", _sign_rsa),
    ):
        yield
