"""Fault injection for the seal: a store and a KMS wrapper that fail on cue.

Every S3 request regseal makes goes through ``ObjectStore._call``, and every
KMS wrap through ``KmsWrapper.wrap``, so wrapping those two counts each write
of a seal (a put, delete, copy or multipart call, or a KMS ``Encrypt``) and
fails the Nth one in one of three ways:

- ``kill-before``: the process dies before the write reaches S3 or KMS;
- ``kill-after``: the write is applied, then the process dies before it sees
  the answer (the "lost response" case);
- ``error``: the write fails with the adapter's own error and the process
  carries on (a throttled or failed request), running its cleanup paths.

A dead process makes no further call: every later request raises
:class:`Crash` too, as if the Lambda sandbox had gone away.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from regseal.errors import KeyWrapError, StorageError
from regseal.kms import KmsWrapper
from regseal.storage import ObjectStore

WRITE_OPERATIONS = frozenset(
    {
        "PutObject",
        "DeleteObject",
        "CopyObject",
        "UploadPartCopy",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
    }
)
MODES = ("kill-before", "kill-after", "error")
# kill-after at write k leaves the state kill-before at write k + 1 leaves, so
# a matrix over every write needs only these two.
MATRIX_MODES = ("kill-before", "error")


class Crash(BaseException):
    """The process died here. A BaseException, so no ``except Exception`` eats it."""


@dataclass
class FaultPlan:
    """Which write fails and how; records every write it saw."""

    fail_at: int | None = None
    mode: str = "kill-before"
    fail_when: Callable[[str], bool] | None = None
    """Instead of ``fail_at``: fail the first write whose description matches."""
    writes: list[str] = field(default_factory=list)
    dead: bool = False
    fired: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {self.mode!r}")

    def check_alive(self) -> None:
        if self.dead:
            raise Crash("the process is dead")

    def next_write(self, what: str) -> bool:
        """Count one write; True when this is the one to fail."""
        with self._lock:
            self.check_alive()
            self.writes.append(what)
            if self.fired:
                hit = False
            elif self.fail_when is not None:
                hit = self.fail_when(what)
            else:
                hit = len(self.writes) == self.fail_at
            if hit:
                self.fired = True
            return hit

    def die(self, what: str) -> None:
        self.dead = True
        raise Crash(f"crashed at write {len(self.writes)}: {what}")


class FaultyStore(ObjectStore):
    """An ObjectStore on the same client and bucket that fails as ``plan`` says."""

    def __init__(self, store: ObjectStore, plan: FaultPlan) -> None:
        super().__init__(store.client, store.bucket)
        self.plan = plan

    def _call(self, operation: str, key: str, **kwargs: Any) -> Any:
        self.plan.check_alive()
        if operation not in WRITE_OPERATIONS:
            return super()._call(operation, key, **kwargs)
        what = f"{operation} {key}"
        if not self.plan.next_write(what):
            return super()._call(operation, key, **kwargs)
        if self.plan.mode == "error":
            raise StorageError(f"s3://{self.bucket}/{key}: injected {operation} fault")
        if self.plan.mode == "kill-after":
            super()._call(operation, key, **kwargs)
        self.plan.die(what)


class FaultyKms(KmsWrapper):
    """A KmsWrapper whose ``wrap`` (KMS Encrypt) counts as a write of ``plan``."""

    def __init__(self, kms: KmsWrapper, plan: FaultPlan) -> None:
        self.__dict__.update(kms.__dict__)
        self.plan = plan

    def wrap(self, privopts_json: bytes, key_id: str, context: Any) -> str:
        self.plan.check_alive()
        what = f"KMS Encrypt {key_id} {dict(context).get('layer')}"
        if not self.plan.next_write(what):
            return super().wrap(privopts_json, key_id, context)
        if self.plan.mode == "error":
            raise KeyWrapError(f"injected KMS Encrypt fault with {key_id}")
        if self.plan.mode == "kill-after":
            super().wrap(privopts_json, key_id, context)
        self.plan.die(what)
        raise AssertionError("unreachable")

    def unwrap(self, item: str, **kwargs: Any) -> bytes:
        self.plan.check_alive()
        return super().unwrap(item, **kwargs)


class HookedStore(ObjectStore):
    """An ObjectStore that runs ``hook`` once, before the first matching write.

    With ``reads``, reads (HEAD, GET, LIST) can match as well.

    Races are made deterministic with it: pause two seals at the same point
    (a barrier), or push a newer image right before a tag move.
    """

    def __init__(
        self,
        store: ObjectStore,
        before: Callable[[str], bool],
        hook: Callable[[], None],
        *,
        reads: bool = False,
    ) -> None:
        super().__init__(store.client, store.bucket)
        self._reads = reads
        self._before = before
        self._hook = hook
        self._lock = threading.Lock()
        self.fired = False
        self.written: list[str] = []

    def _call(self, operation: str, key: str, **kwargs: Any) -> Any:
        if self._reads or operation in WRITE_OPERATIONS:
            what = f"{operation} {key}"
            with self._lock:
                if operation in WRITE_OPERATIONS:
                    self.written.append(what)
                fire = not self.fired and self._before(what)
                self.fired = self.fired or fire
            if fire:
                self._hook()
        return super()._call(operation, key, **kwargs)


def tag_move(repository: str, tag: str) -> Callable[[str], bool]:
    """Matches the write of a tag's ``current/link``."""
    suffix = f"/{repository}/_manifests/tags/{tag}/current/link"
    return lambda what: what.startswith("PutObject") and what.endswith(suffix)


def faulty_metadata_store(store: Any, plan: FaultPlan) -> Any:
    """A TUF MetadataStore on the same client and location that fails as ``plan`` says.

    Its S3 writes (``put_object``, ``delete_object``) are writes of the seal
    like any other: the team role a seal signs, for instance.
    """
    from regseal.tuf.store import MetadataStore

    class FaultyMetadataStore(MetadataStore):
        def _call(self, operation: str, name: str, **kwargs: Any) -> Any:
            plan.check_alive()
            if operation not in {"put_object", "delete_object", "copy_object"}:
                return super()._call(operation, name, **kwargs)
            what = f"TUF {operation} {name}"
            if not plan.next_write(what):
                return super()._call(operation, name, **kwargs)
            if plan.mode == "error":
                raise StorageError(f"{name}: injected TUF {operation} fault")
            if plan.mode == "kill-after":
                super()._call(operation, name, **kwargs)
            plan.die(what)

    return FaultyMetadataStore(store.client, store.location)
