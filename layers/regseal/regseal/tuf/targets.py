"""TUF target records for sealed manifests.

A target names one tag of one repository and describes the sealed manifest the
tag points at: its sha256 and length (the bytes a client gets from
``GET /v2/<repository>/manifests/<tag>``) and custom fields that say what the
manifest is and who can open it.

Target path rule: ``<repository>/tags/<tag>``. The repository follows the OCI
distribution name grammar (lowercase components separated by ``/``) and the tag
the OCI tag grammar (``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``). A tag contains no
``/``, so the last path component is always the tag and the one before it is
always the literal ``tags``; everything before that is the repository. Two
different (repository, tag) pairs therefore never give the same path, even for
a repository with a component named ``tags``. Digests (``sha256:...``) cannot be
tags, which leaves ``<repository>/manifests/<digest>`` free for pushes by digest.

Custom values must survive OLPC canonical JSON, which has no floats: only
strings, integers, booleans, null, lists and objects with string keys are
accepted (securesystemslib#625).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from tuf.api.metadata import TargetFile

from regseal.digest import Digest
from regseal.errors import FormatError

# Values that canonical JSON can encode.
JsonValue: TypeAlias = (
    "str | int | bool | list[JsonValue] | dict[str, JsonValue] | None"
)

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
MAX_REPOSITORY_LENGTH = 255
_PLATFORM = re.compile(r"[a-z0-9_.-]+/[a-z0-9_.-]+(?:/[a-z0-9_.-]+)?")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][\w!#$&^.+-]*")
TAGS_COMPONENT = "tags"


def check_repository(repository: str) -> str:
    """Return ``repository`` if it is a valid OCI repository name.

    Raises:
        FormatError: it is not.
    """
    if (
        not isinstance(repository, str)
        or len(repository) > MAX_REPOSITORY_LENGTH
        or not REPOSITORY_RE.fullmatch(repository)
    ):
        raise FormatError(
            "expected an OCI repository name (lowercase components like "
            f"'team-a/app' joined by '/', at most 255 characters), got {repository!r}"
        )
    return repository


def check_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid OCI tag.

    Raises:
        FormatError: it is not.
    """
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise FormatError(
            "expected an OCI tag ([A-Za-z0-9_][A-Za-z0-9._-], at most 128 "
            f"characters), got {tag!r}"
        )
    return tag


def target_path(repository: str, tag: str) -> str:
    """The TUF target path of a tag: ``<repository>/tags/<tag>``."""
    return f"{check_repository(repository)}/{TAGS_COMPONENT}/{check_tag(tag)}"


def parse_target_path(path: str) -> tuple[str, str]:
    """Split a target path into (repository, tag); the inverse of target_path.

    Raises:
        FormatError: the path is not ``<repository>/tags/<tag>``.
    """
    head, sep, tag = path.rpartition(f"/{TAGS_COMPONENT}/")
    if not sep or "/" in tag:
        raise FormatError(
            f"expected a target path '<repository>/tags/<tag>', got {path!r}"
        )
    return check_repository(head), check_tag(tag)


