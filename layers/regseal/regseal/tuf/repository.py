"""A python-tuf ``Repository`` on S3: load the newest versions, sign, write once.

:class:`MetadataRepository` implements ``open``/``close`` of
``tuf.repository.Repository`` on a :class:`~regseal.tuf.store.MetadataStore`,
so the ``edit_*`` context managers work on S3:

- ``open(role)`` loads the newest stored version (or a new, version 0, object);
- ``close(role, md)`` bumps the version, sets the expiry, signs with the role's
  signers, checks the signatures against the delegating role *before* writing,
  and writes ``N.ROLE.json`` with ``If-None-Match: *`` (``timestamp.json`` with
  ``If-Match`` on the ETag it was read at). A lost race raises
  :class:`~regseal.errors.PreconditionFailedError`; callers re-read and retry.

Root is trusted by walking the chain of root versions from the process's last
verified root (at first ``1.root.json``, or a root given by the caller), each
version checked by its predecessor and by itself, as a TUF client does.

A repository object is a view of one attempt of one operation: it caches what
it loaded, and callers make a new one after a lost race.
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.repository import AbortEdit, Repository

from regseal.errors import TufError
from regseal.tuf.signers import (
    import_kms_key,
    is_kms_uri,
    online_uri,
    signer_for_key,
)
from regseal.tuf.store import MetadataStore, StoredMetadata, versioned_name

logger = logging.getLogger(__name__)

TOP_LEVEL = ("root", "targets", "snapshot", "timestamp")
TIMESTAMP_FILE = "timestamp.json"
_SERIALIZER = JSONSerializer(compact=True)

# The newest root each store has verified in this process.
_verified_roots: weakref.WeakKeyDictionary[MetadataStore, StoredMetadata] = (
    weakref.WeakKeyDictionary()
)


def utcnow() -> datetime:
    """The current time in UTC, to the second (TUF expiry resolution)."""
    return datetime.now(UTC).replace(microsecond=0)


class SignerSource(Protocol):
    """Finds the signers for a new version of a role."""

    def signers_for(self, role: str, keys: Sequence[Key]) -> list[Signer]:
        """Signers for ``role``, whose authorized keys are ``keys``."""
        ...


class RoleSigners:
    """Signers given per role, with online keys' recorded URIs as the fallback.

    Args:
        by_role: signers to use for a role, whatever its keys.
        online: for other roles, load signers from the ``x-regseal-online-uri``
            of each authorized key.
        uri_for: a per-role override: the URI of the one key to sign with.
    """

    def __init__(
        self,
        by_role: Mapping[str, Sequence[Signer]] | None = None,
        *,
        online: bool = True,
        uri_for: Mapping[str, str] | None = None,
    ) -> None:
        self._by_role = {
            role: list(signers) for role, signers in (by_role or {}).items()
        }
        self._online = online
        self._uri_for = dict(uri_for or {})

    def signers_for(self, role: str, keys: Sequence[Key]) -> list[Signer]:
        if role in self._by_role:
            return list(self._by_role[role])
        if not self._online:
            raise TufError(f"{role}: no signer was given for this role")
        if role in self._uri_for:
            return [_signer_for_uri(role, self._uri_for[role], keys)]
        return [signer_for_key(key) for key in keys if _has_uri(key)]


def _has_uri(key: Key) -> bool:
    return online_uri(key) is not None


def _signer_for_uri(role: str, uri: str, keys: Sequence[Key]) -> Signer:
    """The signer of ``uri``, which must be one of the role's ``keys``."""
    for key in keys:
        if online_uri(key) == uri:
            return signer_for_key(key, uri)
    # The URI may name the key differently (alias or ARN): compare public keys.
    public = import_kms_key(uri) if is_kms_uri(uri) else None
    for key in keys:
        if public is not None and (key.keyval, key.scheme) == (
            public.keyval,
            public.scheme,
        ):
            return signer_for_key(key, uri)
    raise TufError(
        f"{role}: the configured key {uri} is not one of the role's keys in root "
        f"({', '.join(k.keyid[:12] for k in keys) or 'none'})"
    )


def meta_file(stored: StoredMetadata, version: int) -> MetaFile:
    """Version, length and sha256 of a stored file, from its exact bytes."""
    return MetaFile(
        version=version,
        length=len(stored.data),
        hashes={"sha256": hashlib.sha256(stored.data).hexdigest()},
    )


def is_top_level(role: str) -> bool:
    """Whether ``role`` is root, targets, snapshot or timestamp."""
    return role in TOP_LEVEL


