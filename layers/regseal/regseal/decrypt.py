"""Decrypt a sealed image into an OCI layout, as ``skopeo copy --decryption-key``.

The output is byte for byte what Debian's skopeo 1.9.3 writes for the same
image (``--all`` for an index), so a regseal-decrypted image and a
skopeo-decrypted one have the same digests:

- each encrypted layer becomes its plaintext blob, with the media type minus
  ``+encrypted`` and every ``org.opencontainers.image.enc.*`` annotation
  dropped; the manifest is serialized through Go's structs
  (:mod:`regseal.gojson`); a manifest without encrypted layers is copied as
  it is;
- an index is rebuilt from its children, every platform decrypted;
- config and plaintext blobs are copied after their digest is checked;
  layers hosted elsewhere (``urls``) are not copied, as skopeo skips them.

Checks (``reference/ocicrypt.md`` §7): every blob's digest and size, the
HMAC before any plaintext is written (:func:`regseal.ocicrypt.decrypt_layer`),
and the private options' plaintext digest for images regseal sealed (their
manifests carry ``dev.regseal.plaintext-manifest``); for other producers a
stale digest is only a warning. A KMS packet must be bound to the repository
the image is read from (when that is known) and its options to the layer
digest of its encryption context.

Keys: JWE private keys are tried first, then KMS (``kms:Decrypt`` with the
packet's key and encryption context, the caller's AWS credentials). Nothing
reaches the destination unless every layer decrypted: the output is staged
and committed by :class:`regseal.ocilayout.LayoutWriter`.

Public API: :class:`ImageSource`, :class:`DecryptKeys`, :class:`DecryptResult`,
:func:`decrypt_image`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from regseal import gojson, jwe, ocicrypt
from regseal import manifest as mf
from regseal.digest import Digest
from regseal.errors import (
    IntegrityError,
    KeyWrapError,
    ManifestError,
    OcicryptError,
)
from regseal.kms import KmsWrapper
from regseal.layerkeys import LayerKeys
from regseal.ocilayout import LayoutWriter, read_chunks
from regseal.progress import Progress

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

logger = logging.getLogger(__name__)


class ImageSource(Protocol):
    """Where an image is read from: an OCI layout or a registry repository."""

    name: str
    """The reference, for messages (``docker://…`` or ``oci:…``)."""
    repository: str | None
    """The repository the image is read from, when the source has one."""

    def top(self) -> tuple[bytes, Digest]:
        """The manifest or index the reference names, and its digest."""
        ...

    def manifest(self, digest: Digest) -> bytes:
        """A manifest by digest, checked against it."""
        ...

    def fetch(
        self,
        digest: Digest,
        size: int,
        scratch: Callable[[], Path],
        report: Callable[[int], None],
    ) -> Path:
        """A local file holding the blob (downloaded into ``scratch()`` if need be)."""
        ...


@dataclass(frozen=True)
class DecryptKeys:
    """The keys a decryption may use.

    Attributes:
        private_keys: JWE private keys, tried first.
        kms: KMS clients by region; None means no KMS call is made.
    """

    private_keys: tuple[jwe.PrivateKey, ...] = ()
    kms: Callable[[str], KMSClient] | None = None


@dataclass(frozen=True)
class DecryptResult:
    """What a decryption wrote."""

    digest: Digest
    media_type: str
    manifests: int
    layers_decrypted: int
    bytes_decrypted: int


def decrypt_image(
    source: ImageSource,
    writer: LayoutWriter,
    keys: DecryptKeys,
    *,
    expected_repository: str | None = None,
    progress: Progress | None = None,
) -> DecryptResult:
    """Decrypt the image ``source`` names and commit it with ``writer``.

    Args:
        source: The sealed image.
        writer: The destination layout; committed on success, aborted on
            any error (nothing is left in the destination).
        keys: JWE private keys and/or KMS.
        expected_repository: The repository KMS packets must be bound to;
            defaults to the source's repository (none for OCI layouts).
        progress: Draws a bar for large layers.

    Raises:
        AccessDeniedError: KMS refused every key of a layer (the message
            names the key and the repository context).
        KeyWrapError: No given key opens a layer.
        IntegrityError: A blob, HMAC or plaintext digest did not verify.
        ManifestError: The image is not one regseal can decrypt.
    """
    work = _Decryption(
        source,
        writer,
        keys,
        expected_repository or source.repository,
        progress or Progress(io.StringIO(), enabled=False),
    )
    try:
        result = work.run()
    except BaseException:
        writer.abort()
        raise
    return result


class _Decryption:
    def __init__(
        self,
        source: ImageSource,
        writer: LayoutWriter,
        keys: DecryptKeys,
        repository: str | None,
        progress: Progress,
    ) -> None:
        self.source = source
        self.writer = writer
        self.keys = keys
        self.repository = repository
        self.progress = progress
        self.manifests = 0
        self.layers = 0
        self.bytes = 0
        if not keys.private_keys and keys.kms is None:
            raise KeyWrapError("expected JWE private keys or KMS to decrypt with")
        kms = keys.kms
        self.layer_keys = LayerKeys(
            keys.private_keys,
            None if kms is None else (lambda region: KmsWrapper(kms(region))),
        )

    def run(self) -> DecryptResult:
        data, digest = self.source.top()
        parsed = mf.parse(data, f"{self.source.name} ({digest})")
        if isinstance(parsed, mf.ImageIndex):
            output, media_type = self._index(parsed)
        else:
            output, media_type = self._manifest(parsed, data)
        out_digest = self.writer.add_bytes(output)
        self.writer.commit(media_type, out_digest, len(output))
        return DecryptResult(
            out_digest, media_type, self.manifests, self.layers, self.bytes
        )

    # -- manifests ---------------------------------------------------------

    def _index(self, index: mf.ImageIndex) -> tuple[bytes, str]:
        where = f"{self.source.name} index {index.digest}"
        if index.media_type != mf.OCI_INDEX:
            raise ManifestError(
                f"{where}: expected an OCI image index, got {index.media_type!r} "
                "(regseal seals into OCI indexes; copy plaintext Docker lists "
                "with skopeo)"
            )
        children: list[dict[str, Any]] = []
        for position, child in enumerate(index.manifests):
            child_where = f"{where} manifests[{position}]"
            if child.media_type not in mf.MANIFEST_TYPES:
                raise ManifestError(
                    f"{child_where}: expected an image manifest, got "
                    f"{child.media_type!r} (nested indexes are not decrypted)"
                )
            data = self.source.manifest(child.digest)
            if len(data) != child.size:
                raise IntegrityError(
                    f"{child_where}: manifest {child.digest} has {len(data)} bytes, "
                    f"the index says {child.size}"
                )
            parsed = mf.parse(data, f"{child_where} ({child.digest})")
            if not isinstance(parsed, mf.ImageManifest):
                raise ManifestError(f"{child_where}: nested indexes are not decrypted")
            output, media_type = self._manifest(parsed, data)
            digest = self.writer.add_bytes(output)
            children.append(
                {
                    **child.raw,
                    "mediaType": media_type,
                    "digest": digest.value,
                    "size": len(output),
                }
            )
        return gojson.index_from_components(children, index.annotations), mf.OCI_INDEX

    def _manifest(self, image: mf.ImageManifest, data: bytes) -> tuple[bytes, str]:
        where = f"{self.source.name} manifest {image.digest}"
        if image.media_type != mf.OCI_MANIFEST:
            raise ManifestError(
                f"{where}: expected an OCI image manifest, got {image.media_type!r} "
                "(regseal seals into OCI manifests; copy plaintext Docker images "
                "with skopeo)"
            )
        self.manifests += 1
        enforce = mf.ANNOTATION_PLAINTEXT in image.annotations
        self._copy(image.config, where)
        layers: list[dict[str, Any]] = []
        changed = False
        for layer in image.layers:
            encrypted = ocicrypt.is_encrypted_media_type(layer.media_type)
            if layer.urls:
                if encrypted:
                    raise ManifestError(
                        f"{where}: layer {layer.digest} is encrypted but hosted "
                        "elsewhere (urls); regseal does not fetch foreign blobs"
                    )
                # skopeo does not copy foreign layers into a layout either.
                layers.append(_layer(layer))
            elif encrypted:
                layers.append(self._decrypt_layer(layer, where, enforce))
                changed = True
            else:
                self._copy(layer, where)
                layers.append(_layer(layer))
        if not changed:
            logger.warning("%s has no encrypted layers; copied as it is", where)
            return data, image.media_type
        return gojson.manifest(image.raw, layers), image.media_type

    # -- blobs -------------------------------------------------------------

    def _fetch(self, descriptor: mf.Descriptor) -> Path:
        return self.source.fetch(
            descriptor.digest,
            descriptor.size,
            self.writer.scratch,
            self.progress.step(
                f"download {descriptor.digest.hex[:12]}", descriptor.size
            ),
        )

    def _copy(self, descriptor: mf.Descriptor, where: str) -> None:
        path = self._fetch(descriptor)
        digest, size = self.writer.add_blob(read_chunks(path))
        if digest != descriptor.digest or size != descriptor.size:
            raise IntegrityError(
                f"{where}: blob {descriptor.digest} does not match its descriptor "
                f"(got {digest}, {size} bytes)"
            )

    def _decrypt_layer(
        self, layer: mf.Descriptor, where: str, enforce: bool
    ) -> dict[str, Any]:
        where = f"{where} layer {layer.digest}"
        try:
            public, wrapped = ocicrypt.parse_layer_annotations(layer.annotations)
        except OcicryptError as exc:
            raise OcicryptError(f"{where}: {exc}") from None
        private = self.layer_keys.unwrap(wrapped, where, self.repository)
        path = self._fetch(layer)
        passes = iter(("verify", "decrypt"))

        def ciphertext() -> Iterator[bytes]:
            label = f"{next(passes, 'read')} {layer.digest.hex[:12]}"
            return self.progress.track(label, layer.size, read_chunks(path))

        try:
            plaintext = ocicrypt.decrypt_layer(
                ciphertext,
                public,
                private,
                expected_digest=layer.digest,
                expected_size=layer.size,
                enforce_plaintext_digest=enforce,
            )
            digest, size = self.writer.add_blob(plaintext)
        except IntegrityError:
            raise IntegrityError(
                f"{where}: the layer failed authentication (HMAC, digest, size or "
                "plaintext digest); nothing was written"
            ) from None
        self.layers += 1
        self.bytes += size
        logger.debug("decrypted %s into %s", layer.digest, digest)
        return gojson.layer_descriptor(
            ocicrypt.decrypted_media_type(layer.media_type),
            digest.value,
            size,
            ocicrypt.strip_enc_annotations(layer.annotations),
        )

    # -- keys --------------------------------------------------------------


def _layer(layer: mf.Descriptor) -> dict[str, Any]:
    return gojson.layer_descriptor(
        layer.media_type, layer.digest.value, layer.size, layer.annotations, layer.urls
    )
