"""KMS key wrapping: the ``org.opencontainers.image.enc.keys.provider.regseal`` item.

A layer's private-options JSON (about 190 bytes, far below KMS's 4 KiB limit)
is encrypted whole with KMS ``Encrypt`` under the encryption context
``{"repository": <name>, "layer": <plaintext layer digest>}``, so a key policy
can grant one team's repositories and nothing else, and CloudTrail names the
layer. The annotation item is standard base64 of a JSON packet in the shape of
Confidential Containers' CDH v2 ``aws`` packet (``reference/ocicrypt.md``
§6.2), which carries everything unwrapping needs, because a keyprovider
request names no repository::

    {"version":"0.1.0","provider":"aws","kid":"<key ARN>",
     "wrapped_data":"<base64 CiphertextBlob>",
     "provider_settings":{"region":"<region>"},
     "annotations":{"encryption_context":{"repository":…,"layer":…}}}

This module is also the KMS adapter: botocore names stay here, and botocore
errors become :mod:`regseal.errors` exceptions that name the key and the
repository, never key bytes.

Public API: :data:`PROVIDER_NAME`, :data:`ANNOTATION_KMS`,
:func:`encryption_context`, :class:`KmsPacket`, :class:`KmsWrapper`,
:func:`regional_client`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from regseal.digest import Digest
from regseal.errors import (
    AccessDeniedError,
    IntegrityError,
    KeyWrapError,
    OcicryptError,
)
from regseal.ocicrypt import (
    PROVIDER_ANNOTATION_PREFIX,
    decode_base64,
    dump_json,
    encode_base64,
    load_json_object,
)

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

logger = logging.getLogger(__name__)

PROVIDER_NAME = "regseal"
"""The keyprovider name; the annotation key ends with it."""

ANNOTATION_KMS = PROVIDER_ANNOTATION_PREFIX + PROVIDER_NAME

PACKET_VERSION = "0.1.0"
PACKET_PROVIDER = "aws"

_PACKET_KEYS = frozenset(
    {"version", "provider", "kid", "wrapped_data", "provider_settings", "annotations"}
)

_DENIED = frozenset({"AccessDeniedException", "IncorrectKeyException"})
_BAD_CIPHERTEXT = frozenset({"InvalidCiphertextException"})


def encryption_context(repository: str, layer_digest: Digest | str) -> dict[str, str]:
    """The KMS encryption context that binds a layer key to its repository.

    Args:
        repository: The repository name, e.g. ``team-a/app``.
        layer_digest: The digest of the plaintext layer blob.

    Raises:
        KeyWrapError: An empty repository name.
        DigestError: ``layer_digest`` is not a sha256 digest.
    """
    if not repository:
        raise KeyWrapError("expected a repository name for the encryption context")
    return {"repository": repository, "layer": str(Digest.parse(str(layer_digest)))}


def _describe(context: Mapping[str, str]) -> str:
    repository = context.get("repository")
    return f"repository {repository!r}" if repository else f"context {dict(context)}"


@dataclass(frozen=True)
class KmsPacket:
    """One KMS annotation item, parsed.

    ``encryption_context`` is a plain dict; treat it as read-only.
    """

    kid: str
    wrapped_data: bytes = field(repr=False)
    region: str
    encryption_context: dict[str, str]

    def to_item(self) -> str:
        """The annotation item: standard base64 of the packet JSON."""
        packet = {
            "version": PACKET_VERSION,
            "provider": PACKET_PROVIDER,
            "kid": self.kid,
            "wrapped_data": encode_base64(self.wrapped_data),
            "provider_settings": {"region": self.region},
            "annotations": {"encryption_context": dict(self.encryption_context)},
        }
        return encode_base64(dump_json(packet))

    @classmethod
    def from_item(cls, item: str) -> KmsPacket:
        """Parse and validate an annotation item.

        Raises:
            OcicryptError: Not standard base64 of a JSON object; another
                version or provider; unknown members; ``kid`` or ``region``
                missing or empty; ``wrapped_data`` not base64; an encryption
                context that is not an object of strings.
        """
        obj = load_json_object(
            decode_base64(item, f"an item of {ANNOTATION_KMS}"), "KMS packet"
        )
        unknown = sorted(set(obj) - _PACKET_KEYS)
        if unknown:
            raise OcicryptError(f"KMS packet has unknown members {unknown}")
        for name, expected in (
            ("version", PACKET_VERSION),
            ("provider", PACKET_PROVIDER),
        ):
            if obj.get(name) != expected:
                raise OcicryptError(
                    f"expected KMS packet {name} {expected!r}, got {obj.get(name)!r}"
                )
        kid = obj.get("kid")
        if not isinstance(kid, str) or not kid:
            raise OcicryptError("expected a KMS packet 'kid' naming a KMS key")
        settings = _object_member(obj, "provider_settings")
        if set(settings) != {"region"} or not _nonempty_str(settings["region"]):
            raise OcicryptError(
                "expected KMS packet provider_settings to be exactly {'region': …}"
            )
        annotations = _object_member(obj, "annotations")
        if set(annotations) - {"encryption_context"}:
            raise OcicryptError(
                "expected only 'encryption_context' in KMS packet annotations"
            )
        context = annotations.get("encryption_context", {})
        if not isinstance(context, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in context.items()
        ):
            raise OcicryptError(
                "expected the KMS packet encryption_context to map strings to strings"
            )
        wrapped = decode_base64(obj.get("wrapped_data"), "KMS packet 'wrapped_data'")
        if not wrapped:
            raise OcicryptError("KMS packet 'wrapped_data' is empty")
        return cls(kid, wrapped, settings["region"], context)


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _object_member(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if not isinstance(value, dict):
        raise OcicryptError(f"expected KMS packet member {name!r} to be an object")
    return value


class KmsWrapper:
    """Wrap and unwrap layer options with AWS KMS.

    Args:
        client: A boto3 KMS client. Its region is written into each packet,
            and unwrapping refuses packets from another region.
    """

    def __init__(self, client: KMSClient) -> None:
        self._client = client
        region = client.meta.region_name
        if not region:
            raise KeyWrapError("the KMS client has no region")
        self._region = region

    def wrap(
        self, privopts_json: bytes, key_id: str, context: Mapping[str, str]
    ) -> str:
        """Encrypt private options under ``key_id`` with ``context``.

        Args:
            privopts_json: The private-options JSON bytes.
            key_id: A KMS key id, ARN or alias.
            context: The encryption context, from :func:`encryption_context`.

        Returns:
            One annotation item for :data:`ANNOTATION_KMS`; its ``kid`` is
            the key ARN KMS reports, so unwrapping needs no alias lookup.

        Raises:
            AccessDeniedError: KMS refused ``Encrypt`` for this key.
            KeyWrapError: Any other KMS or transport failure.
        """
        try:
            reply = self._client.encrypt(
                KeyId=key_id,
                Plaintext=privopts_json,
                EncryptionContext=dict(context),
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "Encrypt", key_id, context) from exc
        packet = KmsPacket(
            kid=reply["KeyId"],
            wrapped_data=reply["CiphertextBlob"],
            region=self._region,
            encryption_context=dict(context),
        )
        logger.debug("wrapped layer options with KMS key %s", packet.kid)
        return packet.to_item()

    def unwrap(
        self, item: str, *, expected_context: Mapping[str, str] | None = None
    ) -> bytes:
        """Decrypt the private options held by one annotation item.

        Args:
            item: One item of the :data:`ANNOTATION_KMS` annotation.
            expected_context: When given, the packet's encryption context
                must equal it (e.g. the repository the layer was pulled from).

        Returns:
            The private-options JSON bytes.

        Raises:
            OcicryptError: The item is not a valid packet.
            KeyWrapError: The packet's context is not ``expected_context``,
                the packet names another region, or KMS failed otherwise.
            AccessDeniedError: KMS refused ``Decrypt`` (no permission, or
                the ciphertext belongs to another key).
            IntegrityError: KMS could not decrypt: the context does not
                match the one used to wrap, or the ciphertext is damaged.
        """
        packet = KmsPacket.from_item(item)
        context = packet.encryption_context
        if expected_context is not None and dict(expected_context) != context:
            raise KeyWrapError(
                f"KMS packet for key {packet.kid} is bound to {_describe(context)} "
                f"(context {context}), expected context {dict(expected_context)}"
            )
        if packet.region != self._region:
            raise KeyWrapError(
                f"KMS packet for key {packet.kid} names region {packet.region!r}, "
                f"but the KMS client is for {self._region!r}"
            )
        try:
            reply = self._client.decrypt(
                KeyId=packet.kid,
                CiphertextBlob=packet.wrapped_data,
                EncryptionContext=context,
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "Decrypt", packet.kid, context) from exc
        logger.debug("unwrapped layer options with KMS key %s", packet.kid)
        return reply["Plaintext"]

    @staticmethod
    def _error(
        exc: ClientError | BotoCoreError,
        operation: str,
        key_id: str,
        context: Mapping[str, str],
    ) -> KeyWrapError | IntegrityError:
        code = (
            exc.response["Error"].get("Code", "")
            if isinstance(exc, ClientError)
            else ""
        )
        status = (
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(exc, ClientError)
            else None
        )
        where = f"KMS key {key_id} for {_describe(context)}"
        # A 403 is a refusal too: IAM in front of KMS (moto's IAM mode, a
        # VPC endpoint policy) answers with a bare status, not a KMS code.
        if code in _DENIED or status == 403:
            code = code if code in _DENIED else "HTTP 403"
            return AccessDeniedError(f"KMS {operation} denied ({code}) with {where}")
        if code in _BAD_CIPHERTEXT:
            return IntegrityError(
                f"KMS could not decrypt the layer key wrapped with {where}: the "
                "encryption context does not match or the ciphertext is damaged"
            )
        return KeyWrapError(f"KMS {operation} failed ({code or exc}) with {where}")


def regional_client(region: str) -> KMSClient:
    """A KMS client for ``region`` with short timeouts, for pull-side callers.

    The endpoint and credentials come from the standard AWS environment
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, profiles, instance roles).
    """
    import boto3
    from botocore.config import Config

    # Pull-side callers wait on KMS interactively: fail within seconds rather
    # than after botocore's default minute.
    config = Config(
        connect_timeout=5,
        read_timeout=20,
        retries={"mode": "standard", "max_attempts": 3},
    )
    client: KMSClient = boto3.client("kms", region_name=region, config=config)
    return client
