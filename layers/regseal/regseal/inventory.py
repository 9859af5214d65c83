"""What a registry bucket holds: repositories, their tags and revisions.

Built from one listing of the registry's ``repositories/`` prefix, so that a
backfill or a status report over a large bucket lists it exactly once.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field

from regseal.digest import Digest
from regseal.errors import FormatError
from regseal.layout import LinkKind, RegistryLayout, validate_repository, validate_tag
from regseal.storage import ObjectStore

logger = logging.getLogger(__name__)


@dataclass
class RepositoryInventory:
    """The tags and manifest revisions of one repository."""

    name: str
    tags: set[str] = field(default_factory=set)
    revisions: set[Digest] = field(default_factory=set)


@dataclass(frozen=True)
class Selection:
    """Which part of the bucket an operation covers.

    Args:
        pattern: a repository name or glob (``team-a/*``); None is everything.
        tag: one tag of the matched repositories, or None for all.
    """

    pattern: str | None = None
    tag: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> Selection:
        """``REPO``, ``REPO:TAG``, a glob like ``team-a/*``, or None for all."""
        if not text:
            return cls()
        pattern, colon, tag = text.partition(":")
        if not any(c in pattern for c in "*?["):
            validate_repository(pattern)
        if colon:
            # An empty tag would select the whole repository: refuse it.
            try:
                validate_tag(tag)
            except FormatError:
                raise FormatError(
                    f"{text!r}: expected a tag of 1-128 characters [A-Za-z0-9_.-] "
                    f"after ':', got {tag!r}"
                ) from None
        return cls(pattern, tag or None)

    @property
    def list_prefix(self) -> str:
        """The longest literal prefix of the pattern, to narrow the listing."""
        if self.pattern is None:
            return ""
        literal = self.pattern
        for index, char in enumerate(self.pattern):
            if char in "*?[":
                literal = self.pattern[:index]
                break
        else:
            return literal + "/"
        return literal

    def matches(self, repository: str) -> bool:
        return self.pattern is None or fnmatch.fnmatchcase(repository, self.pattern)


def require_match(
    text: str | None, inventories: list[RepositoryInventory], *, tags_only: bool
) -> None:
    """Raise if a named selection matched nothing.

    Args:
        text: the selection as the user wrote it; None (everything) never fails.
        inventories: what :func:`scan` found for it.
        tags_only: the operation acts on tags only, so a repository with
            untagged revisions but no tag is no match (always so for REPO:TAG).

    Raises:
        FormatError: nothing in the bucket matches ``text``.
    """
    if not text:
        return
    tags_only = tags_only or ":" in text
    if any(i.tags or (i.revisions and not tags_only) for i in inventories):
        return
    raise FormatError(f"no repository or tag in the bucket matches {text!r}")


def scan(
    store: ObjectStore, layout: RegistryLayout, selection: Selection
) -> list[RepositoryInventory]:
    """The selected repositories' inventories, from one paginated listing."""
    found: dict[str, RepositoryInventory] = {}
    prefix = layout.repositories_prefix + selection.list_prefix
    for key in store.list_keys(prefix):
        try:
            link = layout.parse_key(key)
        except FormatError as exc:
            logger.debug("skipping %s: %s", key, exc)
            continue
        if link is None or link.kind not in (LinkKind.TAG, LinkKind.REVISION):
            continue
        if not selection.matches(link.repository):
            continue
        repository = found.setdefault(
            link.repository, RepositoryInventory(link.repository)
        )
        if link.kind is LinkKind.TAG and link.tag is not None:
            if selection.tag is None or selection.tag == link.tag:
                repository.tags.add(link.tag)
        elif link.digest is not None:
            repository.revisions.add(link.digest)
    return [found[name] for name in sorted(found)]
