"""Writing a sealed image back through the registry's own API.

For registries that keep their own database of artifacts (Harbor), where a
write into storage behind the registry's back changes nothing it serves and
a deletion in storage breaks it. :class:`ApiWriteBack` implements the
:class:`~regseal.writeback.WriteBack` seam with distribution API calls only:

- a layer is read from S3 (plaintext blob data, as in storage mode),
  encrypted while streaming, and uploaded with the blob upload protocol: in
  one request when it fits in one part, else in ordered ``PATCH`` chunks of
  one part each, then ``PUT ?digest=`` (the digest is known only at the end);
- a sealed manifest is pushed by digest, then by tag when the tag moves;
- the plaintext manifest is deleted by digest, and plaintext layers are
  unlinked from the repository with blob ``DELETE``.

Nothing is written under the registry's storage prefix by regseal itself
(the wiring also gives the seal a store that refuses such writes).

Moving a tag is compare-then-swap over an API that has no conditional
manifest PUT: HEAD the tag and compare with the plaintext digest the seal
read, PUT the sealed manifest by tag, HEAD again. The remaining window is
between the first HEAD's answer and the registry applying the PUT, one
round trip: a push of the same tag that lands inside it is overwritten by
the sealed image of the older push. The second HEAD catches every push that
lands after the PUT (the seal then reports the tag as moved and hides
nothing); it cannot see one that landed before. See docs/harbor.md.

A revision event asks the API which tags resolve to its manifest
(:meth:`ApiWriteBack.tags_for_revision`), since a registry that keeps tags
in its database may never write a tag link for the seal to hear of; tags
whose link storage does have are left to that link's own event.

Before any deletion the registry's own view is checked, since it can differ
from storage (Harbor resolves tags from its database; Harbor 2.15 and later
write no tag links to storage at all): a manifest that a tag still resolves
to, or a layer that a tagged manifest still uses, is never deleted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from regseal import manifest as mf
from regseal.digest import Digest
from regseal.errors import (
    DigestError,
    ManifestError,
    NotFoundError,
    RegistryConflictError,
    RegistryNotFoundError,
)
from regseal.layerstream import StreamSettings, encrypt_in_order
from regseal.layout import RegistryLayout, decode_link
from regseal.ocicrypt import EncryptedLayer, LayerEncryptor, PrivateOptions
from regseal.registryapi import BlobUpload, RegistryClient
from regseal.storage import ObjectStore
from regseal.writeback import TagState

logger = logging.getLogger(__name__)

# How long the registry's view of a repository's tags (and what they use) is
# trusted between the deletions of one hiding pass. Every write to the
# repository through this write-back forgets it, so a new seal starts fresh.
VIEW_MAX_AGE = 10.0
MAX_INDEX_DEPTH = 4


@dataclass(frozen=True)
class TaggedView:
    """What a repository's tags resolve to, as the registry's API says.

    Attributes:
        tags: tag name to the digest it resolves to.
        used: every digest a tagged manifest uses: the manifests themselves,
            an index's children, configs and layers.
    """

    tags: dict[str, Digest]
    used: frozenset[Digest]


class _ChunkSink:
    """Hands ciphertext parts to a blob upload, checking their order."""

    def __init__(self, upload: BlobUpload) -> None:
        self.upload = upload
        self.next_number = 1

    def upload_part(self, number: int, data: bytes | bytearray | memoryview) -> None:
        if number != self.next_number:
            raise AssertionError(f"part {number} arrived before {self.next_number}")
        # The engine reuses the buffer once this returns: send a copy.
        self.upload.write_chunk(bytes(data))
        self.next_number += 1


class ApiWriteBack:
    """Writes a seal's results through the registry's distribution API.

    Args:
        store: the registry bucket, read for the plaintext blobs and the tag
            links the registry wrote.
        client: the registry's API.
        stream: part size (also the chunk size) and download parallelism.
        clock: monotonic seconds (tests replace it).
        layout: the registry's root directory in the bucket.
    """

    def __init__(
        self,
        store: ObjectStore,
        client: RegistryClient,
        stream: StreamSettings,
        clock: Callable[[], float] = time.monotonic,
        *,
        layout: RegistryLayout,
    ) -> None:
        self.store = store
        self.client = client
        self.stream = stream
        self.layout = layout
        self._clock = clock
        self._views: dict[str, tuple[float, TaggedView]] = {}
        self._lock = threading.Lock()

    # -- the WriteBack protocol --------------------------------------------

    def write_layer(
        self, repository: str, source_key: str, size: int, options: PrivateOptions
    ) -> EncryptedLayer:
        # The encryptor's finalize refuses plaintext that does not hash to the
        # descriptor's digest, before anything is committed: a monolithic push
        # never starts, a chunked upload is cancelled (unless the stream
        # settings trust the registry's check: docs/decisions/0010).
        self._forget(repository)
        if size <= self.stream.part_size:
            encryptor = LayerEncryptor(
                options, verify_plaintext=self.stream.verify_plaintext
            )
            ciphertext = encryptor.update(self.store.read_range(source_key, 0, size))
            layer = encryptor.finalize()
            self.client.push_blob(repository, ciphertext, layer.digest)
            return layer

        upload = self.client.start_upload(repository)
        try:
            layer = encrypt_in_order(
                self.store, source_key, size, options, _ChunkSink(upload), self.stream
            )
            upload.complete(layer.digest)
        except BaseException:
            upload.cancel()
            raise
        logger.debug(
            "uploaded %s to %s in %d chunks", layer.digest, repository, upload.chunks
        )
        return layer

    def write_manifest(
        self, repository: str, digest: Digest, data: bytes, media_type: str
    ) -> None:
        self._forget(repository)
        stored = self.client.put_manifest(repository, digest.value, data, media_type)
        if stored != digest:
            raise ManifestError(
                f"manifest of {repository}: expected digest {digest}, the bytes "
                f"hash to {stored}"
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
        before = self.client.head_manifest(repository, tag)
        if before is None:
            logger.debug("%s:%s is gone; not moving it", repository, tag)
            return False
        if before.digest == digest:
            return True  # a re-delivery: this seal already moved it
        if before.digest != expected.digest:
            logger.debug(
                "%s:%s moved to %s since the seal read %s",
                repository,
                tag,
                before.digest,
                expected.digest,
            )
            return False

        self.client.put_manifest(repository, tag, data, media_type)
        self._forget(repository)

        after = self.client.head_manifest(repository, tag)
        if after is None or after.digest != digest:
            logger.debug(
                "%s:%s moved again right after the push (now %s)",
                repository,
                tag,
                after.digest if after else "gone",
            )
            return False
        return True

    def unlink_manifest(self, repository: str, digest: Digest, tags: list[str]) -> None:
        # ``tags`` are storage's tag index links; deleting the manifest through
        # the API is what removes it from every tag history the registry keeps.
        view = self._view(repository)
        holders = sorted(t for t, d in view.tags.items() if d == digest)
        if holders or digest in view.used:
            raise RegistryConflictError(
                f"registry {self.client.name}: refusing to delete manifest {digest} "
                f"of {repository}: expected no tag to use it, but "
                f"{_users(holders, 'it is a child of a tagged index')} (the "
                "registry's view differs from storage's)"
            )
        if not self.client.delete_manifest(repository, digest):
            logger.debug("manifest %s of %s was already deleted", digest, repository)

    def unlink_layer(self, repository: str, digest: Digest) -> None:
        view = self._view(repository)
        if digest in view.used:
            raise RegistryConflictError(
                f"registry {self.client.name}: refusing to unlink blob {digest} from "
                f"{repository}: expected no tagged manifest to use it, but one does "
                "(the registry's view differs from storage's)"
            )
        if not self.client.delete_blob(repository, digest):
            logger.debug("blob %s of %s was already unlinked", digest, repository)

    def tags_for_revision(self, repository: str, digest: Digest) -> list[str]:
        # The registry's API is the authority on tags: Harbor 2.15 and later
        # keep them in their database only, and write no tag link whose event
        # would announce them. A tag whose link in storage names the digest
        # (distribution, Harbor up to 2.14) is sealed by that link's event,
        # as in storage mode, so the two events never race for one push.
        # Always fresh, not the cached view: this decides what gets moved.
        tags = self.resolve_tags(repository)
        return sorted(
            name
            for name, target in tags.items()
            if target == digest and self._tag_link(repository, name) != digest
        )

    # -- the registry's view -----------------------------------------------

    def tagged_view(self, repository: str) -> TaggedView:
        """Resolve every tag of ``repository`` and what its manifest uses.

        NOTE: one HEAD per tag and one GET per tagged manifest; fine for
        repositories with hundreds of tags, a registry-specific listing
        (Harbor's artifact API) is the way for many more.
        """
        tags = self.resolve_tags(repository)
        used: set[Digest] = set()
        for top in set(tags.values()):
            self._collect(repository, top, used, depth=0)
        return TaggedView(tags, frozenset(used))

    def resolve_tags(self, repository: str) -> dict[str, Digest]:
        """Every tag of ``repository`` and the digest the registry resolves it to.

        A tag listed but gone by the time of its ``HEAD`` is left out.
        """
        try:
            names = self.client.tags(repository)
        except RegistryNotFoundError:
            names = []
        tags: dict[str, Digest] = {}
        for name in names:
            info = self.client.head_manifest(repository, name)
            if info is not None:
                tags[name] = info.digest
        return tags

    def _tag_link(self, repository: str, tag: str) -> Digest | None:
        """What the tag's ``current/link`` in storage names, if it exists."""
        key = self.layout.tag_link(repository, tag)
        try:
            return decode_link(self.store.get(key).data, key)
        except NotFoundError:
            return None

    def _collect(
        self, repository: str, digest: Digest, used: set[Digest], depth: int
    ) -> None:
        if digest in used:
            return
        used.add(digest)
        try:
            doc = json.loads(self.client.get_manifest(repository, digest.value).data)
        except RegistryNotFoundError:
            return
        except ValueError:
            raise ManifestError(
                f"registry {self.client.name}: manifest {digest} of {repository} is "
                "not JSON; cannot tell what it uses"
            ) from None
        for child, is_manifest in _references(doc):
            if is_manifest and depth < MAX_INDEX_DEPTH:
                self._collect(repository, child, used, depth + 1)
            else:
                used.add(child)

    def _view(self, repository: str) -> TaggedView:
        now = self._clock()
        with self._lock:
            cached = self._views.get(repository)
        if cached is not None and now - cached[0] < VIEW_MAX_AGE:
            return cached[1]
        view = self.tagged_view(repository)
        with self._lock:
            self._views[repository] = (now, view)
        return view

    def _forget(self, repository: str) -> None:
        with self._lock:
            self._views.pop(repository, None)


def _references(doc: Any) -> Iterator[tuple[Digest, bool]]:
    """Every digest a manifest document names, and whether it is a manifest.

    Deliberately generic (any ``digest`` or schema 1 ``blobSum`` member, at
    any depth), so that a kind regseal does not model still protects what it
    uses. A referrer's ``subject`` is not something it uses: a signature or
    SBOM does not need the manifest it describes in order to be pulled.
    """
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key in ("digest", "blobSum"):
                value = item.get(key)
                if isinstance(value, str):
                    try:
                        digest = Digest.parse(value)
                    except DigestError:
                        continue
                    kind = item.get("mediaType")
                    yield digest, kind in mf.MANIFEST_TYPES | mf.INDEX_TYPES
            stack.extend(
                v
                for k, v in item.items()
                if isinstance(v, dict | list) and k != "subject"
            )


def _users(tags: list[str], otherwise: str) -> str:
    if not tags:
        return otherwise
    shown = ", ".join(repr(t) for t in tags)
    if len(tags) == 1:
        return f"tag {shown} resolves to it"
    return f"tags {shown} resolve to it"
