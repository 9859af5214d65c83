"""The seal: turn a plaintext image in the registry into a sealed one.

One operation, driven by a storage event but acting on the state it reads
(DESIGN.md, data flow and invariants):

1. read the tag's ``current/link`` (remembering its ETag) and the manifest;
   stop if it is already sealed, encrypted by someone else, or no image;
2. find the team that owns the repository in the policy;
3. encrypt every plaintext layer (streamed S3 to S3), wrap its key for KMS
   and for each JWE recipient, write the blob and its ``_layers`` link;
4. write the sealed OCI manifest (annotated with the plaintext digest and
   the policy version) and its revision link;
5. move the tag with a conditional write, so a tag that moved meanwhile is
   never rolled back;
6. hide the plaintext: its revision and tag index links, and the ``_layers``
   links of plaintext layers no remaining manifest of the repository uses.

Every step writes only what the registry itself writes for a push, in the
registry's order, and each write is idempotent, so a crash at any point
leaves a registry that serves every tag, and a retry finishes the job.
Small JSON records under regseal's own prefix remember which plaintext
manifest and layer were sealed to what, so that re-deliveries, sibling tags
and re-pushes reuse the work instead of encrypting again.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from regseal import jwe, ocicrypt
from regseal import manifest as mf
from regseal.digest import Digest
from regseal.errors import (
    ManifestError,
    NotFoundError,
    RetryableError,
)
from regseal.events import Action, ObjectEvent
from regseal.kms import PROVIDER_NAME, KmsWrapper, encryption_context
from regseal.layerstream import StreamSettings
from regseal.layout import LinkKind, RegistryLayout, decode_link
from regseal.policy import Policy, PolicySource, Team
from regseal.settings import Settings
from regseal.storage import ObjectStore
from regseal.writeback import StorageWriteBack, TagState, WriteBack

logger = logging.getLogger(__name__)

# Indexes may nest (an index of indexes); deeper than this is refused, which
# also ends an index that lists itself.
MAX_INDEX_DEPTH = 4

# Layer types that are never encrypted: their content is not in the registry
# (foreign, non-distributable) or they are not filesystem layers.
_PASSTHROUGH_LAYERS = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)
_SEALABLE_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
)


class Outcome(enum.Enum):
    SEALED = "sealed"  # new ciphertext written and the tag moved
    REUSED = "reused"  # an earlier seal of this manifest was reused
    SKIPPED = "skipped"  # nothing to do, with a reason
    SUPERSEDED = "superseded"  # the tag moved meanwhile; its own event seals it
    IGNORED = "ignored"  # the event names a key regseal does not act on


@dataclass(frozen=True)
class SealResult:
    """What one event led to; the handler logs it as one line."""

    outcome: Outcome
    key: str
    reason: str = ""
    repository: str | None = None
    reference: str | None = None
    plaintext_digest: str | None = None
    sealed_digest: str | None = None
    layers_sealed: int = 0
    layers_reused: int = 0
    bytes_sealed: int = 0

    def fields(self) -> dict[str, Any]:
        return {
            k: v.value if isinstance(v, enum.Enum) else v
            for k, v in self.__dict__.items()
            if v not in (None, "", 0)
        }


@dataclass
class _Work:
    """Counters for one seal."""

    layers_sealed: int = 0
    layers_reused: int = 0
    bytes_sealed: int = 0

    def report(self, base: SealResult, sealed: _Sealed) -> SealResult:
        return replace(
            base,
            outcome=Outcome.SEALED if self.layers_sealed else Outcome.REUSED,
            reason="",
            sealed_digest=sealed.digest.value,
            layers_sealed=self.layers_sealed,
            layers_reused=self.layers_reused,
            bytes_sealed=self.bytes_sealed,
        )


@dataclass(frozen=True)
class _Sealed:
    """A manifest (or index) as sealed: its digest, bytes and media type."""

    digest: Digest
    data: bytes
    media_type: str


class Sealer:
    """Seals images in one registry bucket.

    Args:
        store: the registry bucket.
        settings: layout, prefixes and streaming settings.
        policies: where the current policy comes from.
        kms: wraps layer keys with KMS.
        clock: seconds since the epoch (tests replace it).
    """

    def __init__(
        self,
        store: ObjectStore,
        settings: Settings,
        policies: PolicySource,
        kms: KmsWrapper,
        clock: Callable[[], float] = time.time,
        writer: WriteBack | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.layout = RegistryLayout(settings.registry_root)
        self.policies = policies
        self.kms = kms
        self.clock = clock
        self.stream = StreamSettings(settings.part_size, settings.workers)
        self.writer: WriteBack = writer or StorageWriteBack(
            store, self.layout, f"{settings.state_prefix}staging/", self.stream
        )

    # -- entry point -------------------------------------------------------

    def handle(self, event: ObjectEvent) -> SealResult:
        """Act on one storage event.

        Raises:
            RegsealError: bad input or a failure a retry may fix; the event
                must then be delivered again (or end in the dead-letter queue).
        """
        if event.bucket != self.store.bucket:
            return SealResult(
                Outcome.IGNORED, event.key, f"event for bucket {event.bucket!r}"
            )
        link = self.layout.parse_key(event.key)
        if link is None:
            return SealResult(Outcome.IGNORED, event.key, "not a tag or revision link")
        if event.action is Action.REMOVED:
            return SealResult(Outcome.IGNORED, event.key, "removal")
        if link.kind is LinkKind.TAG:
            assert link.tag is not None
            return self.seal_tag(link.repository, link.tag)
        if link.kind is LinkKind.REVISION:
            assert link.digest is not None
            return self.seal_revision(link.repository, link.digest)
        return SealResult(Outcome.IGNORED, event.key, f"{link.kind.value} link")

    # -- tags --------------------------------------------------------------

    def seal_tag(self, repository: str, tag: str) -> SealResult:
        """Seal the manifest a tag points at and move the tag to it."""
        key = self.layout.tag_link(repository, tag)
        base = SealResult(Outcome.SKIPPED, key, repository=repository, reference=tag)
        try:
            current = self.store.get(key)
        except NotFoundError:
            return replace(base, reason="tag no longer exists")
        digest = decode_link(current.data, key)
        base = replace(base, plaintext_digest=digest.value)
        parsed = self._load_manifest(repository, digest)
        if parsed is None:
            return replace(base, reason="not an image manifest")
        if not self._has_plaintext(repository, parsed):
            if not _is_sealed(parsed):
                return replace(base, reason="already encrypted, not by regseal")
            self._hide_sealed_sources(repository, parsed)
            return replace(base, reason="already sealed")
        team, policy = self._team_for(repository)
        if team is None:
            return replace(base, reason="no team claims the repository")

        sealed, work = self._seal_top(repository, parsed, team, policy)
        moved = self.writer.move_tag(
            repository,
            tag,
            sealed.digest,
            sealed.data,
            sealed.media_type,
            TagState(digest, current.etag),
        )
        if not moved:
            return replace(
                work.report(base, sealed),
                outcome=Outcome.SUPERSEDED,
                reason="tag moved while sealing; the newer push is sealed by its "
                "own event",
            )
        self._hide_plaintext(repository, parsed)
        return work.report(base, sealed)

    # -- push by digest ----------------------------------------------------

    def seal_revision(self, repository: str, digest: Digest) -> SealResult:
        """Seal a manifest that was pushed by digest, with no tag.

        A tag push also writes a revision link first; such manifests are left
        to the tag's own event. A manifest no tag points at is sealed once it
        is older than the grace period, so that an index being pushed can
        still reference its plaintext children (docs/decisions/0004).
        """
        key = self.layout.revision_link(repository, digest)
        base = SealResult(
            Outcome.SKIPPED,
            key,
            repository=repository,
            reference=digest.value,
            plaintext_digest=digest.value,
        )
        info = self.store.head(key)
        if info is None:
            return replace(base, reason="revision no longer exists")
        parsed = self._load_manifest(repository, digest)
        if parsed is None:
            return replace(base, reason="not an image manifest")
        if not self._has_plaintext(repository, parsed):
            return replace(base, reason="no plaintext layers")
        if self._sealed_record(repository, digest) is not None:
            return replace(base, reason="already sealed")
        if digest in self._tagged_digests(repository):
            return replace(base, reason="tagged; sealed through its tag")
        age = self.clock() - info.last_modified.timestamp()
        if age < self.settings.digest_push_grace:
            raise RetryableError(
                f"{key}: manifest pushed by digest {age:.0f}s ago; sealing it after "
                f"{self.settings.digest_push_grace:.0f}s, when no index push can "
                "still need it"
            )
        team, policy = self._team_for(repository)
        if team is None:
            return replace(base, reason="no team claims the repository")
        sealed, work = self._seal_top(repository, parsed, team, policy)
        self._hide_plaintext(repository, parsed)
        return work.report(base, sealed)

    def _team_for(self, repository: str) -> tuple[Team | None, Policy]:
        policy = self.policies.get()
        return policy.team_for(repository), policy

    def _seal_top(
        self,
        repository: str,
        parsed: mf.ImageManifest | mf.ImageIndex,
        team: Team,
        policy: Policy,
    ) -> tuple[_Sealed, _Work]:
        self._check_blobs(repository, parsed)
        work = _Work()
        return self._seal_any(repository, parsed, team, policy, work, depth=0), work

    # -- manifests ---------------------------------------------------------

    def _load_manifest(
        self, repository: str, digest: Digest
    ) -> mf.ImageManifest | mf.ImageIndex | None:
        """Read a manifest of ``repository``; None for kinds left alone."""
        revision = self.layout.revision_link(repository, digest)
        if not self.store.exists(revision):
            raise ManifestError(
                f"{revision}: the tag points at {digest} but the repository has no "
                "revision link for it"
            )
        blob = self.layout.blob_data(digest)
        try:
            data = self.store.get(blob).data
        except NotFoundError:
            raise ManifestError(
                f"{blob}: manifest blob of {digest} is missing"
            ) from None
        if Digest.of(data) != digest:
            raise ManifestError(f"{blob}: content does not match its digest {digest}")
        try:
            parsed = mf.parse(data, blob)
        except mf.UnsupportedManifest as exc:
            logger.debug("leaving %s alone: %s", digest, exc)
            return None
        if isinstance(parsed, mf.ImageManifest) and not parsed.is_image:
            return None
        return parsed

    def _seal_any(
        self,
        repository: str,
        parsed: mf.ImageManifest | mf.ImageIndex,
        team: Team,
        policy: Policy,
        work: _Work,
        depth: int,
    ) -> _Sealed:
        record = self._sealed_record(repository, parsed.digest)
        if record is not None and record.get("policy") == policy.version:
            sealed_digest = Digest.parse(record["sealed"])
            if self.store.exists(self.layout.revision_link(repository, sealed_digest)):
                data = self.store.get(self.layout.blob_data(sealed_digest)).data
                work.layers_reused += int(record.get("layers", 0))
                return _Sealed(sealed_digest, data, record["media_type"])
        if isinstance(parsed, mf.ImageIndex):
            sealed = self._seal_index(repository, parsed, team, policy, work, depth)
        else:
            sealed = self._seal_image(repository, parsed, team, policy, work)
        self._write_manifest(repository, sealed)
        self._write_record(
            repository,
            parsed.digest,
            sealed,
            policy,
            len(parsed.layers) if isinstance(parsed, mf.ImageManifest) else 0,
        )
        return sealed

    def _seal_index(
        self,
        repository: str,
        index: mf.ImageIndex,
        team: Team,
        policy: Policy,
        work: _Work,
        depth: int,
    ) -> _Sealed:
        if depth >= MAX_INDEX_DEPTH:
            raise ManifestError(
                f"index {index.digest} of {repository}: expected indexes nested at "
                f"most {MAX_INDEX_DEPTH} deep"
            )
        children: list[mf.Descriptor] = []
        for child in index.manifests:
            if child.digest == index.digest:
                raise ManifestError(
                    f"index {index.digest} of {repository} lists itself"
                )
            if child.media_type not in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
                children.append(child)
                continue
            parsed = self._load_manifest(repository, child.digest)
            if parsed is None or not self._has_plaintext(repository, parsed, depth + 1):
                children.append(child)  # attestations, artifacts, sealed ones
                continue
            sealed = self._seal_any(repository, parsed, team, policy, work, depth + 1)
            children.append(
                replace(
                    child,
                    media_type=sealed.media_type,
                    digest=sealed.digest,
                    size=len(sealed.data),
                )
            )
        annotations = _sealed_annotations(index.annotations, index.digest, team, policy)
        data = mf.build_index(index, children, annotations)
        return _Sealed(Digest.of(data), data, mf.OCI_INDEX)

    def _seal_image(
        self,
        repository: str,
        image: mf.ImageManifest,
        team: Team,
        policy: Policy,
        work: _Work,
    ) -> _Sealed:
        layers = [
            self._seal_layer(repository, layer, team, policy, work)
            for layer in image.layers
        ]
        config = image.config
        if config.media_type == mf.DOCKER_CONFIG:
            config = replace(config, media_type=mf.OCI_CONFIG)
        annotations = _sealed_annotations(image.annotations, image.digest, team, policy)
        data = mf.build_manifest(image, config, layers, annotations)
        return _Sealed(Digest.of(data), data, mf.OCI_MANIFEST)

    def _write_manifest(self, repository: str, sealed: _Sealed) -> None:
        self.writer.write_manifest(
            repository, sealed.digest, sealed.data, sealed.media_type
        )

    # -- layers ------------------------------------------------------------

    def _seal_layer(
        self,
        repository: str,
        layer: mf.Descriptor,
        team: Team,
        policy: Policy,
        work: _Work,
    ) -> mf.Descriptor:
        if not _is_plaintext_layer(layer):
            return layer
        reused = self._reuse_layer(repository, layer, policy)
        if reused is not None:
            work.layers_reused += 1
            return reused
        source = self.layout.blob_data(layer.digest)
        options = ocicrypt.PrivateOptions.generate(layer.digest)
        encrypted = self.writer.write_layer(repository, source, layer.size, options)
        if encrypted.plaintext_digest != layer.digest:
            raise ManifestError(
                f"layer {layer.digest} of {repository}: the blob's content hashes to "
                f"{encrypted.plaintext_digest}"
            )
        private = options.to_json()
        annotations = {
            k: v
            for k, v in layer.annotations.items()
            if not k.startswith(ocicrypt.ENC_ANNOTATION_PREFIX)
        }
        annotations[ocicrypt.ANNOTATION_PUBOPTS] = ocicrypt.PublicOptions(
            encrypted.hmac
        ).to_annotation()
        if team.recipients:
            recipients = [
                jwe.Recipient.from_pem(
                    r.public_key.encode(), source=f"team {team.name} recipient {r.name}"
                )
                for r in team.recipients
            ]
            annotations[ocicrypt.ANNOTATION_JWE] = jwe.wrap_all(private, recipients)
        annotations[ocicrypt.PROVIDER_ANNOTATION_PREFIX + PROVIDER_NAME] = (
            self.kms.wrap(
                private, team.kms_key, encryption_context(repository, layer.digest)
            )
        )
        sealed = mf.Descriptor(
            ocicrypt.encrypted_media_type(layer.media_type),
            encrypted.digest,
            layer.size,
            annotations,
            layer.urls,
            layer.platform,
            {
                k: v
                for k, v in layer.raw.items()
                if k not in {"annotations", "mediaType"}
            },
        )
        self._put_json(
            self._layer_record_key(repository, layer.digest),
            {"policy": policy.version, "descriptor": sealed.to_json()},
        )
        work.layers_sealed += 1
        work.bytes_sealed += layer.size
        return sealed

    def _check_blobs(
        self, repository: str, parsed: mf.ImageManifest | mf.ImageIndex, depth: int = 0
    ) -> None:
        """Check every plaintext layer before anything is written.

        Bad input (an unknown layer type, a missing blob or link, a size that
        does not match) must leave the registry exactly as it was, so it is
        found here rather than halfway through writing sealed layers.
        """
        if isinstance(parsed, mf.ImageIndex):
            for child in parsed.manifests:
                if child.media_type in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
                    loaded = self._load_manifest(repository, child.digest)
                    if loaded is not None:
                        self._check_blobs(repository, loaded, depth + 1)
            return
        for layer in parsed.layers:
            if not _is_plaintext_layer(layer):
                continue
            where = f"layer {layer.digest} of {repository}"
            if layer.media_type not in _SEALABLE_LAYERS:
                raise ManifestError(
                    f"{where}: expected a tar layer media type (one of "
                    f"{', '.join(_SEALABLE_LAYERS)}), got {layer.media_type!r}"
                )
            info = self.store.head(self.layout.blob_data(layer.digest))
            if info is None or not self.store.exists(
                self.layout.layer_link(repository, layer.digest)
            ):
                raise ManifestError(f"{where}: blob or _layers link missing")
            if info.size != layer.size:
                raise ManifestError(
                    f"{where}: descriptor says {layer.size} bytes, the blob has "
                    f"{info.size}"
                )

    def _reuse_layer(
        self, repository: str, layer: mf.Descriptor, policy: Policy
    ) -> mf.Descriptor | None:
        record = self._get_json(self._layer_record_key(repository, layer.digest))
        if record is None or record.get("policy") != policy.version:
            return None
        descriptor = mf.parse_descriptor(record["descriptor"], "layer record")
        if not self.store.exists(self.layout.layer_link(repository, descriptor.digest)):
            return None
        return descriptor

    # -- hiding the plaintext ----------------------------------------------

    def _hide_plaintext(
        self, repository: str, plaintext: mf.ImageManifest | mf.ImageIndex
    ) -> None:
        """Make the plaintext unreachable through the registry.

        Removes the revision and tag index links of the plaintext manifest
        (and of an index's sealed plaintext children) and the ``_layers``
        links of plaintext layers that no remaining manifest of the
        repository uses. Nothing is hidden while a tag still points at the
        plaintext: that tag's own event seals it (reusing this seal) and
        hides it then. Blob data stays; the registry's garbage collection
        removes it once nothing links to it.
        """
        tagged = self._tagged_digests(repository)
        if plaintext.digest in tagged:
            logger.debug(
                "%s still tagged in %s; not hidden yet", plaintext.digest, repository
            )
            return
        references = self._repository_references(repository)
        hidden = {plaintext.digest}
        if isinstance(plaintext, mf.ImageIndex):
            hidden.update(
                child.digest
                for child in plaintext.manifests
                if child.media_type in mf.MANIFEST_TYPES | mf.INDEX_TYPES
                and child.digest not in tagged
                and self._sealed_record(repository, child.digest) is not None
            )
        while True:
            in_use = set().union(
                *(refs for d, refs in references.items() if d not in hidden)
            )
            keep = {d for d in hidden if d in in_use and d != plaintext.digest}
            if not keep:
                break
            hidden -= keep
        if plaintext.digest in in_use:
            logger.debug(
                "%s still referenced in %s; not hidden", plaintext.digest, repository
            )
            return
        for digest in sorted(hidden):
            parsed = self._load_or_none(repository, digest)
            if isinstance(parsed, mf.ImageManifest):
                for layer in parsed.layers:
                    if layer.digest not in in_use and not layer.urls:
                        self.writer.unlink_layer(repository, layer.digest)
            self.writer.unlink_manifest(
                repository, digest, list(self._tags_indexing(repository, digest))
            )

    def _hide_sealed_sources(
        self, repository: str, sealed: mf.ImageManifest | mf.ImageIndex
    ) -> None:
        """Finish hiding after a crash between the tag move and the hiding."""
        source = sealed.annotations.get(mf.ANNOTATION_PLAINTEXT)
        if not source:
            return
        digest = Digest.parse(source)
        if not self.store.exists(self.layout.revision_link(repository, digest)):
            return
        plaintext = self._load_or_none(repository, digest)
        if plaintext is not None:
            self._hide_plaintext(repository, plaintext)

    def _repository_references(self, repository: str) -> dict[Digest, set[Digest]]:
        """For each manifest revision of the repository, what it references.

        NOTE: reads every revision of the repository on each seal; fine for
        hundreds of revisions, a per-repository reference index is the way
        for many more.
        """
        references: dict[Digest, set[Digest]] = {}
        prefix = self.layout.revisions_prefix(repository)
        for hex_part in self.store.list_children(prefix):
            try:
                digest = Digest.parse("sha256:" + hex_part)
            except ValueError:
                continue
            references[digest] = self._referenced_digests(digest)
        return references

    def _referenced_digests(self, digest: Digest) -> set[Digest]:
        """Digests a manifest of any kind references: layers, config, children."""
        try:
            doc = json.loads(self.store.get(self.layout.blob_data(digest)).data)
        except (NotFoundError, ValueError):
            return set()
        if not isinstance(doc, dict):
            return set()
        parts = [
            *(doc.get("layers") or []),
            *(doc.get("manifests") or []),
            doc.get("config"),
            doc.get("subject"),
        ]
        found: set[Digest] = set()
        for part in parts:
            if isinstance(part, dict) and isinstance(part.get("digest"), str):
                try:
                    found.add(Digest.parse(part["digest"]))
                except ValueError:
                    continue
        return found

    def _has_plaintext(
        self, repository: str, parsed: mf.ImageManifest | mf.ImageIndex, depth: int = 0
    ) -> bool:
        """True when some layer (or some child's layer) is still plaintext."""
        if isinstance(parsed, mf.ImageManifest):
            return any(_is_plaintext_layer(layer) for layer in parsed.layers)
        if depth >= MAX_INDEX_DEPTH:
            raise ManifestError(
                f"index {parsed.digest} of {repository}: expected indexes nested at "
                f"most {MAX_INDEX_DEPTH} deep"
            )
        for child in parsed.manifests:
            if child.media_type not in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
                continue
            if child.digest == parsed.digest:
                raise ManifestError(
                    f"index {parsed.digest} of {repository} lists itself"
                )
            loaded = self._load_manifest(repository, child.digest)
            if loaded is not None and self._has_plaintext(
                repository, loaded, depth + 1
            ):
                return True
        return False

    def _load_or_none(
        self, repository: str, digest: Digest
    ) -> mf.ImageManifest | mf.ImageIndex | None:
        try:
            return self._load_manifest(repository, digest)
        except ManifestError:
            return None

    def _tagged_digests(self, repository: str) -> set[Digest]:
        """The digests the repository's tags currently point at."""
        tagged = set()
        for tag in self.store.list_children(self.layout.tags_prefix(repository)):
            link = self._read_link(self.layout.tag_link(repository, tag))
            if link is not None:
                tagged.add(link)
        return tagged

    def _tags_indexing(self, repository: str, digest: Digest) -> Iterable[str]:
        for tag in self.store.list_children(self.layout.tags_prefix(repository)):
            if self.store.exists(self.layout.tag_index_link(repository, tag, digest)):
                yield tag

    def _read_link(self, key: str) -> Digest | None:
        try:
            return decode_link(self.store.get(key).data, key)
        except NotFoundError:
            return None

    # -- regseal's own records ---------------------------------------------

    def _sealed_record_key(self, repository: str, digest: Digest) -> str:
        return f"{self.settings.state_prefix}sealed/{repository}/manifests/{digest.hex}"

    def _layer_record_key(self, repository: str, digest: Digest) -> str:
        return f"{self.settings.state_prefix}sealed/{repository}/layers/{digest.hex}"

    def _sealed_record(self, repository: str, digest: Digest) -> dict[str, Any] | None:
        return self._get_json(self._sealed_record_key(repository, digest))

    def _write_record(
        self,
        repository: str,
        plaintext: Digest,
        sealed: _Sealed,
        policy: Policy,
        layers: int,
    ) -> None:
        self._put_json(
            self._sealed_record_key(repository, plaintext),
            {
                "sealed": sealed.digest.value,
                "media_type": sealed.media_type,
                "policy": policy.version,
                "layers": layers,
            },
        )

    def _get_json(self, key: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.store.get(key).data)
        except NotFoundError:
            return None
        except ValueError:
            logger.debug("ignoring unreadable record %s", key)
            return None
        return doc if isinstance(doc, dict) else None

    def _put_json(self, key: str, doc: dict[str, Any]) -> None:
        self.store.put(key, mf.dumps(doc), content_type="application/json")


def _sealed_annotations(
    original: dict[str, str] | Any, plaintext: Digest, team: Team, policy: Policy
) -> dict[str, str]:
    annotations = dict(original)
    annotations[mf.ANNOTATION_PLAINTEXT] = plaintext.value
    annotations[mf.ANNOTATION_POLICY_VERSION] = policy.version
    annotations[mf.ANNOTATION_TEAM] = team.name
    return annotations


def _is_plaintext_layer(layer: mf.Descriptor) -> bool:
    """A layer regseal must encrypt: stored in the registry, not encrypted."""
    return not (
        ocicrypt.is_encrypted_media_type(layer.media_type)
        or layer.urls
        or layer.media_type in _PASSTHROUGH_LAYERS
    )


def _is_sealed(parsed: mf.ImageManifest | mf.ImageIndex) -> bool:
    return mf.ANNOTATION_PLAINTEXT in parsed.annotations
