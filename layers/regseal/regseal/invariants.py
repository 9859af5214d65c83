"""The invariants of a sealed registry, checked against what is in the bucket.

DESIGN.md lists what a seal must never break; this module reads a registry
bucket and reports every place where one of them does not hold, so that tests
(after every crash point, race and bad input) and operators (after an
incident, or on a schedule) ask the same question the same way:

- ``tag-resolves``: every tag's ``current/link`` names a manifest with a
  revision link and a manifest blob of that digest, which parses.
- ``manifest-complete``: the manifest of every tag (recursively through
  indexes) and every regseal-sealed revision has its config, layer and child
  blobs, their ``_layers`` or revision links, and sizes that match.
- ``sealed-decrypts``: every encrypted layer of a manifest regseal sealed
  opens with the keys given (JWE private keys, KMS or both), passes the HMAC,
  digest and size checks, and decrypts to the plaintext layer it came from.

With ``finished=True`` (no seal is running and every event was handled) two
more hold in every repository the policy claims:

- ``tag-sealed``: no tag leads to a plaintext layer.
- ``plaintext-hidden``: no revision link leads to a plaintext layer, no
  ``_layers`` link names a plaintext layer that no remaining manifest uses,
  and no tag index link names a manifest that has no revision link.

A layer is plaintext when its type is a filesystem layer type (OCI
``image.layer.*``, Docker ``rootfs.*``), it is no ocicrypt layer (typed
``+encrypted`` with public options and a wrapped key: a layer that only
claims encryption opens with no key and counts as plaintext) and it has no
``urls`` (so its content is in the registry). Manifests that are not
images (signatures, attestations, charts, other artifacts) carry no plaintext
layers by that rule.

Whatever ``finished`` says, ``repository-claimed`` holds when the policy
(through ``sealable``) names a team for every repository; only a policy whose
``unmatched`` is "fail" can break it, for each repository no team claims.

Further checks are callables given as ``extra_checks``, which see the same
:class:`RegistryView`. :func:`tuf_targets` is one: ``tuf-target`` holds when
python-tuf's reference client, from a trusted root, finds every sealed tag as
a target with exactly the length and sha256 of the manifest the tag points at.

Public API: :func:`check_registry`, :func:`tuf_targets`, :class:`Keys`,
:class:`Report`, :class:`Violation`, :class:`RegistryView`, the invariant
names.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regseal import jwe, ocicrypt
from regseal import manifest as mf
from regseal.digest import Digest
from regseal.errors import (
    DigestError,
    FormatError,
    InvariantError,
    ManifestError,
    NotFoundError,
    OcicryptError,
    PolicyError,
    RegsealError,
)
from regseal.kms import ANNOTATION_KMS, KmsPacket, KmsWrapper
from regseal.layout import LinkKind, RegistryLayout, decode_link
from regseal.storage import ObjectStore

logger = logging.getLogger(__name__)

TAG_RESOLVES = "tag-resolves"
MANIFEST_COMPLETE = "manifest-complete"
SEALED_DECRYPTS = "sealed-decrypts"
TAG_SEALED = "tag-sealed"
PLAINTEXT_HIDDEN = "plaintext-hidden"
TUF_TARGET = "tuf-target"
REPOSITORY_CLAIMED = "repository-claimed"

# Deeper nesting than this is reported rather than followed.
MAX_DEPTH = 8
READ_WINDOW = 8 * 1024 * 1024

_DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign."


@dataclass(frozen=True)
class Violation:
    """One place where an invariant does not hold."""

    invariant: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.where}: {self.detail}"


@dataclass(frozen=True)
class Report:
    """What a check found, and how much it looked at."""

    violations: tuple[Violation, ...]
    repositories: int
    tags: int
    revisions: int
    layers_opened: int

    @property
    def ok(self) -> bool:
        return not self.violations

    def of(self, invariant: str) -> list[Violation]:
        """The violations of one invariant."""
        return [v for v in self.violations if v.invariant == invariant]

    def raise_for_violations(self) -> None:
        """Raise :class:`InvariantError` listing every violation, if any."""
        if self.violations:
            listing = "\n  ".join(str(v) for v in self.violations)
            raise InvariantError(
                f"{len(self.violations)} invariant violations:\n  {listing}"
            )


@dataclass(frozen=True)
class Keys:
    """What opens sealed layers: JWE private keys, KMS, or both.

    With both, each layer must open with each, to the same options. With
    neither, ``sealed-decrypts`` checks only that the annotations parse.
    """

    jwe_keys: Sequence[jwe.PrivateKey] = ()
    kms: KmsWrapper | None = None


@dataclass
class RepositoryView:
    """The links of one repository, as listed."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)  # tag -> current/link key
    tag_index: set[tuple[str, Digest]] = field(default_factory=set)
    revisions: set[Digest] = field(default_factory=set)
    layers: set[Digest] = field(default_factory=set)


