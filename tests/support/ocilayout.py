"""Write and read OCI image layouts, the directories skopeo's ``oci:`` transport uses.

A test builds an image without docker::

    layer = tar_layer({"hello.txt": b"hi"})
    image = write_image_layout(tmp_path / "img", [layer])
    # skopeo copy oci:<tmp>/img:latest ...
    image.manifest.layer_digests  # what the layers are stored as

The layout follows the OCI image-layout spec: ``oci-layout``, ``index.json``
whose manifest descriptors carry ``org.opencontainers.image.ref.name`` (the
tag ``oci:DIR:TAG`` selects), and content-addressed ``blobs/sha256/<hex>``.
Manifests are OCI or Docker schema2; ``platforms`` makes the tag point at an
index (OCI) or a manifest list (Docker) with one manifest per platform. Several
images can share one layout under different tags.

NOTE: Debian's skopeo 1.9.3 only resolves ``index.json`` entries of OCI media
types, so a Docker-format layout is for code that reads layouts itself (e.g. a
test that uploads blobs through the registry API). To get a schema2 image into
a registry with skopeo, copy an OCI layout with ``skopeo copy --format v2s2``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"

ManifestFormat = Literal["oci", "docker"]

_GZIP_MAGIC = b"\x1f\x8b"


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_layer(files: Mapping[str, bytes], *, compress: bool = True) -> bytes:
    """A deterministic layer tar (gzip-compressed unless ``compress`` is false).

    The same ``files`` always give the same bytes (zero mtimes and owners), so
    two tests building "the same" layer get the same digest. Use distinct
    content when a test needs a blob the registry has not seen.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    data = raw.getvalue()
    return gzip.compress(data, mtime=0) if compress else data


@dataclass(frozen=True)
class Layer:
    """A layer blob with what a manifest says about it.

    ``media_type`` defaults to the gzip or tar type of the manifest format,
    chosen by the blob's magic bytes; ``diff_id`` defaults to the sha256 of
    the blob, gunzipped if it is gzip (give it for other compressions).
    """

    data: bytes
    media_type: str | None = None
    diff_id: str | None = None
    annotations: Mapping[str, str] | None = None


@dataclass(frozen=True)
class ManifestInfo:
    """One image manifest as written to (or read from) a layout."""

    digest: str
    media_type: str
    size: int
    config_digest: str
    layer_digests: tuple[str, ...]
    layer_media_types: tuple[str, ...]
    diff_ids: tuple[str, ...]
    platform: str | None = None
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class LayoutImage:
    """What a tag of a layout points at: one manifest, or an index of them."""

    path: Path
    tag: str
    digest: str
    media_type: str
    manifests: tuple[ManifestInfo, ...]

    @property
    def manifest(self) -> ManifestInfo:
        """The only manifest of a single-platform image."""
        if len(self.manifests) != 1:
            raise ValueError(f"{self.tag} has {len(self.manifests)} manifests")
        return self.manifests[0]

    @property
    def reference(self) -> str:
        """The skopeo reference, ``oci:<path>:<tag>``."""
        return f"oci:{self.path}:{self.tag}"


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def write_blob(path: Path, data: bytes) -> str:
    """Store ``data`` under ``blobs/sha256/`` and return its digest."""
    digest = sha256_digest(data)
    blob = path / "blobs" / "sha256" / digest[7:]
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return digest