class MetadataRepository(Repository):
    """python-tuf's Repository on a metadata store (see the module docstring).

    Args:
        store: where the metadata lives.
        signers: who signs new versions.
        expiry: the lifetime of a new version of a top-level role.
        clock: the current time (tests move it).
        trusted_root: root metadata to trust instead of the stored
            ``1.root.json`` when this process has not verified one yet.
    """

    def __init__(
        self,
        store: MetadataStore,
        signers: SignerSource,
        expiry: Callable[[str], timedelta],
        *,
        clock: Callable[[], datetime] = utcnow,
        trusted_root: bytes | None = None,
    ) -> None:
        self.store = store
        self._signers = signers
        self._expiry = expiry
        self._clock = clock
        self._trusted_root = trusted_root
        self._current: dict[str, StoredMetadata | None] = {}
        self._root: Metadata[Root] | None = None
        self._delegators: dict[str, Targets] = {}
        self.role_expiry: dict[str, timedelta] = {}
        self.written: dict[str, int] = {}

    # -- reading --------------------------------------------------------------

    def stored(self, role: str) -> StoredMetadata | None:
        """The newest stored file of ``role``, or None if it has none."""
        if role in self._current:
            return self._current[role]
        if role == "timestamp":
            stored = self.store.get_optional(TIMESTAMP_FILE)
        else:
            latest = self.store.latest_version(role, self._version_hint(role))
            stored = (
                None if latest is None else self.store.get(versioned_name(latest, role))
            )
        self._current[role] = stored
        return stored

    def stored_version(self, role: str) -> int:
        """The newest stored version of ``role`` (0 when there is none)."""
        stored = self.stored(role)
        if stored is None:
            return 0
        if role == "timestamp":
            return int(self._parse(stored).signed.version)
        return int(stored.name.split(".", 1)[0])

    def _version_hint(self, role: str) -> int | None:
        """A version of ``role`` known to exist, to start the search from."""
        known = self.store.known_version(role)
        if known is not None or role == "root":
            return known
        if role == "snapshot":
            timestamp = self.stored("timestamp")
            if timestamp is None:
                return None
            signed = self._parse(timestamp).signed
            assert isinstance(signed, Timestamp)
            return signed.snapshot_meta.version
        snapshot = self.stored("snapshot")
        if snapshot is None:
            return None
        signed = self._parse(snapshot).signed
        assert isinstance(signed, Snapshot)
        meta = signed.meta.get(f"{role}.json")
        return None if meta is None else meta.version

    @staticmethod
    def _parse(stored: StoredMetadata) -> Metadata[Any]:
        try:
            return Metadata.from_bytes(stored.data)
        except Exception as exc:
            raise TufError(
                f"{stored.name}: expected TUF metadata, got unparseable bytes"
            ) from exc

    def load(self, role: str) -> Metadata[Any] | None:
        """The newest stored version of ``role``, parsed, or None."""
        stored = self.stored(role)
        if stored is None:
            return None
        md = self._parse(stored)
        expected: dict[str, type[Signed]] = {
            "root": Root,
            "snapshot": Snapshot,
            "timestamp": Timestamp,
        }
        kind = expected.get(role, Targets)
        if not isinstance(md.signed, kind):
            raise TufError(
                f"{stored.name}: expected {kind.type} metadata, got {md.signed.type}"
            )
        if role != "timestamp" and md.signed.version != self.stored_version(role):
            raise TufError(
                f"{stored.name}: expected version {self.stored_version(role)} "
                f"inside, got {md.signed.version}"
            )
        return md

    def open(self, role: str) -> Metadata[Any]:
        """The newest version of ``role``, or a new version 0 to build on."""
        if role == "root":
            root = self.root_md()
            return root if root.signed.version == 0 else self._copy(root)
        md = self.load(role)
        return md if md is not None else self._new(role)

    @staticmethod
    def _copy(md: Metadata[Any]) -> Metadata[Any]:
        return Metadata.from_bytes(md.to_bytes(_SERIALIZER))

    def _new(self, role: str) -> Metadata[Any]:
        signed: Signed
        if role == "root":
            signed = Root(consistent_snapshot=True)
        elif role == "timestamp":
            signed = Timestamp()
        elif role == "snapshot":
            # An empty meta: the default lists targets.json v1 without hashes.
            signed = Snapshot(meta={})
        else:
            signed = Targets()
        # close() adds one, so the first stored version is 1.
        signed.version = 0
        return Metadata(signed)

    # -- root -----------------------------------------------------------------

    def root_md(self) -> Metadata[Root]:
        """The newest root, verified along the chain of root versions.

        Raises:
            TufError: no root, or a root version fails its checks.
        """
        if self._root is not None:
            return self._root
        start = _verified_roots.get(self.store)
        if start is None and self._trusted_root is not None:
            start = StoredMetadata("trusted root", self._trusted_root, "")
        if start is None:
            start = self.store.get_optional(versioned_name(1, "root"))
        if start is None:
            self._current["root"] = None
            return cast("Metadata[Root]", self._new("root"))

        trusted = self._parse(start)
        if not isinstance(trusted.signed, Root):
            raise TufError(f"{start.name}: expected root metadata")
        self._check_self_signed(trusted, start.name)
        stored = start
        while True:
            name = versioned_name(trusted.signed.version + 1, "root")
            following = self.store.get_optional(name)
            if following is None:
                break
            candidate = self._parse(following)
            if not isinstance(candidate.signed, Root) or (
                candidate.signed.version != trusted.signed.version + 1
            ):
                raise TufError(f"{name}: expected root version {name.split('.')[0]}")
            self._verify(trusted.signed, "root", candidate, name)
            self._check_self_signed(candidate, name)
            trusted, stored = candidate, following
        if stored.name == "trusted root":
            name = versioned_name(trusted.signed.version, "root")
            stored = StoredMetadata(name, stored.data, "")
        _verified_roots[self.store] = stored
        self.store.remember_version("root", trusted.signed.version)
        self._current["root"] = stored
        self._root = cast("Metadata[Root]", trusted)
        return self._root

    def _check_self_signed(self, md: Metadata[Any], name: str) -> None:
        self._verify(md.signed, "root", md, name)

    @staticmethod
    def _verify(
        delegator: Root | Targets, role: str, md: Metadata[Any], name: str
    ) -> None:
        try:
            delegator.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as exc:
            raise TufError(
                f"{name}: not signed by a threshold of {role}'s keys ({exc})"
            ) from exc
        except ValueError as exc:
            raise TufError(f"{name}: {role} is not delegated ({exc})") from exc

    # -- delegations ----------------------------------------------------------

    def set_delegator(
        self, role: str, delegator: Targets, expiry: timedelta | None = None
    ) -> None:
        """Record which targets metadata delegates ``role`` (and its lifetime)."""
        self._delegators[role] = delegator
        if expiry is not None:
            self.role_expiry[role] = expiry

    def delegator_of(self, role: str) -> Root | Targets:
        """The metadata whose keys sign ``role``."""
        if is_top_level(role):
            return self.root_md().signed
        try:
            return self._delegators[role]
        except KeyError:
            raise TufError(f"{role}: its delegating role was not loaded") from None

    def authorized_keys(self, role: str, delegator: Root | Targets) -> list[Key]:
        """The keys ``delegator`` trusts to sign ``role``."""
        if isinstance(delegator, Root):
            return [delegator.keys[k] for k in delegator.roles[role].keyids]
        delegations = delegator.delegations
        if delegations is None:
            raise TufError(f"{role}: its delegator delegates nothing")
        keyids: list[str]
        if delegations.succinct_roles is not None and (
            delegations.succinct_roles.is_delegated_role(role)
        ):
            keyids = delegations.succinct_roles.keyids
        elif delegations.roles is not None and role in delegations.roles:
            keyids = delegations.roles[role].keyids
        else:
            raise TufError(f"{role}: not delegated by its delegator")
        return [delegations.keys[k] for k in keyids if k in delegations.keys]

    def is_trusted(self, role: str, md: Metadata[Any]) -> bool:
        """Whether ``md`` is signed by a threshold of the keys delegating ``role``."""
        try:
            self._verify(self.delegator_of(role), role, md, role)
        except TufError:
            return False
        return True

    def load_trusted(self, role: str) -> Metadata[Any]:
        """The newest version of ``role``, which must verify; or a new one.

        Raises:
            TufError: the newest version is not signed by the role's keys.
        """
        md = self.load(role)
        if md is None:
            return self._new(role)
        name = self.stored(role).name  # type: ignore[union-attr]
        self._verify(self.delegator_of(role), role, md, name)
        return md

    # -- writing --------------------------------------------------------------

    def close(self, role: str, md: Metadata[Any]) -> None:
        """Sign a new version of ``role`` and write it once (see module doc)."""
        md.signed.version += 1
        md.signed.expires = self._clock() + self.role_expiry.get(
            role, self._expiry(role)
        )

        if role == "root":
            keys = [md.signed.keys[k] for k in md.signed.roles["root"].keyids]
        else:
            keys = self.authorized_keys(role, self.delegator_of(role))
        signers = self._signers.signers_for(role, keys)
        if not signers:
            raise TufError(f"{role}: no signer is available for its keys")
        signed_by: set[str] = set()
        for signer in signers:
            if signer.public_key.keyid in signed_by:
                continue
            try:
                md.sign(signer, append=bool(signed_by))
            except UnsignedMetadataError as exc:
                raise TufError(
                    f"{role} v{md.signed.version}: signing with key "
                    f"{signer.public_key.keyid[:12]} failed"
                ) from exc
            signed_by.add(signer.public_key.keyid)

        name = versioned_name(md.signed.version, role)
        if role == "root":
            self._verify(md.signed, "root", md, name)
            if md.signed.version > 1:
                self._verify(self.root_md().signed, "root", md, name)
        else:
            self._verify(self.delegator_of(role), role, md, name)

        data = md.to_bytes(_SERIALIZER)
        if role == "timestamp":
            current = self.stored("timestamp")
            if current is None:
                etag = self.store.create(TIMESTAMP_FILE, data)
            else:
                etag = self.store.replace(TIMESTAMP_FILE, data, current.etag)
            self._current[role] = StoredMetadata(TIMESTAMP_FILE, data, etag)
        else:
            etag = self.store.create(name, data)
            self._current[role] = StoredMetadata(name, data, etag)
            self.store.remember_version(role, md.signed.version)
        if role == "root":
            _verified_roots[self.store] = StoredMetadata(name, data, etag)
            self._root = cast("Metadata[Root]", Metadata.from_bytes(data))
        self.written[role] = md.signed.version
        logger.debug("wrote %s v%d", role, md.signed.version)

    def info(self, role: str) -> MetaFile:
        """Version, length and hashes of the newest stored version of ``role``."""
        stored = self.stored(role)
        if stored is None:
            raise TufError(f"{role}: no metadata is stored")
        return meta_file(stored, self.stored_version(role))

    # Repository's own do_snapshot/do_timestamp need these; regseal uses
    # update_snapshot/update_timestamp, which also record hashes and lengths.
    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        raise NotImplementedError("use update_snapshot(infos)")

    @property
    def snapshot_info(self) -> MetaFile:
        return self.info("snapshot")

    # -- snapshot and timestamp ----------------------------------------------

    def update_snapshot(
        self, infos: Mapping[str, MetaFile], force: bool = False
    ) -> bool:
        """Write a new snapshot if a targets role changed, or when ``force``.

        Rules (TUF spec §5.5, tuf.md §5): start from the newest snapshot, so no
        entry is ever dropped; replace an entry only by a higher version;
        refuse a lower one; bump the version; also write one when the newest
        snapshot no longer verifies under root (e.g. after a key rotation).

        Args:
            infos: ``ROLE.json`` -> MetaFile of the versions to list.
            force: write a new version even if nothing changed.

        Returns:
            Whether a new snapshot was written.

        Raises:
            TufError: an entry would go back in version.
        """
        current = self.open("snapshot")
        needed = (
            force
            or current.signed.version == 0
            or not self.is_trusted("snapshot", current)
        )
        with self.edit_snapshot() as snapshot:
            for name, info in sorted(infos.items()):
                old = snapshot.meta.get(name)
                if old is not None and info.version < old.version:
                    raise TufError(
                        f"snapshot: {name} would go back from version {old.version} "
                        f"to {info.version}; refusing a rollback"
                    )
                if old is None or info.version > old.version:
                    snapshot.meta[name] = info
                    needed = True
            if not needed:
                raise AbortEdit("no targets role changed")
        return needed

    def update_timestamp(self, force: bool = False) -> bool:
        """Write a new timestamp if the snapshot changed, or when ``force``.

        The version always goes up, also for an expiry-only re-sign: clients
        ignore a timestamp whose version equals the one they trust (§5.4.3.1).

        Returns:
            Whether a new timestamp was written.

        Raises:
            TufError: the newest snapshot is older than the timestamp's.
        """
        snapshot = self.info("snapshot")
        current = self.open("timestamp")
        fresh = current.signed.version == 0
        needed = force or fresh or not self.is_trusted("timestamp", current)
        with self.edit_timestamp() as timestamp:
            old = timestamp.snapshot_meta
            if not fresh and snapshot.version < old.version:
                raise TufError(
                    f"timestamp: snapshot would go back from version {old.version} "
                    f"to {snapshot.version}; refusing a rollback"
                )
            if fresh or snapshot.version > old.version:
                timestamp.snapshot_meta = snapshot
                needed = True
            if not needed:
                raise AbortEdit("snapshot unchanged")
        return needed