@dataclass
class RegistryView:
    """A registry bucket listed once, with cached manifest reads."""

    store: ObjectStore
    layout: RegistryLayout
    repositories: dict[str, RepositoryView]
    _manifests: dict[Digest, mf.ImageManifest | mf.ImageIndex | None] = field(
        default_factory=dict
    )

    @classmethod
    def read(
        cls, store: ObjectStore, layout: RegistryLayout, only: Sequence[str] = ()
    ) -> RegistryView:
        """List every link under the registry root (or only ``only``)."""
        repositories: dict[str, RepositoryView] = {}
        for key in store.list_keys(layout.repositories_prefix):
            try:
                link = layout.parse_key(key)
            except FormatError:
                logger.debug("not a registry link: %s", key)
                continue
            if link is None or (only and link.repository not in only):
                continue
            repo = repositories.setdefault(
                link.repository, RepositoryView(link.repository)
            )
            if link.kind is LinkKind.TAG:
                assert link.tag is not None
                repo.tags[link.tag] = key
            elif link.kind is LinkKind.TAG_INDEX:
                assert link.tag is not None
                assert link.digest is not None
                repo.tag_index.add((link.tag, link.digest))
            elif link.kind is LinkKind.REVISION:
                assert link.digest is not None
                repo.revisions.add(link.digest)
            else:
                assert link.digest is not None
                repo.layers.add(link.digest)
        return cls(store, layout, repositories)

    def manifest(self, digest: Digest) -> mf.ImageManifest | mf.ImageIndex | None:
        """The parsed manifest blob of ``digest``; None if missing or unreadable."""
        if digest not in self._manifests:
            self._manifests[digest] = self._read_manifest(digest)
        return self._manifests[digest]

    def _read_manifest(self, digest: Digest) -> mf.ImageManifest | mf.ImageIndex | None:
        key = self.layout.blob_data(digest)
        try:
            data = self.store.get(key).data
        except NotFoundError:
            return None
        if Digest.of(data) != digest:
            return None
        try:
            return mf.parse(data, key)
        except ManifestError:
            return None

    def blob_size(self, digest: Digest) -> int | None:
        info = self.store.head(self.layout.blob_data(digest))
        return None if info is None else info.size


ExtraCheck = Callable[[RegistryView], Sequence[Violation]]


