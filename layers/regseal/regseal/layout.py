"""The distribution registry's storage layout on S3.

Models the keys that registry 2.x writes under ``<root>docker/registry/v2/``
(see the registry's ``registry/storage/paths.go``): content-addressed blob
data, per-repository ``_layers`` links, manifest revision links and tag links.
Link files hold exactly ``sha256:<hex>`` with no trailing newline; the
registry answers HTTP 500 for anything else, so regseal writes them the same
way and refuses to read anything looser.

Repository names and tags follow the distribution reference grammar, which
also keeps path tricks (``..``, empty segments, ``%2F``) out of every key
regseal builds.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from regseal.digest import Digest
from regseal.errors import DigestError, FormatError

# distribution/reference: path components joined by "/", each lowercase
# alphanumerics separated by ".", "_", "__" or runs of "-".
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
MAX_REPOSITORY_LENGTH = 255


def validate_repository(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise FormatError."""
    if len(name) > MAX_REPOSITORY_LENGTH or not REPOSITORY_RE.fullmatch(name):
        raise FormatError(
            "expected a repository name of lowercase path components "
            f"(distribution reference grammar), got {name!r}"
        )
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag, else raise FormatError."""
    if not TAG_RE.fullmatch(tag):
        raise FormatError(
            f"expected a tag of 1-128 characters [A-Za-z0-9_.-], got {tag!r}"
        )
    return tag


class LinkKind(enum.Enum):
    """What a link object under a repository stands for."""

    TAG = "tag"  # _manifests/tags/<tag>/current/link
    TAG_INDEX = "tag-index"  # _manifests/tags/<tag>/index/sha256/<h>/link
    REVISION = "revision"  # _manifests/revisions/sha256/<h>/link
    LAYER = "layer"  # _layers/sha256/<h>/link


@dataclass(frozen=True)
class LinkKey:
    """A parsed link key: which repository, and which tag or digest."""

    kind: LinkKind
    repository: str
    tag: str | None = None
    digest: Digest | None = None


_LINK_RE = re.compile(
    r"repositories/(?P<repo>.+?)/(?:"
    r"_manifests/tags/(?P<tag>[^/]+)/current/link"
    r"|_manifests/tags/(?P<itag>[^/]+)/index/sha256/(?P<ihex>[^/]+)/link"
    r"|_manifests/revisions/sha256/(?P<rhex>[^/]+)/link"
    r"|_layers/sha256/(?P<lhex>[^/]+)/link"
    r")"
)


@dataclass(frozen=True)
class RegistryLayout:
    """Key builder and parser for one registry root directory.

    Args:
        root_directory: the S3 driver's ``rootdirectory`` setting ("/" or a
            prefix such as "/registry"); keys then start with
            ``<prefix>/docker/registry/v2/``.
    """

    root_directory: str = "/"

    @property
    def base(self) -> str:
        prefix = self.root_directory.strip("/")
        return f"{prefix}/docker/registry/v2/" if prefix else "docker/registry/v2/"

    @property
    def repositories_prefix(self) -> str:
        return self.base + "repositories/"

    def blob_data(self, digest: Digest) -> str:
        return f"{self.base}blobs/sha256/{digest.hex[:2]}/{digest.hex}/data"

    def repository(self, repository: str) -> str:
        return f"{self.repositories_prefix}{validate_repository(repository)}/"

    def layer_link(self, repository: str, digest: Digest) -> str:
        return f"{self.repository(repository)}_layers/sha256/{digest.hex}/link"

    def revision_link(self, repository: str, digest: Digest) -> str:
        return (
            f"{self.repository(repository)}_manifests/revisions/sha256/"
            f"{digest.hex}/link"
        )

    def revisions_prefix(self, repository: str) -> str:
        return f"{self.repository(repository)}_manifests/revisions/sha256/"

    def tags_prefix(self, repository: str) -> str:
        return f"{self.repository(repository)}_manifests/tags/"

    def tag_link(self, repository: str, tag: str) -> str:
        return f"{self.tags_prefix(repository)}{validate_tag(tag)}/current/link"

    def tag_index_link(self, repository: str, tag: str, digest: Digest) -> str:
        return (
            f"{self.tags_prefix(repository)}{validate_tag(tag)}/index/sha256/"
            f"{digest.hex}/link"
        )

    def parse_key(self, key: str) -> LinkKey | None:
        """Classify an S3 key.

        Returns None for keys regseal never acts on (blobs, uploads, anything
        outside the root directory).

        Raises:
            FormatError: the key looks like a link but names an invalid
                repository, tag or digest (path tricks end here).
        """
        if not key.startswith(self.repositories_prefix):
            return None
        match = _LINK_RE.fullmatch(key[len(self.base) :])
        if match is None:
            return None
        repository = validate_repository(match["repo"])
        if match["tag"] is not None:
            return LinkKey(LinkKind.TAG, repository, tag=validate_tag(match["tag"]))
        if match["itag"] is not None:
            return LinkKey(
                LinkKind.TAG_INDEX,
                repository,
                tag=validate_tag(match["itag"]),
                digest=_digest_from_hex(match["ihex"], key),
            )
        if match["rhex"] is not None:
            return LinkKey(
                LinkKind.REVISION,
                repository,
                digest=_digest_from_hex(match["rhex"], key),
            )
        return LinkKey(
            LinkKind.LAYER, repository, digest=_digest_from_hex(match["lhex"], key)
        )


def _digest_from_hex(hex_part: str, key: str) -> Digest:
    try:
        return Digest.parse("sha256:" + hex_part)
    except DigestError as exc:
        raise FormatError(f"link key {key!r}: {exc}") from exc


LINK_CONTENT_TYPE = "application/octet-stream"


def encode_link(digest: Digest) -> bytes:
    """The exact bytes of a link file: the digest, no newline."""
    return digest.value.encode("ascii")


def decode_link(data: bytes, key: str) -> Digest:
    """Parse a link file, naming ``key`` when it is not exactly a digest."""
    try:
        text = data.decode("ascii")
        return Digest.parse(text)
    except (UnicodeDecodeError, DigestError):
        shown = data[:80]
        raise FormatError(
            f"link {key!r}: expected exactly 'sha256:<64 hex>' with no newline, "
            f"got {shown!r}"
        ) from None
