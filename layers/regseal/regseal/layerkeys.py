"""Opening a sealed layer's key: KMS first, then JWE private keys.

The operations that need a layer's private options back (re-wrap, re-key,
decrypt) all go through :class:`LayerKeys`, so they agree on one rule: a
KMS item is only used under its own encryption context, that context must
name the repository the layer is read from, and the options it yields must
name the plaintext digest the context names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from regseal import jwe, ocicrypt
from regseal import manifest as mf
from regseal.errors import (
    AccessDeniedError,
    IntegrityError,
    KeyWrapError,
    OcicryptError,
)
from regseal.kms import ANNOTATION_KMS, KmsPacket, KmsWrapper

logger = logging.getLogger(__name__)


class LayerKeys:
    """Unwraps layer keys with the caller's KMS access and/or private keys.

    Args:
        kms: a KMS wrapper using the caller's credentials, or None.
        private_keys: JWE private keys to try after KMS.
    """

    def __init__(
        self,
        kms: KmsWrapper | None = None,
        private_keys: Sequence[jwe.PrivateKey] = (),
    ) -> None:
        if kms is None and not private_keys:
            raise KeyWrapError("expected KMS access or at least one JWE private key")
        self.kms = kms
        self.private_keys = list(private_keys)

    def unwrap(self, repository: str, layer: mf.Descriptor) -> ocicrypt.PrivateOptions:
        """The private options of one encrypted layer of ``repository``.

        Raises:
            KeyWrapError: no key could open it (the message says why, per
                scheme, without key material).
            AccessDeniedError: KMS refused, naming key and repository.
        """
        reasons: list[str] = []
        kms_item = layer.annotations.get(ANNOTATION_KMS)
        if self.kms is not None and kms_item:
            for item in ocicrypt.split_items(kms_item):
                try:
                    return self._unwrap_kms(repository, item)
                except (KeyWrapError, OcicryptError, IntegrityError) as exc:
                    if isinstance(exc, AccessDeniedError) and not self.private_keys:
                        raise
                    reasons.append(f"KMS: {exc}")
        jwe_items = layer.annotations.get(ocicrypt.ANNOTATION_JWE)
        if self.private_keys and jwe_items:
            try:
                return ocicrypt.PrivateOptions.from_json(
                    jwe.unwrap(jwe_items, self.private_keys)
                )
            except (KeyWrapError, OcicryptError) as exc:
                reasons.append(f"JWE: {exc}")
        if not reasons:
            reasons.append("the layer carries no key this caller can use")
        raise KeyWrapError(
            f"layer {layer.digest} of {repository}: " + "; ".join(reasons)
        )

    def _unwrap_kms(self, repository: str, item: str) -> ocicrypt.PrivateOptions:
        assert self.kms is not None
        packet = KmsPacket.from_item(item)
        context = packet.encryption_context
        if context.get("repository") != repository:
            raise KeyWrapError(
                f"KMS item is bound to repository {context.get('repository')!r}, "
                f"not {repository!r}"
            )
        options = ocicrypt.PrivateOptions.from_json(
            self.kms.unwrap(item, expected_context=context)
        )
        if str(options.digest) != context.get("layer"):
            raise IntegrityError()
        return options
