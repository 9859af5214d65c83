"""Backfill: seal what was pushed before regseal watched the bucket.

Walks one listing of the selected repositories (see :mod:`regseal.inventory`)
and runs the same seal as the function does, tags first, then manifests
pushed by digest, so that an index's children are sealed with their index.
Every outcome is appended to a checkpoint file as it happens; a run started
again with the same checkpoint skips what is done and retries what failed.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from regseal.errors import FormatError, RegsealError
from regseal.inventory import RepositoryInventory
from regseal.seal import Outcome, Sealer, SealResult

logger = logging.getLogger(__name__)

_DONE = {o.value for o in (Outcome.SEALED, Outcome.REUSED, Outcome.SKIPPED)}


@dataclass
class Summary:
    """Counts of one backfill run."""

    total: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    failed: list[tuple[str, str]] = field(default_factory=list)
    resumed: int = 0

    def add(self, result: SealResult) -> None:
        self.outcomes[result.outcome.value] += 1
        if result.outcome in (Outcome.SKIPPED, Outcome.SUPERSEDED):
            self.skipped[result.reason] += 1

    def to_json(self) -> dict[str, object]:
        return {
            "total": self.total,
            "resumed": self.resumed,
            "outcomes": dict(self.outcomes),
            "skipped": dict(self.skipped),
            "failed": [{"key": k, "reason": r} for k, r in self.failed],
        }


_RECORD_START = '{"key": '


def _record(line: str) -> dict[str, str] | None:
    """The checkpoint record on ``line``, or None if it is not one."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(entry, dict):
        return None
    if not isinstance(entry.get("key"), str) or not isinstance(
        entry.get("outcome"), str
    ):
        return None
    return entry


class Checkpoint:
    """A JSON-lines record of finished keys, appended and flushed per key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[str] = set()
        data = path.read_bytes() if path.exists() else b""
        self._load(data)
        self._file: TextIO = path.open("a")
        if data and not data.endswith(b"\n"):
            self._file.write("\n")  # end the record an interruption cut short

    def _load(self, data: bytes) -> None:
        """Read the finished keys; refuse a file this class did not write.

        A record cut short by an interruption is ignored if it starts like a
        record (earlier versions appended the next record to it on resume,
        so it need not be the last line). Any other line that is not a
        record means the path names some other file, which appending to
        would damage.

        Raises:
            FormatError: a line is not a checkpoint record.
        """
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise self._refuse("it is not UTF-8 text") from None
        for number, line in enumerate(text.splitlines(), 1):
            entry = _record(line)
            if entry is None:
                if line.startswith(_RECORD_START):
                    continue  # cut short by an interruption
                raise self._refuse(f"line {number} is not a record: {line[:40]!r}")
            if entry["outcome"] in _DONE:
                self.done.add(entry["key"])

    def _refuse(self, why: str) -> FormatError:
        return FormatError(
            f"checkpoint {self.path}: expected JSON lines of "
            '{"key": ..., "outcome": ..., "reason": ...} as regseal seal writes '
            f"them, but {why}"
        )

    def record(self, key: str, outcome: str, reason: str = "") -> None:
        self._file.write(json.dumps({"key": key, "outcome": outcome, "reason": reason}))
        self._file.write("\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


Step = Callable[..., SealResult]


def plan(
    inventories: list[RepositoryInventory], sealer: Sealer
) -> list[tuple[str, Step]]:
    """Every unit of work in order: all tags first, then untagged revisions."""
    layout = sealer.layout
    work: list[tuple[str, Step]] = []
    for inventory in inventories:
        for tag in sorted(inventory.tags):
            work.append(
                (
                    layout.tag_link(inventory.name, tag),
                    functools.partial(sealer.seal_tag, inventory.name, tag),
                )
            )
    for inventory in inventories:
        for digest in sorted(inventory.revisions):
            work.append(
                (
                    layout.revision_link(inventory.name, digest),
                    functools.partial(sealer.seal_revision, inventory.name, digest),
                )
            )
    return work


def run(
    sealer: Sealer,
    inventories: list[RepositoryInventory],
    *,
    dry_run: bool = False,
    checkpoint: Checkpoint | None = None,
    progress: Callable[[int, int, Summary], None] | None = None,
) -> Summary:
    """Seal every selected tag and untagged manifest that is still plaintext.

    Failures are recorded and the run goes on; an interruption
    (KeyboardInterrupt) stops it with the checkpoint intact.
    """
    work = plan(inventories, sealer)
    summary = Summary(total=len(work))
    for index, (key, step) in enumerate(work, 1):
        if checkpoint is not None and key in checkpoint.done:
            summary.resumed += 1
        else:
            try:
                result = step(dry_run=dry_run)
            except RegsealError as exc:
                summary.outcomes["failed"] += 1
                summary.failed.append((key, f"{type(exc).__name__}: {exc}"))
                logger.debug("backfill of %s failed: %s", key, exc)
                if checkpoint is not None and not dry_run:
                    checkpoint.record(key, "failed", str(exc))
            else:
                summary.add(result)
                if checkpoint is not None and not dry_run:
                    checkpoint.record(key, result.outcome.value, result.reason)
        if progress is not None:
            progress(index, len(work), summary)
    return summary
