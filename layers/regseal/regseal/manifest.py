"""OCI and Docker manifests and indexes: parsing, classification, writing.

Follows the OCI image spec (image manifest, image index, descriptor) and
Docker's schema2 manifest and manifest list. regseal reads all four and
writes OCI: a sealed Docker schema2 image becomes an OCI manifest, as
skopeo does when it encrypts, because schema2 has no encrypted layer types.

Unknown fields are kept: a descriptor or manifest is re-serialized from its
original JSON object with only the fields regseal changes replaced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regseal.digest import Digest
from regseal.errors import DigestError, ManifestError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

IMAGE_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
# Every filesystem layer type (plain, compressed, foreign, non-distributable,
# encrypted) starts with one of these.
LAYER_TYPE_PREFIXES = (
    "application/vnd.oci.image.layer.",
    "application/vnd.docker.image.rootfs.",
)
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

# The registry refuses larger manifests in later versions (4 MiB); a larger
# one here is an error rather than something to hold in Lambda memory.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# Annotations regseal puts on the manifests it writes.
ANNOTATION_PLAINTEXT = "dev.regseal.plaintext-manifest"
ANNOTATION_POLICY_VERSION = "dev.regseal.policy-version"
ANNOTATION_TEAM = "dev.regseal.team"
ANNOTATION_KMS_KEY = "dev.regseal.kms-key"
# Comma-joined "name=sha256:<fingerprint of the public key>" of the JWE
# recipients the layer keys were wrapped for (JWE items carry no key id).
ANNOTATION_RECIPIENTS = "dev.regseal.recipients"


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor, with its original JSON object kept in ``raw``."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    platform: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The descriptor as a JSON object, in the Go field order."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest.value,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        for key, value in self.raw.items():
            if key not in _DESCRIPTOR_FIELDS:
                out[key] = value
        if self.platform is not None:
            out["platform"] = dict(self.platform)
        return out


_DESCRIPTOR_FIELDS = {"mediaType", "digest", "size", "urls", "annotations", "platform"}


@dataclass(frozen=True)
class ImageManifest:
    """An image manifest (OCI or Docker schema2) as read from storage."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]
    raw: Mapping[str, Any]
    digest: Digest

    @property
    def is_image(self) -> bool:
        """True for runnable images; False for artifacts (signatures, charts).

        Some artifacts borrow the image config type: cosign's signature
        manifests (simplesigning layers) and BuildKit's attestation manifests
        (in-toto layers). Layers none of which is a filesystem layer mark
        them as artifacts.
        """
        return (
            self.config.media_type in IMAGE_CONFIG_TYPES
            and "artifactType" not in self.raw
            and (
                not self.layers
                or any(
                    x.media_type.startswith(LAYER_TYPE_PREFIXES) for x in self.layers
                )
            )
        )


@dataclass(frozen=True)
class ImageIndex:
    """An image index (OCI) or manifest list (Docker)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str]
    raw: Mapping[str, Any]
    digest: Digest


def parse(data: bytes, where: str) -> ImageManifest | ImageIndex:
    """Parse manifest bytes read from ``where`` (a key, for messages).

    Raises:
        ManifestError: not JSON, not schemaVersion 2, an unsupported media
            type, or a malformed descriptor.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{where}: expected a manifest of at most {MAX_MANIFEST_BYTES} bytes, "
            f"got {len(data)}"
        )
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{where}: expected manifest JSON, got {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    version = doc.get("schemaVersion")
    media_type = doc.get("mediaType")
    if media_type in DOCKER_SCHEMA1 or version == 1:
        raise UnsupportedManifest(f"{where}: Docker schema1 manifests are not sealed")
    if version != 2 or isinstance(version, bool):
        raise ManifestError(f"{where}: expected schemaVersion 2, got {version!r}")
    if media_type is None:
        # OCI makes mediaType optional; the shape tells manifest from index.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    digest = Digest.of(data)
    if media_type in INDEX_TYPES:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise ManifestError(f"{where}: expected a 'manifests' list")
        return ImageIndex(
            media_type,
            tuple(
                parse_descriptor(c, f"{where} manifests[{i}]")
                for i, c in enumerate(children)
            ),
            _annotations(doc.get("annotations"), where),
            doc,
            digest,
        )
    if media_type in MANIFEST_TYPES:
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ManifestError(f"{where}: expected a 'layers' list")
        return ImageManifest(
            media_type,
            parse_descriptor(doc.get("config"), f"{where} config"),
            tuple(
                parse_descriptor(x, f"{where} layers[{i}]")
                for i, x in enumerate(layers)
            ),
            _annotations(doc.get("annotations"), where),
            doc,
            digest,
        )
    raise UnsupportedManifest(
        f"{where}: expected an OCI or Docker schema2 manifest or index, "
        f"got media type {media_type!r}"
    )


class UnsupportedManifest(ManifestError):
    """A well-formed manifest of a kind regseal leaves alone (e.g. schema1)."""


def parse_descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a descriptor object, got {obj!r:.60}")
    media_type = obj.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"{where}: expected a 'mediaType' string")
    try:
        digest = Digest.parse(obj.get("digest"))  # type: ignore[arg-type]
    except DigestError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(
            f"{where}: expected a non-negative integer 'size', got {size!r}"
        )
    urls = obj.get("urls") or ()
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise ManifestError(f"{where}: expected 'urls' to be a list of strings")
    platform = obj.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise ManifestError(f"{where}: expected 'platform' to be an object")
    return Descriptor(
        media_type,
        digest,
        size,
        _annotations(obj.get("annotations"), where),
        tuple(urls),
        platform,
        obj,
    )


def _annotations(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestError(f"{where}: expected annotations to map strings to strings")
    return dict(value)


def dumps(doc: Mapping[str, Any]) -> bytes:
    """Serialize a manifest the way Go's encoding/json does: compact."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def build_manifest(
    source: ImageManifest,
    config: Descriptor,
    layers: list[Descriptor],
    annotations: Mapping[str, str],
) -> bytes:
    """Write an OCI image manifest derived from ``source``.

    Unknown top-level fields of an OCI source are kept; a Docker schema2
    source becomes OCI with the same config blob (its JSON is a valid OCI
    config) under the OCI config media type.
    """
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    doc["config"] = config.to_json()
    doc["layers"] = [layer.to_json() for layer in layers]
    if source.media_type == OCI_MANIFEST:
        for key, value in source.raw.items():
            if key not in {
                "schemaVersion",
                "mediaType",
                "config",
                "layers",
                "annotations",
            }:
                doc[key] = value
    if annotations:
        doc["annotations"] = dict(annotations)
    return dumps(doc)


def build_index(
    source: ImageIndex, manifests: list[Descriptor], annotations: Mapping[str, str]
) -> bytes:
    """Write an OCI image index derived from ``source``."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX}
    doc["manifests"] = [m.to_json() for m in manifests]
    if source.media_type == OCI_INDEX:
        for key, value in source.raw.items():
            if key not in {"schemaVersion", "mediaType", "manifests", "annotations"}:
                doc[key] = value
    if annotations:
        doc["annotations"] = dict(annotations)
    return dumps(doc)