def tuf_targets(
    root: bytes,
    metadata_url: str,
    cache_dir: Path,
    *,
    sealable: Callable[[str], bool] = lambda _repository: True,
    fetcher: Any = None,
) -> ExtraCheck:
    """The ``tuf-target`` check, for ``extra_checks``.

    Args:
        root: the trusted root metadata (JSON bytes).
        metadata_url: where the metadata is (``s3://bucket/prefix/`` or http).
        cache_dir: the client's trusted-metadata directory.
        sealable: which repositories the policy claims (others have no
            targets).
        fetcher: how to download (default: S3 for ``s3://`` URLs).
    """

    def check(view: RegistryView) -> list[Violation]:
        from tuf.api import exceptions as tuf_errors
        from tuf.ngclient import Updater

        from regseal.tuf.fetcher import S3Fetcher
        from regseal.tuf.targets import target_path

        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            updater = Updater(
                metadata_dir=str(cache_dir),
                metadata_base_url=metadata_url,
                fetcher=fetcher
                or (S3Fetcher() if metadata_url.startswith("s3://") else None),
                bootstrap=root,
            )
            updater.refresh()
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            return [Violation(TUF_TARGET, metadata_url, f"metadata not trusted: {exc}")]
        violations = []
        for repo in sorted(view.repositories.values(), key=lambda r: r.name):
            try:
                if not sealable(repo.name):
                    continue
            except PolicyError:
                continue  # reported as repository-claimed
            for tag, key in sorted(repo.tags.items()):
                where = f"{repo.name}:{tag}"
                try:
                    digest = decode_link(view.store.get(key).data, key)
                    data = view.store.get(view.layout.blob_data(digest)).data
                except (NotFoundError, FormatError):
                    continue  # tag-resolves reports it
                parsed = view.manifest(digest)
                if parsed is None or not is_sealed(parsed):
                    continue  # only sealed tags are targets
                try:
                    target = updater.get_targetinfo(target_path(repo.name, tag))
                except tuf_errors.RepositoryError as exc:
                    violations.append(Violation(TUF_TARGET, where, str(exc)))
                    continue
                if target is None:
                    violations.append(Violation(TUF_TARGET, where, "no TUF target"))
                elif (target.length, target.hashes.get("sha256")) != (
                    len(data),
                    digest.hex,
                ):
                    violations.append(
                        Violation(
                            TUF_TARGET,
                            where,
                            f"target is sha256:{target.hashes.get('sha256')} "
                            f"({target.length} bytes), the tag {digest} "
                            f"({len(data)} bytes)",
                        )
                    )
        return violations

    return check


def is_plaintext_layer(layer: mf.Descriptor) -> bool:
    """A filesystem layer whose content the registry holds unencrypted.

    NOTE: Docker foreign layers are left out even without ``urls``: ocicrypt
    has no encrypted form for them, so regseal leaves them as pushed.
    """
    return (
        layer.media_type.startswith(mf.LAYER_TYPE_PREFIXES)
        and not layer.media_type.startswith(_DOCKER_FOREIGN)
        and not is_ocicrypt_layer(layer)
        and not layer.urls
    )


def is_ocicrypt_layer(layer: mf.Descriptor) -> bool:
    """Typed ``+encrypted`` and carrying what ocicrypt needs to open it.

    A layer typed ``+encrypted`` without public options or a wrapped key
    opens with no key at all, so it counts as plaintext (its blob may be).
    """
    return ocicrypt.is_encrypted_media_type(
        layer.media_type
    ) and not ocicrypt.missing_layer_annotations(layer.annotations)


def is_sealed(parsed: mf.ImageManifest | mf.ImageIndex) -> bool:
    """Whether regseal wrote this manifest (it names its plaintext source)."""
    return mf.ANNOTATION_PLAINTEXT in parsed.annotations


def check_registry(
    store: ObjectStore,
    layout: RegistryLayout | None = None,
    *,
    keys: Keys | None = None,
    finished: bool = False,
    sealable: Callable[[str], bool] = lambda _repository: True,
    repositories: Sequence[str] = (),
    extra_checks: Sequence[ExtraCheck] = (),
) -> Report:
    """Check a registry bucket against the invariants.

    Args:
        store: the registry bucket.
        layout: its layout (root directory); the default root "/" if None.
        keys: what opens sealed layers.
        finished: also check ``tag-sealed`` and ``plaintext-hidden``: only
            true once every event was handled and no seal is running.
        sealable: which repositories the policy claims (for the two
            ``finished`` invariants); a PolicyError from it (a policy whose
            ``unmatched`` is "fail") is a ``repository-claimed`` violation
            for that repository, whose other checks skip the two.
        repositories: check only these (default: every repository).
        extra_checks: further checks over the same view (TUF metadata).

    Returns:
        The report; :meth:`Report.raise_for_violations` turns it into an
        error.
    """
    view = RegistryView.read(store, layout or RegistryLayout(), repositories)
    checker = _Checker(view, keys or Keys())
    for repo in view.repositories.values():
        try:
            claimed = sealable(repo.name)
        except PolicyError as exc:
            # "unmatched": "fail": the seal refuses every event of this
            # repository, so it is one violation, and the rest is checked.
            checker.fail(REPOSITORY_CLAIMED, repo.name, str(exc))
            claimed = False
        checker.check_repository(repo, finished=finished and claimed)
    for extra in extra_checks:
        checker.violations.extend(extra(view))
    return Report(
        tuple(checker.violations),
        repositories=len(view.repositories),
        tags=sum(len(r.tags) for r in view.repositories.values()),
        revisions=sum(len(r.revisions) for r in view.repositories.values()),
        layers_opened=checker.layers_opened,
    )