def read_blob(path: Path, digest: str) -> bytes:
    """The blob ``digest`` of the layout at ``path``, checked against its digest."""
    data = (path / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    if sha256_digest(data) != digest:
        raise ValueError(f"blob {digest} in {path} does not match its digest")
    return data


def write_json_blob(path: Path, obj: object) -> tuple[str, int]:
    """Store ``obj`` as compact JSON; return its digest and size."""
    data = _json(obj)
    return write_blob(path, data), len(data)


def set_tag(path: Path, tag: str, descriptor: Mapping[str, Any]) -> None:
    """Point ``tag`` at ``descriptor`` in ``index.json``, creating the layout."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    index_file = path / "index.json"
    index: dict[str, Any] = (
        json.loads(index_file.read_bytes())
        if index_file.exists()
        else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    )
    entries = [
        entry
        for entry in index["manifests"]
        if entry.get("annotations", {}).get(REF_NAME) != tag
    ]
    annotations = {**descriptor.get("annotations", {}), REF_NAME: tag}
    entries.append({**descriptor, "annotations": annotations})
    index["manifests"] = entries
    index_file.write_bytes(_json(index))


def store_manifest(
    path: Path, document: Mapping[str, Any], *, tag: str | None = None
) -> dict[str, Any]:
    """Store a manifest or index blob; point ``tag`` at it if given.

    Returns:
        Its descriptor (``mediaType`` from the document, OCI manifest if
        absent; ``digest``; ``size``).
    """
    digest, size = write_json_blob(path, document)
    descriptor = {
        "mediaType": document.get("mediaType", OCI_MANIFEST),
        "digest": digest,
        "size": size,
    }
    if tag is not None:
        set_tag(path, tag, descriptor)
    return descriptor


def _diff_id(layer: Layer) -> str:
    if layer.diff_id is not None:
        return layer.diff_id
    data = layer.data
    if data.startswith(_GZIP_MAGIC):
        data = gzip.decompress(data)
    return sha256_digest(data)


def _layer_type(layer: Layer, manifest_format: ManifestFormat) -> str:
    if layer.media_type is not None:
        return layer.media_type
    gz = layer.data.startswith(_GZIP_MAGIC)
    if manifest_format == "oci":
        return OCI_LAYER_GZIP if gz else OCI_LAYER_TAR
    return DOCKER_LAYER_GZIP if gz else DOCKER_LAYER_TAR


def _write_manifest(
    path: Path,
    layers: Sequence[Layer],
    manifest_format: ManifestFormat,
    platform: str,
    annotations: Mapping[str, str] | None,
) -> ManifestInfo:
    os_name, _, arch = platform.partition("/")
    diff_ids = [_diff_id(layer) for layer in layers]
    config = {
        "architecture": arch,
        "os": os_name,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
    }
    config_digest, config_size = write_json_blob(path, config)
    layer_descriptors = []
    for layer in layers:
        descriptor: dict[str, Any] = {
            "mediaType": _layer_type(layer, manifest_format),
            "digest": write_blob(path, layer.data),
            "size": len(layer.data),
        }
        if layer.annotations:
            descriptor["annotations"] = dict(layer.annotations)
        layer_descriptors.append(descriptor)
    media_type = OCI_MANIFEST if manifest_format == "oci" else DOCKER_MANIFEST
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": OCI_CONFIG if manifest_format == "oci" else DOCKER_CONFIG,
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layer_descriptors,
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    digest, size = write_json_blob(path, manifest)
    return ManifestInfo(
        digest=digest,
        media_type=media_type,
        size=size,
        config_digest=config_digest,
        layer_digests=tuple(d["digest"] for d in layer_descriptors),
        layer_media_types=tuple(d["mediaType"] for d in layer_descriptors),
        diff_ids=tuple(diff_ids),
        platform=platform,
        document=manifest,
    )


def write_image_layout(
    path: Path,
    layers: Sequence[bytes | Layer],
    *,
    tag: str = "latest",
    manifest_format: ManifestFormat = "oci",
    platforms: Sequence[str] = (),
    manifest_annotations: Mapping[str, str] | None = None,
    index_annotations: Mapping[str, str] | None = None,
) -> LayoutImage:
    """Write an image into the layout at ``path`` (created if missing) as ``tag``.

    Args:
        path: The layout directory; existing images in it are kept.
        layers: Layer blobs, bottom first (bytes, or :class:`Layer` for a
            chosen media type, diff_id or annotations).
        tag: The ``org.opencontainers.image.ref.name`` of the image.
        manifest_format: ``"oci"`` or ``"docker"`` (schema2).
        platforms: With none, the tag points at one ``linux/amd64`` manifest.
            With some (``["linux/amd64", "linux/arm64"]``), the tag points at
            an index or manifest list of one manifest per platform; the
            manifests share the layers and differ in their config.
        manifest_annotations: Annotations on every image manifest.
        index_annotations: Annotations on the index (with ``platforms``; a
            Docker manifest list has none).

    Returns:
        The digests of everything written.
    """
    path.mkdir(parents=True, exist_ok=True)
    items = [layer if isinstance(layer, Layer) else Layer(layer) for layer in layers]
    chosen = list(platforms) or ["linux/amd64"]
    manifests = tuple(
        _write_manifest(path, items, manifest_format, platform, manifest_annotations)
        for platform in chosen
    )
    if not platforms:
        top = manifests[0]
        set_tag(
            path,
            tag,
            {"mediaType": top.media_type, "digest": top.digest, "size": top.size},
        )
        return LayoutImage(path, tag, top.digest, top.media_type, manifests)

    media_type = OCI_INDEX if manifest_format == "oci" else DOCKER_MANIFEST_LIST
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {
                "mediaType": info.media_type,
                "digest": info.digest,
                "size": info.size,
                "platform": _platform(info.platform or ""),
            }
            for info in manifests
        ],
    }
    if index_annotations and manifest_format == "oci":
        index["annotations"] = dict(index_annotations)
    descriptor = store_manifest(path, index, tag=tag)
    return LayoutImage(path, tag, descriptor["digest"], media_type, manifests)


def _platform(platform: str) -> dict[str, str]:
    os_name, _, arch = platform.partition("/")
    return {"architecture": arch, "os": os_name}


def resolve_tag(path: Path, tag: str = "latest") -> dict[str, Any]:
    """The descriptor ``index.json`` holds for ``tag``."""
    index = json.loads((path / "index.json").read_bytes())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get(REF_NAME) == tag:
            return dict(entry)
    raise KeyError(f"no tag {tag!r} in {path}/index.json")


def read_manifest(path: Path, digest: str) -> dict[str, Any]:
    """A manifest or index blob, parsed."""
    document: dict[str, Any] = json.loads(read_blob(path, digest))
    return document


def _manifest_info(path: Path, digest: str, platform: str | None) -> ManifestInfo:
    data = read_blob(path, digest)
    document = json.loads(data)
    config = json.loads(read_blob(path, document["config"]["digest"]))
    return ManifestInfo(
        digest=digest,
        media_type=document.get("mediaType", OCI_MANIFEST),
        size=len(data),
        config_digest=document["config"]["digest"],
        layer_digests=tuple(d["digest"] for d in document["layers"]),
        layer_media_types=tuple(d["mediaType"] for d in document["layers"]),
        diff_ids=tuple(config["rootfs"]["diff_ids"]),
        platform=platform,
        document=document,
    )


def read_image_layout(path: Path, tag: str = "latest") -> LayoutImage:
    """Read back what ``tag`` points at, e.g. the output of ``skopeo copy``."""
    top = resolve_tag(path, tag)
    media_type = top["mediaType"]
    if media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        index = read_manifest(path, top["digest"])
        manifests = tuple(
            _manifest_info(
                path,
                entry["digest"],
                "{os}/{architecture}".format(**entry["platform"])
                if "platform" in entry
                else None,
            )
            for entry in index["manifests"]
        )
    else:
        manifests = (_manifest_info(path, top["digest"], None),)
    return LayoutImage(path, tag, top["digest"], media_type, manifests)
