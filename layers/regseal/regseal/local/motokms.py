"""Make moto's KMS sign ``MessageType="DIGEST"`` requests the way AWS KMS does.

moto 5.2.5 reads the message type of a ``Sign`` request and then ignores it:
its key classes always hash the message again, so a signature over a digest
that the caller computed covers sha256(digest) instead. securesystemslib's
``AWSSigner`` always sends a digest, so no TUF metadata signed with a KMS key
in moto would ever verify. This module fixes that for the local stack and for
the tests; it is no part of anything deployed.

NOTE: getmoto/moto#10202 implements DIGEST in moto. Once it is released, this
module and :mod:`regseal.local.motoserver_main` can go; the canary test in
tests/functional/test_tuf_moto_kms.py fails as soon as moto signs digests
itself, which is the signal. The fix leans on moto internals (the response
handler's ``sign`` and the name-mangled hash helpers of its key classes).

Three methods are replaced:

- the KMS response handler's ``sign`` notes, in a context variable, whether the
  request asked for ``DIGEST`` (moto's server runs each request on its own
  thread, and a context variable is per thread);
- the EC and RSA private key classes' ``sign`` then sign the given bytes as a
  precomputed hash (``Prehashed``), which also refuses a digest of the wrong
  length, as KMS does. RAW requests are signed by moto unchanged.

:func:`install` applies the fix for the rest of the process (moto's server);
:func:`kms_digest_signing` applies it for a ``with`` block (in-process
``mock_aws`` in tests).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from moto.kms import responses, utils

logger = logging.getLogger(__name__)

_digest_request: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "regseal_kms_digest_request", default=False
)
# moto's own methods, kept before anything replaces them.
_moto_response_sign = responses.KmsResponse.sign
_moto_ec_sign = utils.ECDSAPrivateKey.sign
_moto_rsa_sign = utils.RSAPrivateKey.sign


def _sign_response(self: Any) -> Any:
    token = _digest_request.set(self._get_param("MessageType") == "DIGEST")
    try:
        return _moto_response_sign(self)
    finally:
        _digest_request.reset(token)


def _sign_ec(self: Any, message: bytes, signing_algorithm: str) -> bytes:
    if not _digest_request.get():
        return bytes(_moto_ec_sign(self, message, signing_algorithm))
    utils.validate_signing_algorithm(signing_algorithm, self.valid_signing_algorithms)
    algorithm = self._ECDSAPrivateKey__hash_algorithm(signing_algorithm)
    signature: bytes = self.private_key.sign(message, ec.ECDSA(Prehashed(algorithm)))
    return signature


def _sign_rsa(self: Any, message: bytes, signing_algorithm: str) -> bytes:
    if not _digest_request.get():
        return bytes(_moto_rsa_sign(self, message, signing_algorithm))
    pad, algorithm = self._RSAPrivateKey__padding_and_hash_algorithm(signing_algorithm)
    signature: bytes = self.private_key.sign(message, pad, Prehashed(algorithm))
    return signature


_PATCHES = (
    (responses.KmsResponse, "sign", _sign_response),
    (utils.ECDSAPrivateKey, "sign", _sign_ec),
    (utils.RSAPrivateKey, "sign", _sign_rsa),
)


def install() -> None:
    """Apply the fix for the rest of this process (idempotent)."""
    for owner, name, fixed in _PATCHES:
        setattr(owner, name, fixed)
    logger.debug("moto KMS signs DIGEST messages as precomputed hashes")


@contextlib.contextmanager
def kms_digest_signing() -> Iterator[None]:
    """Within the block, moto signs DIGEST messages as AWS KMS does."""
    with contextlib.ExitStack() as patches:
        for owner, name, fixed in _PATCHES:
            patches.enter_context(mock.patch.object(owner, name, fixed))
        yield