class _Checker:
    def __init__(self, view: RegistryView, keys: Keys) -> None:
        self.view = view
        self.keys = keys
        self.violations: list[Violation] = []
        self.layers_opened = 0
        self._complete: set[tuple[str, Digest]] = set()
        self._opened: set[tuple[str, Digest]] = set()

    def fail(self, invariant: str, where: str, detail: str) -> None:
        self.violations.append(Violation(invariant, where, detail))

    # -- per repository ------------------------------------------------------

    def check_repository(self, repo: RepositoryView, *, finished: bool) -> None:
        tagged: dict[str, Digest] = {}
        for tag, key in sorted(repo.tags.items()):
            digest = self._resolve_tag(repo, tag, key)
            if digest is None:
                continue
            tagged[tag] = digest
            self._check_complete(repo, digest, f"{repo.name}:{tag}", depth=0)
            if finished and self._leads_to_plaintext(digest, depth=0):
                self.fail(
                    TAG_SEALED,
                    f"{repo.name}:{tag}",
                    f"points at {digest}, which leads to plaintext layers"
                    + self._fake_encryption(digest, depth=0),
                )
        for digest in sorted(repo.revisions):
            parsed = self.view.manifest(digest)
            if parsed is not None and is_sealed(parsed):
                self._check_complete(repo, digest, f"{repo.name}@{digest}", depth=0)
        if finished:
            self._check_hidden(repo, set(tagged.values()))

    def _resolve_tag(self, repo: RepositoryView, tag: str, key: str) -> Digest | None:
        where = f"{repo.name}:{tag}"
        try:
            digest = decode_link(self.view.store.get(key).data, key)
        except NotFoundError:
            return None  # deleted since the listing
        except FormatError as exc:
            self.fail(TAG_RESOLVES, where, str(exc))
            return None
        if digest not in repo.revisions:
            self.fail(TAG_RESOLVES, where, f"{digest} has no revision link")
            return None
        if self.view.manifest(digest) is None:
            self.fail(
                TAG_RESOLVES,
                where,
                f"manifest blob of {digest} is missing, altered or unparseable",
            )
            return None
        if (tag, digest) not in repo.tag_index:
            self.fail(TAG_RESOLVES, where, f"no tag index link for {digest}")
        return digest

    # -- completeness ----------------------------------------------------------

    def _check_complete(
        self, repo: RepositoryView, digest: Digest, where: str, depth: int
    ) -> None:
        if (repo.name, digest) in self._complete:
            return
        self._complete.add((repo.name, digest))
        parsed = self.view.manifest(digest)
        if parsed is None:
            self.fail(MANIFEST_COMPLETE, where, f"manifest {digest} is unreadable")
            return
        if isinstance(parsed, mf.ImageIndex):
            if depth >= MAX_DEPTH:
                self.fail(MANIFEST_COMPLETE, where, f"nested deeper than {MAX_DEPTH}")
                return
            for child in parsed.manifests:
                if child.media_type not in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
                    continue
                if child.digest not in repo.revisions:
                    self.fail(
                        MANIFEST_COMPLETE,
                        where,
                        f"child {child.digest} has no revision link",
                    )
                    continue
                self._check_child_blob(where, child)
                self._check_complete(repo, child.digest, where, depth + 1)
            return
        self._check_blob(repo, where, parsed.config, "config")
        for index, layer in enumerate(parsed.layers):
            if layer.urls:
                continue  # foreign: the registry does not hold it
            self._check_blob(repo, where, layer, f"layer {index}")
        if is_sealed(parsed):
            self._check_sealed(repo, parsed, where)

    def _check_child_blob(self, where: str, child: mf.Descriptor) -> None:
        size = self.view.blob_size(child.digest)
        if size != child.size:
            self.fail(
                MANIFEST_COMPLETE,
                where,
                f"child {child.digest}: descriptor says {child.size} bytes, "
                f"blob has {size}",
            )

    def _check_blob(
        self, repo: RepositoryView, where: str, descriptor: mf.Descriptor, what: str
    ) -> None:
        size = self.view.blob_size(descriptor.digest)
        if size is None:
            self.fail(MANIFEST_COMPLETE, where, f"{what} blob {descriptor.digest} lost")
        elif size != descriptor.size:
            self.fail(
                MANIFEST_COMPLETE,
                where,
                f"{what} {descriptor.digest}: descriptor says {descriptor.size} "
                f"bytes, blob has {size}",
            )
        if descriptor.digest not in repo.layers:
            self.fail(
                MANIFEST_COMPLETE,
                where,
                f"{what} {descriptor.digest} has no _layers link",
            )

    # -- decryption ------------------------------------------------------------

    def _check_sealed(
        self, repo: RepositoryView, sealed: mf.ImageManifest, where: str
    ) -> None:
        source = self._plaintext_source(sealed)
        for index, layer in enumerate(sealed.layers):
            if not ocicrypt.is_encrypted_media_type(layer.media_type):
                continue
            if ANNOTATION_KMS not in layer.annotations:
                continue  # encrypted by someone else; kept as it was
            if (repo.name, layer.digest) in self._opened:
                continue
            self._opened.add((repo.name, layer.digest))
            expected = None
            if source is not None and index < len(source.layers):
                expected = source.layers[index].digest
            try:
                self._open_layer(repo.name, layer, expected)
            except RegsealError as exc:
                self.fail(
                    SEALED_DECRYPTS,
                    f"{where} layer {index} ({layer.digest})",
                    f"{type(exc).__name__}: {exc}",
                )

    def _plaintext_source(self, sealed: mf.ImageManifest) -> mf.ImageManifest | None:
        try:
            digest = Digest.parse(sealed.annotations[mf.ANNOTATION_PLAINTEXT])
        except DigestError:
            return None
        source = self.view.manifest(digest)
        return source if isinstance(source, mf.ImageManifest) else None

    def _open_layer(
        self, repository: str, layer: mf.Descriptor, expected: Digest | None
    ) -> None:
        public, _wrapped = ocicrypt.parse_layer_annotations(layer.annotations)
        options: list[bytes] = []
        if self.keys.jwe_keys:
            value = layer.annotations.get(ocicrypt.ANNOTATION_JWE)
            if value is None:
                raise OcicryptError("layer has no JWE annotation")
            options.append(jwe.unwrap(value, self.keys.jwe_keys))
        if self.keys.kms is not None:
            item = layer.annotations[ANNOTATION_KMS]
            options.append(self.keys.kms.unwrap(item))
        if not options:
            return
        private = [ocicrypt.PrivateOptions.from_json(o) for o in options]
        if any(p != private[0] for p in private[1:]):
            raise OcicryptError("JWE and KMS unwrap to different options")
        if expected is not None and private[0].digest != expected:
            raise OcicryptError(
                f"private options name {private[0].digest}, but the plaintext "
                f"manifest's layer is {expected}"
            )
        if self.keys.kms is not None:
            context = KmsPacket.from_item(
                layer.annotations[ANNOTATION_KMS]
            ).encryption_context
            wanted = {"repository": repository, "layer": str(private[0].digest)}
            if context != wanted:
                raise OcicryptError(
                    f"KMS encryption context {context}, expected {wanted}"
                )
        key = self.view.layout.blob_data(layer.digest)
        chunks = ocicrypt.decrypt_layer(
            lambda: self._read(key, layer.size),
            public,
            private[0],
            expected_digest=layer.digest,
            expected_size=layer.size,
            enforce_plaintext_digest=True,
        )
        for _chunk in chunks:
            pass  # the second pass re-checks every window
        self.layers_opened += 1

    def _read(self, key: str, size: int) -> Iterator[bytes]:
        for start in range(0, size, READ_WINDOW):
            yield self.view.store.read_range(key, start, min(start + READ_WINDOW, size))

    # -- plaintext ---------------------------------------------------------------

    def _leads_to_plaintext(self, digest: Digest, depth: int) -> bool:
        parsed = self.view.manifest(digest)
        if isinstance(parsed, mf.ImageManifest):
            return any(is_plaintext_layer(layer) for layer in parsed.layers)
        if parsed is None or depth >= MAX_DEPTH:
            return False
        return any(
            self._leads_to_plaintext(child.digest, depth + 1)
            for child in parsed.manifests
            if child.media_type in mf.MANIFEST_TYPES | mf.INDEX_TYPES
        )

    def _fake_encryption(self, digest: Digest, depth: int) -> str:
        """Why a layer typed ``+encrypted`` under ``digest`` counts as plaintext."""
        parsed = self.view.manifest(digest)
        if isinstance(parsed, mf.ImageManifest):
            for layer in parsed.layers:
                if not ocicrypt.is_encrypted_media_type(layer.media_type):
                    continue
                missing = ocicrypt.missing_layer_annotations(layer.annotations)
                if missing:
                    return (
                        f" (layer {layer.digest} is typed {layer.media_type!r} "
                        f"but has no {' and no '.join(missing)} annotation, so no "
                        "key opens it)"
                    )
            return ""
        if parsed is None or depth >= MAX_DEPTH:
            return ""
        for child in parsed.manifests:
            if child.media_type in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
                found = self._fake_encryption(child.digest, depth + 1)
                if found:
                    return found
        return ""

    def _check_hidden(self, repo: RepositoryView, tagged: set[Digest]) -> None:
        in_use: set[Digest] = set()
        known_plaintext: set[Digest] = set()
        for digest in repo.revisions:
            parsed = self.view.manifest(digest)
            if parsed is None:
                continue
            in_use |= _references(parsed)
            if isinstance(parsed, mf.ImageManifest):
                plain = [x.digest for x in parsed.layers if is_plaintext_layer(x)]
                known_plaintext.update(plain)
                if plain and digest not in tagged:
                    self.fail(
                        PLAINTEXT_HIDDEN,
                        f"{repo.name}@{digest}",
                        "revision link leads to plaintext layers",
                    )
            if is_sealed(parsed) and isinstance(parsed, mf.ImageManifest):
                source = self._plaintext_source(parsed)
                if source is not None:
                    known_plaintext.update(
                        x.digest for x in source.layers if is_plaintext_layer(x)
                    )
        for digest in sorted(repo.layers & known_plaintext - in_use):
            self.fail(
                PLAINTEXT_HIDDEN,
                f"{repo.name} _layers/{digest}",
                "link to a plaintext layer no remaining manifest uses",
            )
        for tag, digest in sorted(repo.tag_index):
            if digest not in repo.revisions:
                self.fail(
                    PLAINTEXT_HIDDEN,
                    f"{repo.name}:{tag} index/{digest}",
                    "tag index link to a manifest with no revision link",
                )


def _references(parsed: mf.ImageManifest | mf.ImageIndex) -> set[Digest]:
    found: set[Digest] = set()
    if isinstance(parsed, mf.ImageIndex):
        found.update(child.digest for child in parsed.manifests)
    else:
        found.add(parsed.config.digest)
        found.update(layer.digest for layer in parsed.layers)
    subject: Any = parsed.raw.get("subject")
    if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
        with contextlib.suppress(DigestError):
            found.add(Digest.parse(subject["digest"]))
    return found
