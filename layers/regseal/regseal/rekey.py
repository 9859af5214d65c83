"""Re-key: re-encrypt a sealed layer under a fresh key, without plaintext at rest.

The remedy when a recipient must lose access to content it may already have
seen (see :mod:`regseal.rewrap`): each layer's old key is opened, its
ciphertext is authenticated in full (:func:`regseal.ocicrypt.decrypt_layer`
releases no byte before the HMAC, size and digest check), and the plaintext
stream goes straight into a new encryption with a fresh key and nonce. The
new ciphertext is staged as a multipart upload under regseal's prefix and
copied to its content address, as a seal does; plaintext only ever exists in
memory, one window at a time.

Memory is bounded by the decrypt window plus one upload part.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

from regseal import manifest as mf
from regseal import ocicrypt
from regseal.digest import Digest
from regseal.layout import RegistryLayout, encode_link
from regseal.storage import ObjectStore

logger = logging.getLogger(__name__)

READ_SIZE = 8 * 1024 * 1024


def reencrypt_layer(
    store: ObjectStore,
    layout: RegistryLayout,
    repository: str,
    layer: mf.Descriptor,
    old: ocicrypt.PrivateOptions,
    staging_prefix: str,
    part_size: int,
) -> tuple[ocicrypt.EncryptedLayer, ocicrypt.PrivateOptions]:
    """Re-encrypt one sealed layer of ``repository`` under fresh options.

    Returns:
        What the new encryption produced, and its fresh private options.

    Raises:
        IntegrityError: the old ciphertext failed authentication; nothing
            new is linked.
    """
    source = layout.blob_data(layer.digest)
    public, _ = ocicrypt.parse_layer_annotations(layer.annotations)
    plaintext = ocicrypt.decrypt_layer(
        _reader(store, source, layer.size),
        public,
        old,
        expected_digest=layer.digest,
        expected_size=layer.size,
        enforce_plaintext_digest=True,
    )
    fresh = ocicrypt.PrivateOptions.generate(old.digest)
    encryptor = ocicrypt.LayerEncryptor(fresh)
    staging = f"{staging_prefix}{uuid.uuid4()}"
    upload = store.start_multipart(staging)
    try:
        pending = bytearray()
        number = 0
        for chunk in plaintext:
            pending += encryptor.update(chunk)
            while len(pending) >= part_size:
                number += 1
                upload.upload_part(number, bytes(pending[:part_size]))
                del pending[:part_size]
        number += 1
        upload.upload_part(number, bytes(pending))
        encrypted = encryptor.finalize()
        upload.complete()
    except BaseException:
        upload.abort()
        raise
    try:
        key = layout.blob_data(encrypted.digest)
        if not store.exists(key):
            store.copy(staging, key, encrypted.size)
    finally:
        store.delete(staging)
    store.put(
        layout.layer_link(repository, encrypted.digest), encode_link(encrypted.digest)
    )
    logger.debug("re-keyed %s into %s", layer.digest, encrypted.digest)
    return encrypted, fresh


def _reader(store: ObjectStore, key: str, size: int) -> Callable[[], Iterator[bytes]]:
    def read() -> Iterator[bytes]:
        for start in range(0, size, READ_SIZE):
            yield store.read_range(key, start, min(start + READ_SIZE, size))

    return read


def rekeyed_descriptor(
    layer: mf.Descriptor,
    encrypted: ocicrypt.EncryptedLayer,
    keys: dict[str, str],
) -> mf.Descriptor:
    """The layer's descriptor for its new ciphertext and key annotations."""
    annotations = {
        k: v
        for k, v in layer.annotations.items()
        if not k.startswith(ocicrypt.ENC_ANNOTATION_PREFIX)
    }
    annotations[ocicrypt.ANNOTATION_PUBOPTS] = encrypted.public_options.to_annotation()
    annotations.update(keys)
    return mf.Descriptor(
        layer.media_type,
        Digest.parse(str(encrypted.digest)),
        encrypted.size,
        annotations,
        layer.urls,
        layer.platform,
        {k: v for k, v in layer.raw.items() if k not in {"annotations", "mediaType"}},
    )
