"""Repository globs of a team, and the TUF path patterns that delegate them.

A team owns repositories named by globs such as ``team-a/app``, ``team-a/*`` or
``team-a/**``. TUF path patterns are matched one ``/``-separated component at a
time with ``fnmatch``: ``*`` never matches ``/`` (python-tuf #1505) and a
pattern only matches paths with exactly as many components as it has. The rule
regseal applies:

- A glob is ``/``-separated components. A component is a repository name
  component (``[a-z0-9._-]``) in which ``*`` (any run of characters) and ``?``
  (one character) may appear; both stay inside one component.
- ``**`` may only be the last component and stands for one or more further
  components, up to ``max_depth`` components in total (default 8).
- Each repository depth ``d`` the glob can match becomes one TUF pattern of
  ``d + 2`` components: the glob's components, then ``tags/*`` for the tag
  (see :mod:`regseal.tuf.targets` for the path rule).

So ``team-a/*`` becomes ``team-a/*/tags/*`` (``team-a/app`` but not
``team-a/app/sub``), and ``team-a/**`` becomes ``team-a/*/tags/*``,
``team-a/*/*/tags/*``, ... up to ``max_depth``. ``[`` is refused, so no
character classes reach fnmatch.

Team delegations are terminating and must not overlap: :func:`globs_overlap`
refuses a team whose globs could match a repository another team owns, so a
stolen team key can sign only that team's tags.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from regseal.errors import PolicyError
from regseal.tuf.targets import REPOSITORY_RE, TAGS_COMPONENT

DEFAULT_MAX_DEPTH = 8
RECURSIVE = "**"
_GLOB_COMPONENT = re.compile(r"[a-z0-9._*?-]+")


def check_glob(glob: str, max_depth: int = DEFAULT_MAX_DEPTH) -> list[str]:
    """Validate a repository glob and return its components.

    Raises:
        PolicyError: the glob does not follow the rule in the module docstring.
    """
    if not isinstance(glob, str) or not glob:
        raise PolicyError(f"expected a repository glob like 'team-a/*', got {glob!r}")
    parts = glob.split("/")
    for index, part in enumerate(parts):
        if part == RECURSIVE:
            if index != len(parts) - 1 or index == 0:
                raise PolicyError(
                    f"repository glob {glob!r}: '**' is allowed only as the last "
                    "component, after at least one other"
                )
            continue
        if not _GLOB_COMPONENT.fullmatch(part):
            raise PolicyError(
                f"repository glob {glob!r}: expected components of a-z 0-9 . _ - "
                f"with '*' or '?' wildcards, got {part!r}"
            )
        if "*" not in part and "?" not in part and not REPOSITORY_RE.fullmatch(part):
            raise PolicyError(
                f"repository glob {glob!r}: {part!r} is not a repository name component"
            )
    fixed = len(parts) - (1 if parts[-1] == RECURSIVE else 0)
    if fixed > max_depth:
        raise PolicyError(
            f"repository glob {glob!r}: expected at most {max_depth} components"
        )
    return parts


def _expand(glob: str, max_depth: int) -> list[list[str]]:
    """The fixed-depth component lists a glob stands for."""
    parts = check_glob(glob, max_depth)
    if parts[-1] != RECURSIVE:
        return [parts]
    head = parts[:-1]
    return [head + ["*"] * extra for extra in range(1, max_depth - len(head) + 1)]


def path_patterns(
    globs: Sequence[str], max_depth: int = DEFAULT_MAX_DEPTH
) -> list[str]:
    """The TUF delegation path patterns covering every tag of ``globs``.

    Raises:
        PolicyError: a glob is malformed, or none was given.
    """
    if not globs:
        raise PolicyError("expected at least one repository glob for the team")
    patterns: list[str] = []
    for glob in globs:
        for parts in _expand(glob, max_depth):
            pattern = "/".join([*parts, TAGS_COMPONENT, "*"])
            if pattern not in patterns:
                patterns.append(pattern)
    return patterns


def repository_matches(
    glob: str, repository: str, max_depth: int = DEFAULT_MAX_DEPTH
) -> bool:
    """Whether ``repository`` is one of the repositories ``glob`` names."""
    names = repository.split("/")
    return any(
        len(parts) == len(names)
        and all(fnmatch.fnmatchcase(n, p) for n, p in zip(names, parts, strict=True))
        for parts in _expand(glob, max_depth)
    )


def _components_overlap(a: str, b: str) -> bool:
    """Whether some string matches both single-component wildcard patterns."""
    # Breadth-first search over pairs of positions in the two patterns. "*"
    # may match nothing (move past it) or one more character (stay on it).
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            todo.append((i + 1, j))
        if j < len(b) and b[j] == "*":
            todo.append((i, j + 1))
        if i < len(a) and j < len(b):
            x, y = a[i], b[j]
            if x in "*?" or y in "*?" or x == y:
                todo.append((i if x == "*" else i + 1, j if y == "*" else j + 1))
    return False


def globs_overlap(
    first: Iterable[str], second: Iterable[str], max_depth: int = DEFAULT_MAX_DEPTH
) -> list[tuple[str, str]]:
    """The pairs of globs, one from each side, that can match one repository.

    The check is conservative: it may report an overlap for strings that are not
    valid repository names, never the other way round.
    """
    clashes: list[tuple[str, str]] = []
    second = list(second)
    for a in first:
        for b in second:
            if any(
                len(pa) == len(pb)
                and all(_components_overlap(x, y) for x, y in zip(pa, pb, strict=True))
                for pa in _expand(a, max_depth)
                for pb in _expand(b, max_depth)
            ):
                clashes.append((a, b))
    return clashes
