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

A revision event seals a manifest pushed by digest once no index push can
still need it; tags that no tag event announces (a registry that keeps them
in its database, the write-back's ``tags_for_revision``) are moved by the
revision event itself.

Every step writes only what the registry itself writes for a push, in the
registry's order, and each write is idempotent, so a crash at any point
leaves a registry that serves every tag, and a retry finishes the job.
Small JSON records under regseal's own prefix remember which plaintext
manifest and layer were sealed to what, so that re-deliveries, sibling tags
and re-pushes reuse the work instead of encrypting again.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from regseal import jwe, ocicrypt
from regseal import manifest as mf
from regseal.digest import Digest
from regseal.errors import (
    ManifestError,
    NotFoundError,
    RetryableError,
    TargetRollbackError,
)
from regseal.events import Action, ObjectEvent
from regseal.kms import ANNOTATION_KMS, KmsWrapper, encryption_context
from regseal.layout import LinkKind, RegistryLayout, decode_link
from regseal.policy import Policy, PolicySource, Recipient, Team
from regseal.settings import Settings
from regseal.storage import ObjectStore
from regseal.targetlog import TargetLog
from regseal.tuf.targets import TargetCustom
from regseal.writeback import StorageWriteBack, TagState, WriteBack

logger = logging.getLogger(__name__)

# Indexes may nest (an index of indexes); deeper than this is refused, which
# also ends an index that lists itself.
MAX_INDEX_DEPTH = 4

REFERENCE_READERS = 16
"""Manifest revisions read at once when hiding needs what a repository uses.

S3 answers a small GET in tens of milliseconds; the reads overlap on
sockets, not on CPU, so more threads than cores pay off."""
REFERENCE_CACHE_SIZE = 10_000
"""Manifests whose references a warm function remembers (a few MB)."""

# Layers with ``urls`` are never encrypted: their content is not in the
# registry. Docker foreign layers are not either, having no encrypted form.
# NOTE: a Docker foreign layer pushed without urls stays plaintext.
_PASSTHROUGH_LAYERS = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
)
# Non-distributable OCI layers without urls were pushed with their content,
# so they are sealed like any other (ocicrypt has encrypted forms of them).
_SEALABLE_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
)


