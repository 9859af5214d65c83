"""Image references in skopeo's transport syntax: ``docker://`` and ``oci:``.

- ``docker://HOST[:PORT]/REPOSITORY[:TAG|@sha256:HEX]``: an image in a
  registry; the tag defaults to ``latest``. HOST is required (there is no
  default registry).
- ``oci:DIR[:TAG]``: an image in an OCI layout directory. As in skopeo, the
  directory ends at the first ``:``.

Public API: :class:`RegistryReference`, :class:`LayoutReference`,
:func:`parse_source`, :func:`parse_destination`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from regseal.digest import Digest
from regseal.errors import FormatError
from regseal.layout import validate_repository, validate_tag

DOCKER = "docker://"
OCI = "oci:"
DEFAULT_TAG = "latest"
_HOST = re.compile(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


@dataclass(frozen=True)
class RegistryReference:
    """An image in a registry: host, repository and a tag or a digest."""

    host: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/`` in the registry API."""
        return self.digest.value if self.digest else self.tag or DEFAULT_TAG

    @property
    def is_loopback(self) -> bool:
        """True for localhost and loopback addresses (plain http by default)."""
        if self.host.startswith("["):
            name = self.host[: self.host.index("]") + 1]
        else:
            name = self.host.split(":")[0]
        return name in _LOOPBACK_HOSTS

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.reference}"
        return f"{DOCKER}{self.host}/{self.repository}{suffix}"


@dataclass(frozen=True)
class LayoutReference:
    """An image in an OCI layout: a directory and an optional tag."""

    path: Path
    tag: str | None = None

    def __str__(self) -> str:
        return f"{OCI}{self.path}" + (f":{self.tag}" if self.tag else "")


def _registry(text: str) -> RegistryReference:
    rest = text[len(DOCKER) :]
    host, slash, path = rest.partition("/")
    if not slash or not _HOST.fullmatch(host) or not path:
        raise FormatError(
            f"expected docker://HOST/REPOSITORY[:TAG|@DIGEST], got {text!r}"
        )
    tag: str | None = None
    digest: Digest | None = None
    if "@" in path:
        path, _, digest_text = path.partition("@")
        digest = Digest.parse(digest_text)
    else:
        name, colon, candidate = path.rpartition(":")
        if colon and "/" not in candidate:
            path, tag = name, validate_tag(candidate)
    return RegistryReference(host, validate_repository(path), tag or None, digest)


def _layout(text: str) -> LayoutReference:
    rest = text[len(OCI) :]
    directory, colon, tag = rest.partition(":")
    if not directory:
        raise FormatError(f"expected oci:DIR[:TAG], got {text!r}")
    if colon and not tag:
        raise FormatError(f"expected a tag after the ':' in {text!r}")
    return LayoutReference(Path(directory), validate_tag(tag) if tag else None)


def parse_source(text: str) -> RegistryReference | LayoutReference:
    """Parse a source reference (``docker://…`` or ``oci:…``).

    Raises:
        FormatError: Another transport, or a malformed reference.
    """
    if text.startswith(DOCKER):
        return _registry(text)
    if text.startswith(OCI):
        return _layout(text)
    raise FormatError(
        f"expected a source docker://HOST/REPOSITORY:TAG or oci:DIR:TAG, got {text!r}"
    )


def parse_destination(text: str) -> LayoutReference:
    """Parse a destination reference: only ``oci:DIR[:TAG]``.

    Raises:
        FormatError: Not an ``oci:`` reference.
    """
    if not text.startswith(OCI):
        raise FormatError(f"expected a destination oci:DIR[:TAG], got {text!r}")
    return _layout(text)