def canonical_value(value: Any, where: str = "custom") -> JsonValue:
    """Check that ``value`` can be signed as canonical JSON; return a copy.

    Tuples become lists. Floats, bytes, non-string keys and anything else are
    rejected, naming the offending field.

    Raises:
        FormatError: a value canonical JSON cannot encode.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Mapping):
        result: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise FormatError(
                    f"{where}: expected string keys in canonical JSON, got {key!r}"
                )
            result[key] = canonical_value(item, f"{where}.{key}")
        return result
    if isinstance(value, list | tuple):
        return [canonical_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    kind = type(value).__name__
    hint = " (canonical JSON has no floats)" if isinstance(value, float) else ""
    raise FormatError(
        f"{where}: expected a string, integer, boolean, null, list or object, "
        f"got {kind} {value!r}{hint}"
    )


@dataclass(frozen=True)
class TargetCustom:
    """The custom fields regseal records with each sealed manifest.

    Attributes:
        media_type: the sealed manifest's media type.
        plaintext_digest: digest of the plaintext manifest it was sealed from.
        platforms: ``os/architecture[/variant]`` of the image (an index may
            list several).
        kms_key: the KMS key (ARN or id) that wraps the layer keys.
        recipients: identifiers of the JWE recipients (for example key ids or
            thumbprints), never key material.
        sealed_at: when regseal sealed the manifest for this tag, in
            milliseconds since the Unix epoch (canonical JSON has no floats);
            a seal never moves a target to a manifest sealed earlier than
            this (docs/tuf.md). None in targets written before the field.
        extra: further canonical-JSON-safe fields, kept as they are.
    """

    media_type: str
    plaintext_digest: str | None = None
    platforms: tuple[str, ...] = ()
    kms_key: str | None = None
    recipients: tuple[str, ...] = ()
    sealed_at: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.media_type, str) or not _MEDIA_TYPE.fullmatch(
            self.media_type
        ):
            raise FormatError(
                f"custom.mediaType: expected a media type like "
                f"'application/vnd.oci.image.manifest.v1+json', got {self.media_type!r}"
            )
        if self.plaintext_digest is not None:
            Digest.parse(self.plaintext_digest)
        for platform in self.platforms:
            if not isinstance(platform, str) or not _PLATFORM.fullmatch(platform):
                raise FormatError(
                    "custom.platforms: expected 'os/architecture[/variant]', "
                    f"got {platform!r}"
                )
        if self.kms_key is not None and (
            not isinstance(self.kms_key, str) or not self.kms_key
        ):
            raise FormatError(
                f"custom.kmsKey: expected a KMS key id or ARN, got {self.kms_key!r}"
            )
        for recipient in self.recipients:
            if not isinstance(recipient, str) or not recipient:
                raise FormatError(
                    f"custom.recipients: expected non-empty strings, got {recipient!r}"
                )
        if self.sealed_at is not None and (
            isinstance(self.sealed_at, bool)
            or not isinstance(self.sealed_at, int)
            or self.sealed_at < 0
        ):
            raise FormatError(
                "custom.sealedAt: expected milliseconds since the epoch (an integer "
                f">= 0), got {self.sealed_at!r}"
            )
        extra = canonical_value(dict(self.extra), "custom")
        assert isinstance(extra, dict)
        clash = set(extra) & set(_FIELDS.values())
        if clash:
            raise FormatError(
                f"custom: extra fields {sorted(clash)} clash with regseal's own fields"
            )

    def to_json(self) -> dict[str, JsonValue]:
        """The ``custom`` object as stored in the target."""
        result = canonical_value(dict(self.extra), "custom")
        assert isinstance(result, dict)
        result[_FIELDS["media_type"]] = self.media_type
        if self.plaintext_digest is not None:
            result[_FIELDS["plaintext_digest"]] = self.plaintext_digest
        if self.platforms:
            result[_FIELDS["platforms"]] = list(self.platforms)
        if self.kms_key is not None:
            result[_FIELDS["kms_key"]] = self.kms_key
        if self.recipients:
            result[_FIELDS["recipients"]] = list(self.recipients)
        if self.sealed_at is not None:
            result[_FIELDS["sealed_at"]] = self.sealed_at
        return result

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetCustom:
        """Read a ``custom`` object written by :meth:`to_json`.

        Raises:
            FormatError: a field has the wrong type.
        """
        extra = {k: v for k, v in data.items() if k not in _FIELDS.values()}
        platforms = data.get(_FIELDS["platforms"], [])
        recipients = data.get(_FIELDS["recipients"], [])
        if not isinstance(platforms, list) or not isinstance(recipients, list):
            raise FormatError(
                "custom: expected lists for platforms and recipients, "
                f"got {platforms!r} and {recipients!r}"
            )
        return cls(
            media_type=data.get(_FIELDS["media_type"]),  # type: ignore[arg-type]
            plaintext_digest=data.get(_FIELDS["plaintext_digest"]),
            platforms=tuple(platforms),
            kms_key=data.get(_FIELDS["kms_key"]),
            recipients=tuple(recipients),
            sealed_at=data.get(_FIELDS["sealed_at"]),
            extra=extra,
        )


_FIELDS = {
    "media_type": "mediaType",
    "plaintext_digest": "plaintextDigest",
    "platforms": "platforms",
    "kms_key": "kmsKey",
    "recipients": "recipients",
    "sealed_at": "sealedAt",
}


def custom_json(custom: TargetCustom | Mapping[str, Any]) -> dict[str, JsonValue]:
    """The stored form of ``custom``: a TargetCustom or a plain mapping."""
    if isinstance(custom, TargetCustom):
        return custom.to_json()
    value = canonical_value(custom, "custom")
    if not isinstance(value, dict):
        raise FormatError(f"custom: expected an object, got {custom!r}")
    return value


@dataclass(frozen=True)
class TargetRecord:
    """One tag's target: the sealed manifest's digest, length and custom fields.

    Attributes:
        repository: OCI repository name.
        tag: OCI tag.
        digest: sha256 of the sealed manifest bytes.
        length: number of manifest bytes.
        custom: the ``custom`` object.
    """

    repository: str
    tag: str
    digest: Digest
    length: int
    custom: Mapping[str, JsonValue]

    def __post_init__(self) -> None:
        target_path(self.repository, self.tag)
        if isinstance(self.length, bool) or not isinstance(self.length, int):
            raise FormatError(f"expected an integer length, got {self.length!r}")
        if self.length < 0:
            raise FormatError(f"expected a length >= 0, got {self.length}")

    @classmethod
    def for_manifest(
        cls,
        repository: str,
        tag: str,
        manifest: bytes,
        custom: TargetCustom | Mapping[str, Any],
    ) -> TargetRecord:
        """The record of ``tag`` pointing at the sealed ``manifest`` bytes."""
        if not isinstance(manifest, bytes | bytearray) or not manifest:
            raise FormatError(
                f"{repository}:{tag}: expected the sealed manifest's bytes, "
                f"got {type(manifest).__name__} of length {len(manifest or b'')}"
            )
        return cls(
            repository=repository,
            tag=tag,
            digest=Digest("sha256:" + hashlib.sha256(manifest).hexdigest()),
            length=len(manifest),
            custom=custom_json(custom),
        )

    @property
    def path(self) -> str:
        """The target path (see the module docstring)."""
        return target_path(self.repository, self.tag)

    def to_target_file(self) -> TargetFile:
        """The python-tuf TargetFile for this record."""
        return TargetFile(
            length=self.length,
            hashes={"sha256": self.digest.hex},
            path=self.path,
            unrecognized_fields={"custom": dict(self.custom)},
        )

    @classmethod
    def from_target_file(cls, target: TargetFile) -> TargetRecord:
        """Read back a record from a TargetFile written by regseal.

        Raises:
            FormatError: the target is not one of regseal's.
        """
        repository, tag = parse_target_path(target.path)
        sha256 = target.hashes.get("sha256")
        custom = target.unrecognized_fields.get("custom", {})
        if not isinstance(custom, Mapping):
            raise FormatError(f"{target.path}: expected a custom object")
        return cls(
            repository=repository,
            tag=tag,
            digest=Digest(f"sha256:{sha256}"),
            length=target.length,
            custom=dict(custom),
        )


def same_target(a: TargetFile, b: TargetFile) -> bool:
    """Whether two target files say exactly the same thing."""
    return bool(a.to_dict() == b.to_dict() and a.path == b.path)
