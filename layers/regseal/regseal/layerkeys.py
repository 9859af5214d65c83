"""Opening a sealed layer's key: JWE private keys first, then KMS.

Every operation that needs a layer's private options back (decrypt,
re-wrap) goes through :class:`LayerKeys`, so they agree on one rule: a KMS
item is only used under its own encryption context; when the caller knows
the repository the layer was read from, that context must name it; and the
options KMS returns must name the plaintext digest the context names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from regseal import jwe, ocicrypt
from regseal.errors import (
    AccessDeniedError,
    IntegrityError,
    KeyWrapError,
    OcicryptError,
)
from regseal.kms import ANNOTATION_KMS, KmsPacket, KmsWrapper

logger = logging.getLogger(__name__)


class LayerKeys:
    """Unwraps layer keys with JWE private keys and/or the caller's KMS access.

    Args:
        private_keys: JWE private keys, tried first (no network call).
        kms: returns a KMS wrapper for a region (packets name their region);
            None means no KMS call is made.
    """

    def __init__(
        self,
        private_keys: Sequence[jwe.PrivateKey] = (),
        kms: Callable[[str], KmsWrapper] | None = None,
    ) -> None:
        if kms is None and not private_keys:
            raise KeyWrapError("expected KMS access or at least one JWE private key")
        self.private_keys = tuple(private_keys)
        self.kms = kms

    def unwrap(
        self,
        wrapped: Mapping[str, Sequence[str]],
        where: str,
        repository: str | None = None,
    ) -> ocicrypt.PrivateOptions:
        """The private options of one encrypted layer.

        Args:
            wrapped: the layer's key annotations, annotation key to items
                (as :func:`regseal.ocicrypt.parse_layer_annotations` gives).
            where: names the layer in messages.
            repository: the repository the layer was read from, if known.

        Raises:
            AccessDeniedError: KMS refused (naming key and repository) and no
                other key worked.
            KeyWrapError: no key could open it; the message says why, per
                scheme, without key material.
        """
        reasons: list[str] = []
        denied = False
        if self.private_keys:
            items = wrapped.get(ocicrypt.ANNOTATION_JWE)
            if not items:
                reasons.append("JWE: the layer has no JWE recipients")
            else:
                try:
                    payload = jwe.unwrap(",".join(items), self.private_keys)
                    return ocicrypt.PrivateOptions.from_json(payload)
                except (KeyWrapError, OcicryptError) as exc:
                    reasons.append(f"JWE: {exc}")
        if self.kms is not None:
            items = wrapped.get(ANNOTATION_KMS)
            if not items:
                reasons.append(f"KMS: the layer has no {ANNOTATION_KMS} annotation")
            for item in items or ():
                try:
                    return self._unwrap_kms(item, repository)
                except AccessDeniedError as exc:
                    denied = True
                    reasons.append(f"KMS: {exc}")
                except (KeyWrapError, OcicryptError, IntegrityError) as exc:
                    reasons.append(f"KMS: {exc}")
        error = AccessDeniedError if denied else KeyWrapError
        raise error(f"{where}: no key could unwrap it: " + "; ".join(reasons))

    def _unwrap_kms(self, item: str, repository: str | None) -> ocicrypt.PrivateOptions:
        assert self.kms is not None
        packet = KmsPacket.from_item(item)
        context = packet.encryption_context
        bound = context.get("repository")
        if repository is not None and bound != repository:
            raise KeyWrapError(
                f"KMS key {packet.kid} is bound to repository {bound!r}, but the "
                f"image was read as repository {repository!r}"
            )
        options = ocicrypt.PrivateOptions.from_json(
            self.kms(packet.region).unwrap(item, expected_context=context)
        )
        layer = context.get("layer")
        if layer is not None and str(options.digest) != layer:
            raise IntegrityError(
                f"KMS key {packet.kid} unwrapped options for {options.digest}, but "
                f"its encryption context names layer {layer}"
            )
        return options