class Outcome(enum.Enum):
    SEALED = "sealed"  # new ciphertext written and the tag moved
    REUSED = "reused"  # an earlier seal of this manifest was reused
    SKIPPED = "skipped"  # nothing to do, with a reason
    SUPERSEDED = "superseded"  # the tag moved meanwhile; its own event seals it
    IGNORED = "ignored"  # the event names a key regseal does not act on
    PENDING = "pending"  # a dry run: this would be sealed


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
    tags: tuple[str, ...] = ()
    """Tags a revision event moved to the sealed manifest, or found there on a
    re-delivery (tags no tag event announces, as Harbor 2.15 keeps them)."""

    def fields(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if value in (None, "", 0, ()):
                continue
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            found[name] = value
        return found


@dataclass
class _Work:
    """Counters for one seal."""

    layers_sealed: int = 0
    layers_reused: int = 0
    bytes_sealed: int = 0

    def report(self, base: SealResult, sealed: SealedManifest) -> SealResult:
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
class SealedManifest:
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
        targets: TargetLog | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.layout = RegistryLayout(settings.registry_root)
        self.policies = policies
        self.kms = kms
        self.clock = clock
        self.stream = settings.stream
        self.targets = targets
        self._references_cache: dict[Digest, set[Digest]] = {}
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
            if link.kind is LinkKind.TAG and link.tag is not None:
                return self.forget_tag(link.repository, link.tag)
            return SealResult(Outcome.IGNORED, event.key, "removal")
        if link.kind is LinkKind.TAG:
            assert link.tag is not None
            return self.seal_tag(link.repository, link.tag)
        if link.kind is LinkKind.REVISION:
            assert link.digest is not None
            return self.seal_revision(link.repository, link.digest)
        return SealResult(Outcome.IGNORED, event.key, f"{link.kind.value} link")

    # -- tags --------------------------------------------------------------

    def seal_tag(
        self, repository: str, tag: str, *, dry_run: bool = False
    ) -> SealResult:
        """Seal the manifest a tag points at and move the tag to it.

        With ``dry_run`` nothing is written; the result says what would happen.

        A concurrent seal of the same image (the event delivered twice, a
        second tag) may move the tag and hide the plaintext this one is
        still reading. The ManifestError that follows is no bad input: once
        the tag has moved, its own event handles what it points at now.
        """
        key = self.layout.tag_link(repository, tag)
        before = self._read_link(key)
        try:
            return self._seal_tag(repository, tag, dry_run)
        except ManifestError:
            if before is None or self._read_link(key) == before:
                raise
            logger.debug("%s moved while sealing %s", key, before)
            return SealResult(
                Outcome.SUPERSEDED,
                key,
                "tag moved while sealing; what it points at now is sealed by its "
                "own event",
                repository,
                tag,
                before.value,
            )

    def _seal_tag(self, repository: str, tag: str, dry_run: bool) -> SealResult:
        key = self.layout.tag_link(repository, tag)
        base = SealResult(Outcome.SKIPPED, key, repository=repository, reference=tag)
        try:
            current = self.store.get(key)
        except NotFoundError:
            return replace(base, reason="tag no longer exists")
        digest = decode_link(current.data, key)
        base = replace(base, plaintext_digest=digest.value)
        parsed = self.load_manifest(repository, digest)
        if parsed is None:
            return replace(base, reason="not an image manifest")
        if not self.has_plaintext(repository, parsed):
            if not _is_sealed(parsed):
                return replace(base, reason=self._why_no_plaintext(repository, parsed))
            record = self._own_record(repository, parsed)
            if record is None:
                # Anyone who may push can write regseal's annotations: only
                # regseal's own record makes a manifest one it sealed.
                return replace(
                    base,
                    reason="carries regseal's annotations, but regseal has no record "
                    "of sealing it; not recorded in TUF, nothing hidden",
                )
            # The tag's own event, a retry after a crash, a re-wrap, or someone
            # rewriting the tag link in storage: the target only moves forward.
            try:
                self._record_target(
                    repository,
                    tag,
                    parsed,
                    None,
                    newer_only=True,
                    sealed_at=_record_time(record),
                )
            except TargetRollbackError as exc:
                logger.warning(
                    "refused to move the TUF target of %s:%s from %s back to %s: %s",
                    repository,
                    tag,
                    exc.current,
                    exc.refused,
                    exc.why,
                )
                return replace(
                    base,
                    reason=f"already sealed, but sealed before {exc.current}, which "
                    f"the tag's TUF target names ({exc.why}); target not moved back, "
                    "nothing hidden",
                )
            except Exception:
                self._hide_sealed_sources(repository, parsed)  # plaintext first
                raise
            self._hide_sealed_sources(repository, parsed)
            return replace(base, reason="already sealed")
        team, policy = self._team_for(repository)
        if team is None:
            return replace(base, reason="no team claims the repository")
        if dry_run:
            return replace(base, outcome=Outcome.PENDING, reason=f"team {team.name}")

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
            # No event will seal this plaintext again once nothing tags it;
            # its sealed manifest is in place, so hide it now (which does
            # nothing while a tag or an index still uses it).
            self._hide_plaintext(repository, parsed)
            return replace(
                work.report(base, sealed),
                outcome=Outcome.SUPERSEDED,
                reason="tag moved or was deleted while sealing; a newer push is "
                "sealed by its own event",
            )
        # Plaintext first: a TUF failure (say, a team not yet added with
        # `regseal tuf add-team`) must not leave it reachable. The retry finds
        # the tag sealed and records the target then.
        self._hide_plaintext(repository, parsed)
        self._record_target(repository, tag, sealed, team)
        return work.report(base, sealed)

    def forget_tag(self, repository: str, tag: str) -> SealResult:
        """A tag link was removed: drop its TUF target if the tag is really gone."""
        key = self.layout.tag_link(repository, tag)
        base = SealResult(Outcome.IGNORED, key, repository=repository, reference=tag)
        if self.targets is None:
            return replace(base, reason="removal")
        if self.store.exists(key):
            return replace(base, reason="tag exists again")
        team = self.policies.get().team_for(repository)
        if team is None:
            return replace(base, reason="no team claims the repository")
        changed = self.targets.forget(team.name, repository, tag)
        return replace(
            base,
            outcome=Outcome.SKIPPED,
            reason="target removed" if changed else "no target to remove",
        )

    def _own_record(
        self, repository: str, sealed: mf.ImageManifest | mf.ImageIndex
    ) -> dict[str, Any] | None:
        """regseal's seal record of the manifest's plaintext, if it names it."""
        source = sealed.annotations.get(mf.ANNOTATION_PLAINTEXT, "")
        try:
            plaintext = Digest.parse(source)
        except ValueError:
            return None
        record = self._sealed_record(repository, plaintext)
        if record is None or record.get("sealed") != sealed.digest.value:
            return None
        return record

    def _record_target(
        self,
        repository: str,
        tag: str,
        sealed: SealedManifest | mf.ImageManifest | mf.ImageIndex,
        team: Team | None,
        *,
        newer_only: bool = False,
        sealed_at: int | None = None,
    ) -> None:
        """Sign the tag's sealed manifest into the team's TUF targets role.

        The target's ``sealedAt`` is now when this seal moved the tag. With
        ``newer_only`` (the tag found already sealed) it is ``sealed_at``, the
        time regseal's seal record gives the manifest, and the target is not
        moved to a manifest sealed before the one it names.

        Raises:
            TargetRollbackError: ``newer_only`` and the manifest is older.
        """
        if self.targets is None:
            return
        if isinstance(sealed, SealedManifest):
            data, parsed = sealed.data, mf.parse(sealed.data, str(sealed.digest))
        else:
            data = self.store.get(self.layout.blob_data(sealed.digest)).data
            parsed = sealed
        if team is None:
            team = self.policies.get().team_for(repository)
            if team is None:
                return
        annotations = parsed.annotations
        custom = TargetCustom(
            media_type=parsed.media_type,
            plaintext_digest=annotations.get(mf.ANNOTATION_PLAINTEXT),
            platforms=tuple(self._platforms(repository, parsed)),
            kms_key=annotations.get(mf.ANNOTATION_KMS_KEY),
            recipients=tuple(
                r for r in annotations.get(mf.ANNOTATION_RECIPIENTS, "").split(",") if r
            ),
            sealed_at=sealed_at if newer_only else self._now_ms(),
        )
        self.targets.record(
            team.name, repository, tag, data, custom, newer_only=newer_only
        )

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _platforms(
        self, repository: str, parsed: mf.ImageManifest | mf.ImageIndex
    ) -> list[str]:
        if isinstance(parsed, mf.ImageIndex):
            found = []
            for child in parsed.manifests:
                platform = child.platform or {}
                name = _platform_name(platform)
                if name and name != "unknown/unknown":
                    found.append(name)
            return found
        try:
            config = json.loads(
                self.store.get(self.layout.blob_data(parsed.config.digest)).data
            )
        except (NotFoundError, ValueError):
            return []
        name = _platform_name(config) if isinstance(config, dict) else None
        return [name] if name else []

    # -- push by digest ----------------------------------------------------

    def seal_revision(
        self, repository: str, digest: Digest, *, dry_run: bool = False
    ) -> SealResult:
        """Seal a manifest that was pushed by digest, or tagged without a tag event.

        A tag push also writes a revision link first; such manifests are left
        to the tag's own event, but checked again after the grace period in
        case a newer push took the tag first. A manifest no tag points at is
        sealed once it is older than the grace period, so that an index
        being pushed can still reference its plaintext children
        (docs/decisions/0004).

        Tags that no tag event announces (the write-back's
        ``tags_for_revision``: a registry that keeps tags in its database,
        like Harbor 2.15 and later) are handled here instead: the manifest is
        sealed at once, each such tag moved on its own, the plaintext hidden
        once no tag resolves to it, and a TUF target recorded per moved tag
        (docs/decisions/0009).

        As for tags, a ManifestError after a concurrent seal hid the revision
        is reported as that, not raised.
        """
        key = self.layout.revision_link(repository, digest)
        try:
            return self._seal_revision(repository, digest, dry_run)
        except ManifestError:
            if self.store.exists(key):
                raise
            logger.debug("%s hidden while sealing it", key)
            return SealResult(
                Outcome.SKIPPED,
                key,
                "revision hidden while sealing, by a concurrent seal",
                repository,
                digest.value,
                digest.value,
            )

    def _seal_revision(
        self, repository: str, digest: Digest, dry_run: bool
    ) -> SealResult:
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
            gone = replace(base, reason="revision no longer exists")
            record = self._sealed_record(repository, digest)
            if record is None or dry_run:
                return gone
            # Hidden by a seal that may have failed at its TUF records.
            sealed_digest = Digest.parse(record["sealed"])
            return replace(gone, tags=self._record_targets(repository, sealed_digest))
        parsed = self.load_manifest(repository, digest)
        if parsed is None:
            return replace(base, reason="not an image manifest")
        if not self.has_plaintext(repository, parsed):
            return replace(base, reason="no plaintext layers")
        # Tags no tag event announces (a registry that keeps them in its
        # database) are moved from here; storage mode names none.
        tags = self.writer.tags_for_revision(repository, digest)
        record = self._sealed_record(repository, digest)
        recorded = self._recorded_seal(repository, record)
        if recorded is not None and not dry_run:
            return self._finish_seal(repository, parsed, recorded, tags, base)
        if record is not None and not tags:
            return replace(base, reason="already sealed")
        team, policy = self._team_for(repository)
        if team is None:
            return replace(base, reason="no team claims the repository")
        if tags:
            # A tagged manifest is a top-level image: no index push can still
            # need its plaintext, so it is sealed at once (decisions/0009).
            if dry_run:
                return replace(
                    base,
                    outcome=Outcome.PENDING,
                    reason=f"team {team.name}; tags {', '.join(tags)}",
                )
            sealed, work = self._seal_top(repository, parsed, team, policy)
            moved = self._move_tags(repository, parsed, sealed, tags)
            for tag in moved:
                self._record_target(repository, tag, sealed, team)
            return self._tags_moved(work.report(base, sealed), moved)
        tagged = bool(self.still_tagged(repository, {digest}))
        if dry_run:
            if tagged:
                return replace(base, reason="tagged; left to its tag's event")
            return replace(base, outcome=Outcome.PENDING, reason=f"team {team.name}")
        age = self.clock() - info.last_modified.timestamp()
        grace = self.settings.digest_push_grace
        if age < grace and tagged:
            # Its tag's event seals it, unless a newer push moves the tag
            # first: that event then sees only the newer image, and this
            # one must seal the older one by digest (decisions/0004).
            raise RetryableError(
                f"{key}: tagged; checking again after {grace:.0f}s that its tag's "
                "seal took it"
            )
        if age < grace:
            raise RetryableError(
                f"{key}: manifest pushed by digest {age:.0f}s ago; sealing it after "
                f"{grace:.0f}s, when no index push can still need it"
            )
        if tagged:
            return replace(base, reason="tagged; left to its tag's event")
        if any(
            digest in refs
            for parent, refs in self._repository_references(repository).items()
            if parent != digest
        ):
            return replace(base, reason="listed by an index; sealed with it")
        sealed, work = self._seal_top(repository, parsed, team, policy)
        self._hide_plaintext(repository, parsed)
        return work.report(base, sealed)

    def _finish_seal(
        self,
        repository: str,
        plaintext: mf.ImageManifest | mf.ImageIndex,
        sealed: SealedManifest,
        tags: list[str],
        base: SealResult,
    ) -> SealResult:
        """Finish what a seal of ``plaintext`` began, as far as a crash cut it.

        Moves the tags that still resolve to the plaintext, hides it, and
        records the TUF targets of the tags already moved.
        """
        done = replace(base, reason="already sealed")
        self._move_tags(repository, plaintext, sealed, tags)
        recorded = self._record_targets(repository, sealed.digest)
        if tags:
            return self._tags_moved(done, recorded)
        return replace(done, tags=recorded)

    def _move_tags(
        self,
        repository: str,
        plaintext: mf.ImageManifest | mf.ImageIndex,
        sealed: SealedManifest,
        tags: list[str],
    ) -> tuple[str, ...]:
        """Move each tag from the plaintext to the sealed manifest, then hide.

        Each tag is moved on its own: one that moved meanwhile is left alone
        (superseded for that tag; the newer push is sealed by its own event).
        The plaintext is hidden only once no tag resolves to it (the
        write-back refuses otherwise). As for a tag event, the caller records
        the TUF targets after that.

        Returns:
            The tags moved to the sealed manifest.
        """
        moved = tuple(
            tag
            for tag in tags
            if self.writer.move_tag(
                repository,
                tag,
                sealed.digest,
                sealed.data,
                sealed.media_type,
                TagState(plaintext.digest),
            )
        )
        self._hide_plaintext(repository, plaintext)
        return moved

    def _tags_moved(self, result: SealResult, moved: tuple[str, ...]) -> SealResult:
        if moved:
            return replace(result, tags=moved)
        return replace(
            result,
            outcome=Outcome.SUPERSEDED,
            reason="every tag moved or was deleted while sealing; newer pushes are "
            "sealed by their own events",
        )

    def _record_targets(self, repository: str, sealed: Digest) -> tuple[str, ...]:
        """Record a target for every tag a revision event moved to ``sealed``.

        A re-delivery after a crash between the moves and the TUF records
        finds the tags already moved, and maybe the plaintext already hidden;
        only the write-back knows those tags (none in storage mode, where the
        tag's own event records its target).

        Returns:
            The tags recorded.
        """
        tags = tuple(self.writer.tags_for_revision(repository, sealed))
        if not tags:
            return ()
        data = self.store.get(self.layout.blob_data(sealed)).data
        manifest = SealedManifest(sealed, data, mf.parse(data, str(sealed)).media_type)
        for tag in tags:
            self._record_target(repository, tag, manifest, None)
        return tags

    def _recorded_seal(
        self, repository: str, record: dict[str, Any] | None
    ) -> SealedManifest | None:
        """The sealed manifest a record names, if the repository still has it."""
        if record is None:
            return None
        digest = Digest.parse(record["sealed"])
        if not self.store.exists(self.layout.revision_link(repository, digest)):
            return None
        data = self.store.get(self.layout.blob_data(digest)).data
        return SealedManifest(digest, data, record["media_type"])

    def _team_for(self, repository: str) -> tuple[Team | None, Policy]:
        policy = self.policies.get()
        return policy.team_for(repository), policy

    def _seal_top(
        self,
        repository: str,
        parsed: mf.ImageManifest | mf.ImageIndex,
        team: Team,
        policy: Policy,
    ) -> tuple[SealedManifest, _Work]:
        self._check_blobs(repository, parsed)
        work = _Work()
        return self._seal_any(repository, parsed, team, policy, work, depth=0), work

    # -- manifests ---------------------------------------------------------

    def load_manifest(
        self, repository: str, digest: Digest
    ) -> mf.ImageManifest | mf.ImageIndex | None:
        """Read a manifest of ``repository``; None for kinds left alone.

        Raises:
            ManifestError: the manifest is missing, does not match its digest,
                does not parse, or has a layer typed ``+encrypted`` that is no
                ocicrypt layer (see :func:`check_encrypted_layers`).
        """
        parsed = self.read_manifest(repository, digest)
        if isinstance(parsed, mf.ImageManifest):
            check_encrypted_layers(parsed, f"manifest {digest} of {repository}")
        return parsed

    def read_manifest(
        self, repository: str, digest: Digest
    ) -> mf.ImageManifest | mf.ImageIndex | None:
        """Like :meth:`load_manifest`, without checking the layers' claims."""
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
    ) -> SealedManifest:
        record = self._sealed_record(repository, parsed.digest)
        if record is not None and record.get("policy") == policy.version:
            sealed_digest = Digest.parse(record["sealed"])
            if self.store.exists(self.layout.revision_link(repository, sealed_digest)):
                data = self.store.get(self.layout.blob_data(sealed_digest)).data
                work.layers_reused += int(record.get("layers", 0))
                if depth == 0:
                    # A re-push of this image is a new seal of it: should the
                    # function stop before its TUF target is recorded, the
                    # retry's "already sealed" path must see it as newer than
                    # the target it replaces (decisions/0011).
                    self._put_json(
                        self._sealed_record_key(repository, parsed.digest),
                        {**record, "sealed_at": self._now_ms()},
                    )
                return SealedManifest(sealed_digest, data, record["media_type"])
        if isinstance(parsed, mf.ImageIndex):
            sealed = self._seal_index(repository, parsed, team, policy, work, depth)
        else:
            sealed = self._seal_image(repository, parsed, team, policy, work)
        self._write_manifest(repository, sealed)
        self.write_record(
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
    ) -> SealedManifest:
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
            parsed = self.load_manifest(repository, child.digest)
            if parsed is None or not self.has_plaintext(repository, parsed, depth + 1):
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
        children = _repoint_references(children, index.manifests)
        annotations = sealed_annotations(index.annotations, index.digest, team, policy)
        data = mf.build_index(index, children, annotations)
        return SealedManifest(Digest.of(data), data, mf.OCI_INDEX)

    def _seal_image(
        self,
        repository: str,
        image: mf.ImageManifest,
        team: Team,
        policy: Policy,
        work: _Work,
    ) -> SealedManifest:
        layers = [
            self._seal_layer(repository, layer, team, policy, work)
            for layer in image.layers
        ]
        config = image.config
        if config.media_type == mf.DOCKER_CONFIG:
            config = replace(config, media_type=mf.OCI_CONFIG)
        annotations = sealed_annotations(image.annotations, image.digest, team, policy)
        data = mf.build_manifest(image, config, layers, annotations)
        return SealedManifest(Digest.of(data), data, mf.OCI_MANIFEST)

    def _write_manifest(self, repository: str, sealed: SealedManifest) -> None:
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
        # The encryptor refuses (IntegrityError) a blob whose content is not
        # the plaintext digest the options name, before anything is linked;
        # with verify_plaintext off the registry's push-time check stands in
        # for it and decryption enforces the digest (docs/decisions/0010).
        encrypted = self.writer.write_layer(repository, source, layer.size, options)
        annotations = ocicrypt.strip_enc_annotations(layer.annotations)
        annotations[ocicrypt.ANNOTATION_PUBOPTS] = ocicrypt.PublicOptions(
            encrypted.hmac
        ).to_annotation()
        annotations.update(self.wrap_layer_keys(repository, options, team))
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
        self.write_layer_record(repository, layer.digest, sealed, policy)
        work.layers_sealed += 1
        work.bytes_sealed += layer.size
        return sealed

    def wrap_layer_keys(
        self, repository: str, options: ocicrypt.PrivateOptions, team: Team
    ) -> dict[str, str]:
        """The key annotations of a layer: one JWE per recipient, one KMS item."""
        private = options.to_json()
        keys: dict[str, str] = {}
        if team.recipients:
            recipients = [_recipient(r) for r in team.recipients]
            keys[ocicrypt.ANNOTATION_JWE] = jwe.wrap_all(private, recipients)
        keys[ANNOTATION_KMS] = self.kms.wrap(
            private, team.kms_key, encryption_context(repository, options.digest)
        )
        return keys

    def _check_blobs(
        self, repository: str, parsed: mf.ImageManifest | mf.ImageIndex, depth: int = 0
    ) -> None:
        """Check the config and every plaintext layer before anything is written.

        Bad input (an unknown layer type, a missing blob or link, a size that
        does not match) must leave the registry exactly as it was, so it is
        found here rather than halfway through writing sealed layers. The
        config counts too: the sealed manifest keeps it, and a tag moved to a
        manifest whose config is gone no longer pulls.
        """
        if isinstance(parsed, mf.ImageIndex):
            for child in parsed.manifests:
                if child.media_type in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
                    loaded = self.load_manifest(repository, child.digest)
                    if loaded is not None:
                        self._check_blobs(repository, loaded, depth + 1)
            return
        self._check_blob(
            repository, parsed.config, f"config {parsed.config.digest} of {repository}"
        )
        for layer in parsed.layers:
            if not _is_plaintext_layer(layer):
                continue
            where = f"layer {layer.digest} of {repository}"
            if layer.media_type not in _SEALABLE_LAYERS:
                raise ManifestError(
                    f"{where}: expected a tar layer media type (one of "
                    f"{', '.join(_SEALABLE_LAYERS)}), got {layer.media_type!r}"
                )
            self._check_blob(repository, layer, where)

    def _check_blob(
        self, repository: str, descriptor: mf.Descriptor, where: str
    ) -> None:
        info = self.store.head(self.layout.blob_data(descriptor.digest))
        if info is None or not self.store.exists(
            self.layout.layer_link(repository, descriptor.digest)
        ):
            raise ManifestError(f"{where}: blob or _layers link missing")
        if info.size != descriptor.size:
            raise ManifestError(
                f"{where}: descriptor says {descriptor.size} bytes, the blob has "
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
        tag_index = self.tag_index(repository)
        candidates = {plaintext.digest}
        if isinstance(plaintext, mf.ImageIndex):
            candidates |= self._sealed_descendants(repository, plaintext)
        tagged = self.still_tagged(repository, candidates, tag_index)
        if plaintext.digest in tagged:
            logger.debug(
                "%s still tagged in %s; not hidden yet", plaintext.digest, repository
            )
            return
        references = self._repository_references(repository)
        hidden = candidates - tagged
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
        # The plaintext's own revision link goes last: while it exists, a
        # retry after a crash (_hide_sealed_sources) knows hiding is unfinished.
        for digest in sorted(hidden, key=lambda d: (d == plaintext.digest, d)):
            # The plaintext itself as read: its revision may be gone already
            # (deleted while sealing), its layers still linked.
            parsed = (
                plaintext
                if digest == plaintext.digest
                else self._load_or_none(repository, digest)
            )
            if isinstance(parsed, mf.ImageManifest):
                for layer in parsed.layers:
                    if layer.digest not in in_use and not layer.urls:
                        self.writer.unlink_layer(repository, layer.digest)
            self.writer.unlink_manifest(
                repository, digest, sorted(tag_index.get(digest, ()))
            )

    def _sealed_descendants(
        self, repository: str, index: mf.ImageIndex, depth: int = 0
    ) -> set[Digest]:
        """The manifests under an index (at any depth) that were sealed.

        Nested indexes are read from their blobs, not through revision links,
        so that a retry after a crash mid-hiding still finds the whole tree.
        """
        found: set[Digest] = set()
        for child in index.manifests:
            if (
                child.media_type not in mf.MANIFEST_TYPES | mf.INDEX_TYPES
                or self._sealed_record(repository, child.digest) is None
            ):
                continue
            found.add(child.digest)
            if child.media_type in mf.INDEX_TYPES and depth + 1 < MAX_INDEX_DEPTH:
                nested = self._blob_manifest(child.digest)
                if isinstance(nested, mf.ImageIndex):
                    found |= self._sealed_descendants(repository, nested, depth + 1)
        return found

    def _blob_manifest(self, digest: Digest) -> mf.ImageManifest | mf.ImageIndex | None:
        key = self.layout.blob_data(digest)
        try:
            data = self.store.get(key).data
            return mf.parse(data, key) if Digest.of(data) == digest else None
        except (NotFoundError, ManifestError):
            return None

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

        Manifests not yet in the cache are read :data:`REFERENCE_READERS` at a
        time: the first seal in a cold function reads every revision.

        NOTE: still one GET per revision the function has not seen; fine for
        thousands of revisions, a per-repository reference index is the way
        for many more.
        """
        prefix = self.layout.revisions_prefix(repository)
        digests: list[Digest] = []
        for hex_part in self.store.list_children(prefix):
            try:
                digests.append(Digest.parse("sha256:" + hex_part))
            except ValueError:
                continue
        unseen = [d for d in digests if d not in self._references_cache]
        if len(unseen) > 1:
            with ThreadPoolExecutor(REFERENCE_READERS, "regseal-refs") as readers:
                for digest, found in zip(
                    unseen, readers.map(self._read_references, unseen), strict=True
                ):
                    self._cache_references(digest, found)
        return {digest: self._referenced_digests(digest) for digest in digests}

    def _referenced_digests(self, digest: Digest) -> set[Digest]:
        """Digests a manifest of any kind references: layers, config, children.

        Manifests are content addressed, so the answer for a digest never
        changes and is cached for the life of the sealer.
        """
        cached = self._references_cache.get(digest)
        if cached is None:
            cached = self._read_references(digest)
            self._cache_references(digest, cached)
        return cached if cached is not None else set()

    def _cache_references(self, digest: Digest, found: set[Digest] | None) -> None:
        if found is None:
            return  # not cached: a missing blob says nothing lasting
        if len(self._references_cache) > REFERENCE_CACHE_SIZE:
            self._references_cache.clear()
        self._references_cache[digest] = found

    def _read_references(self, digest: Digest) -> set[Digest] | None:
        try:
            doc = json.loads(self.store.get(self.layout.blob_data(digest)).data)
        except NotFoundError:
            return None
        except ValueError:
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

    def has_plaintext(
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
            loaded = self.load_manifest(repository, child.digest)
            if loaded is not None and self.has_plaintext(repository, loaded, depth + 1):
                return True
        return False

    def _why_no_plaintext(
        self, repository: str, parsed: mf.ImageManifest | mf.ImageIndex, depth: int = 0
    ) -> str:
        """The skip reason for a manifest regseal did not seal and need not."""
        if isinstance(parsed, mf.ImageManifest):
            if any(
                ocicrypt.is_encrypted_media_type(x.media_type) for x in parsed.layers
            ):
                return "already encrypted, not by regseal"
            return "no plaintext layers"
        for child in parsed.manifests:
            if child.media_type not in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
                continue
            loaded = self._load_or_none(repository, child.digest)
            if loaded is not None and depth < MAX_INDEX_DEPTH:
                reason = self._why_no_plaintext(repository, loaded, depth + 1)
                if reason.startswith("already encrypted"):
                    return reason
        return "no plaintext layers"

    def _load_or_none(
        self, repository: str, digest: Digest
    ) -> mf.ImageManifest | mf.ImageIndex | None:
        try:
            return self.load_manifest(repository, digest)
        except ManifestError:
            return None

    def tag_index(self, repository: str) -> dict[Digest, set[str]]:
        """For each manifest digest, the tags whose index links name it.

        One listing of the repository's ``_manifests/tags/``: a tag can only
        point at a digest it has an index link for, because the registry (and
        regseal) writes the index link before ``current/link``.
        """
        index: dict[Digest, set[str]] = {}
        prefix = self.layout.tags_prefix(repository)
        for key in self.store.list_keys(prefix):
            tag, _, rest = key[len(prefix) :].partition("/")
            if not rest.startswith("index/sha256/") or not rest.endswith("/link"):
                continue
            try:
                digest = Digest.parse("sha256:" + rest[13:-5])
            except ValueError:
                continue
            index.setdefault(digest, set()).add(tag)
        return index

    def still_tagged(
        self,
        repository: str,
        digests: set[Digest],
        tag_index: dict[Digest, set[str]] | None = None,
    ) -> set[Digest]:
        """Which of ``digests`` a tag of the repository points at right now."""
        if tag_index is None:
            tag_index = self.tag_index(repository)
        tagged = set()
        for digest in digests:
            for tag in sorted(tag_index.get(digest, ())):
                if self._read_link(self.layout.tag_link(repository, tag)) == digest:
                    tagged.add(digest)
                    break
        return tagged

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

    def write_record(
        self,
        repository: str,
        plaintext: Digest,
        sealed: SealedManifest,
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
                "sealed_at": self._now_ms(),
            },
        )

    def write_layer_record(
        self,
        repository: str,
        plaintext: Digest | str,
        sealed: mf.Descriptor,
        policy: Policy,
    ) -> None:
        """Remember how a plaintext layer of the repository was sealed."""
        self._put_json(
            self._layer_record_key(repository, Digest.parse(str(plaintext))),
            {"policy": policy.version, "descriptor": sealed.to_json()},
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


def sealed_annotations(
    original: dict[str, str] | Any, plaintext: Digest, team: Team, policy: Policy
) -> dict[str, str]:
    annotations = dict(original)
    annotations[mf.ANNOTATION_PLAINTEXT] = plaintext.value
    annotations[mf.ANNOTATION_POLICY_VERSION] = policy.version
    annotations[mf.ANNOTATION_TEAM] = team.name
    annotations[mf.ANNOTATION_KMS_KEY] = team.kms_key
    if team.recipients:
        annotations[mf.ANNOTATION_RECIPIENTS] = ",".join(
            f"{r.name}={recipient_fingerprint(r)}" for r in team.recipients
        )
    return annotations


def sealed_for(annotations: Mapping[str, str], team: Team) -> bool:
    """True when a sealed manifest's keys are the team's current keys."""
    wanted = sorted(f"{r.name}={recipient_fingerprint(r)}" for r in team.recipients)
    have = sorted(
        item
        for item in annotations.get(mf.ANNOTATION_RECIPIENTS, "").split(",")
        if item
    )
    return (
        annotations.get(mf.ANNOTATION_TEAM) == team.name
        and annotations.get(mf.ANNOTATION_KMS_KEY) == team.kms_key
        and wanted == have
    )


def recipient_fingerprint(recipient: Recipient) -> str:
    """``sha256:<hex>`` of a policy recipient's public key (DER)."""
    return _recipient(recipient).fingerprint


@functools.lru_cache(maxsize=256)
def _recipient(recipient: Recipient) -> jwe.Recipient:
    return jwe.Recipient.from_pem(
        recipient.public_key.encode(), source=f"policy recipient {recipient.name}"
    )


def _platform_name(doc: Mapping[str, Any]) -> str | None:
    """``os/architecture[/variant]`` of a platform object or image config."""
    os_name, architecture = doc.get("os"), doc.get("architecture")
    if not isinstance(os_name, str) or not isinstance(architecture, str):
        return None
    if not os_name or not architecture:
        return None
    variant = doc.get("variant")
    return "/".join(
        [os_name, architecture]
        + ([variant] if isinstance(variant, str) and variant else [])
    )


REFERENCE_DIGEST = "vnd.docker.reference.digest"
"""BuildKit's annotation on an attestation manifest in an index: the digest of
the platform manifest (in the same index) that the attestation describes."""


def _repoint_references(
    children: list[mf.Descriptor], pushed: Sequence[mf.Descriptor]
) -> list[mf.Descriptor]:
    """Point attestations at the sealed manifests that replaced what they describe.

    An attestation describes a platform image by the digest that image had
    when it was pushed; once sealed, the index lists the sealed image
    instead, and an attestation still naming the plaintext digest would name
    a manifest that is no longer there (clients then drop it as orphaned).
    The sealed image decrypts to exactly the image described (its plaintext
    digest is in its annotations), so the attestation is re-pointed; its own
    content, with the in-toto subject naming the plaintext digest, is kept.
    """
    sealed_for_pushed = {
        before.digest.value: after.digest.value
        for before, after in zip(pushed, children, strict=True)
        if before.digest != after.digest
    }
    repointed = []
    for child in children:
        target = child.annotations.get(REFERENCE_DIGEST)
        if target in sealed_for_pushed:
            annotations = {
                **child.annotations,
                REFERENCE_DIGEST: sealed_for_pushed[target],
            }
            child = replace(child, annotations=annotations)
        repointed.append(child)
    return repointed


def check_encrypted_layers(image: mf.ImageManifest, where: str) -> None:
    """Refuse an image whose ``+encrypted`` layers are not ocicrypt layers.

    Such a layer carries no public options or no wrapped key, so neither
    skopeo nor regseal can open it, and its blob may well be plaintext. It is
    not "encrypted by another tool" to be left alone: the seal refuses the
    whole manifest, as it refuses other bad input, rather than keep the layer
    as it is and call the image sealed.

    Raises:
        ManifestError: naming the first such layer and what it lacks.
    """
    for index, layer in enumerate(image.layers):
        if not ocicrypt.is_encrypted_media_type(layer.media_type):
            continue
        missing = ocicrypt.missing_layer_annotations(layer.annotations)
        if missing:
            raise ManifestError(
                f"{where}: layer {index} ({layer.digest}) has media type "
                f"{layer.media_type!r} but is no ocicrypt layer: expected the "
                f"ocicrypt annotations, missing {' and '.join(missing)}"
            )


def _record_time(record: Mapping[str, Any]) -> int | None:
    """A seal record's ``sealed_at`` (milliseconds), None when it has none."""
    value = record.get("sealed_at")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _is_plaintext_layer(layer: mf.Descriptor) -> bool:
    """A layer regseal must encrypt: stored in the registry, not encrypted."""
    return not (
        ocicrypt.is_encrypted_media_type(layer.media_type)
        or layer.urls
        or layer.media_type in _PASSTHROUGH_LAYERS
    )


def _is_sealed(parsed: mf.ImageManifest | mf.ImageIndex) -> bool:
    return mf.ANNOTATION_PLAINTEXT in parsed.annotations
