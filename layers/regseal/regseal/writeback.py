"""How a sealed image gets back into the registry.

The seal decides *what* to write; a write-back decides *how*. Two ways
exist, chosen per registry (issue: storage or registry-API mode):

- :class:`StorageWriteBack` writes the objects the registry itself writes
  for a push (blob data, ``_layers`` links, revision links, tag links),
  straight into the registry's S3 storage. Right for plain distribution.
- :class:`~regseal.apiwriteback.ApiWriteBack` pushes through the OCI
  distribution API, so that a registry with its own database (Harbor)
  records the sealed image as if a client had pushed it.

Both keep the seal's invariants: a tag that moved meanwhile is not rolled
back, and plaintext is only unlinked after the sealed image is reachable.

They also differ in where a push by tag is announced. Distribution writes a
tag link for every push by tag, so storage mode hears of each tag through
its own event. A registry that keeps tags in its database (Harbor 2.15 and
later) writes only the revision link; its tags are found through the API
when the revision event arrives (:meth:`WriteBack.tags_for_revision`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from regseal.digest import Digest
from regseal.errors import NotFoundError, PreconditionFailedError
from regseal.layerstream import StreamSettings, encrypt_blob
from regseal.layout import RegistryLayout, decode_link, encode_link
from regseal.ocicrypt import EncryptedLayer, PrivateOptions
from regseal.storage import ObjectStore


@dataclass(frozen=True)
class TagState:
    """A tag as the seal read it, for the compare step of moving it.

    Each write-back compares what it can see: storage compares the tag link's
    ETag (an S3 conditional write), the API compares the digest the registry
    resolves the tag to.

    Attributes:
        digest: the manifest the tag pointed at (the plaintext).
        link_etag: the S3 ETag of the tag's ``current/link`` when read; empty
            for a tag the registry's API resolved, which has no link to
            compare (storage mode refuses to move such a tag).
    """

    digest: Digest
    link_etag: str = ""


class WriteBack(Protocol):
    """The writes a seal makes, in the order it makes them."""

    def write_layer(
        self, repository: str, source_key: str, size: int, options: PrivateOptions
    ) -> EncryptedLayer:
        """Encrypt the plaintext blob at ``source_key`` into a repository blob."""

    def write_manifest(
        self, repository: str, digest: Digest, data: bytes, media_type: str
    ) -> None:
        """Make a sealed manifest (or index) exist in the repository, untagged."""

    def move_tag(
        self,
        repository: str,
        tag: str,
        digest: Digest,
        data: bytes,
        media_type: str,
        expected: TagState,
    ) -> bool:
        """Point ``tag`` at ``digest`` if it still holds what was read.

        Args:
            expected: the tag as the seal read it.

        Returns:
            False when the tag moved meanwhile (nothing was changed).
        """

    def unlink_manifest(self, repository: str, digest: Digest, tags: list[str]) -> None:
        """Make a plaintext manifest unreachable (its revision and tag index links)."""

    def unlink_layer(self, repository: str, digest: Digest) -> None:
        """Make a plaintext blob unreachable from the repository."""

    def tags_for_revision(self, repository: str, digest: Digest) -> list[str]:
        """The tags a revision event of ``digest`` must move itself.

        These are tags that resolve to ``digest`` right now but whose push
        may reach the seal only as that revision event, with no tag event of
        their own.

        Returns:
            Tag names, sorted; empty when every tag is announced by its own
            tag event (the revision event then leaves tags to them).
        """


class StorageWriteBack:
    """Writes into the registry's storage, as the registry does for a push.

    Args:
        store: the registry bucket.
        layout: the registry's root directory.
        staging_prefix: where large ciphertext is staged before its copy.
        stream: part size and parallelism for layer streaming.
    """

    def __init__(
        self,
        store: ObjectStore,
        layout: RegistryLayout,
        staging_prefix: str,
        stream: StreamSettings,
    ) -> None:
        self.store = store
        self.layout = layout
        self.staging_prefix = staging_prefix
        self.stream = stream

    def write_layer(
        self, repository: str, source_key: str, size: int, options: PrivateOptions
    ) -> EncryptedLayer:
        encrypted = encrypt_blob(
            self.store,
            source_key,
            size,
            options,
            self.layout.blob_data,
            self.staging_prefix,
            self.stream,
        )
        self.store.put(
            self.layout.layer_link(repository, encrypted.digest),
            encode_link(encrypted.digest),
        )
        return encrypted

    def write_manifest(
        self, repository: str, digest: Digest, data: bytes, media_type: str
    ) -> None:
        blob = self.layout.blob_data(digest)
        if not self.store.exists(blob):
            self.store.put(blob, data)
        self.store.put(
            self.layout.revision_link(repository, digest), encode_link(digest)
        )

    def move_tag(
        self,
        repository: str,
        tag: str,
        digest: Digest,
        data: bytes,
        media_type: str,
        expected: TagState,
    ) -> bool:
        if not expected.link_etag:
            raise ValueError(
                f"moving {repository}:{tag} in storage: expected the ETag of its "
                "current/link as the seal read it, got none"
            )
        # The index link first, then current/link: the registry's own order.
        index_link = self.layout.tag_index_link(repository, tag, digest)
        self.store.put(index_link, encode_link(digest))
        key = self.layout.tag_link(repository, tag)
        try:
            self.store.put(key, encode_link(digest), if_match=expected.link_etag)
        except NotFoundError:
            # Deleted while sealing. The index link just written would bring
            # the tag back into the registry's tag listing, resolving nowhere.
            self.store.delete(index_link)
            return False
        except PreconditionFailedError:
            try:
                now = decode_link(self.store.get(key).data, key)
            except NotFoundError:
                return False
            return now == digest
        return True

    def unlink_manifest(self, repository: str, digest: Digest, tags: list[str]) -> None:
        for tag in tags:
            self.store.delete(self.layout.tag_index_link(repository, tag, digest))
        self.store.delete(self.layout.revision_link(repository, digest))

    def unlink_layer(self, repository: str, digest: Digest) -> None:
        self.store.delete(self.layout.layer_link(repository, digest))

    def tags_for_revision(self, repository: str, digest: Digest) -> list[str]:
        # The registry writes a tag link for every push by tag, and that
        # link's own event seals the tag (decisions/0004).
        return []
