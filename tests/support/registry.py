"""Lay out a distribution registry in a bucket, as a push would.

Writes the same objects, in the same order, as registry 2.8 does for a push
(reference/registry-on-s3.md §4): blob data, ``_layers`` links, the manifest
blob, its revision link, the tag's index link and, last, ``current/link``.
Tests use it to read as "push an image, deliver the event, check the result".
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from dataclasses import dataclass, field

from regseal.digest import Digest
from regseal.layout import RegistryLayout, encode_link
from regseal.manifest import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    dumps,
)
from regseal.storage import ObjectStore

OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A reproducible gzip-compressed tar of ``files``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def random_layer(size: int = 4096) -> bytes:
    return tar_gz({"data.bin": os.urandom(size)})


@dataclass(frozen=True)
class Pushed:
    repository: str
    tag: str | None
    digest: Digest
    data: bytes
    layers: tuple[Digest, ...] = ()
    config: Digest | None = None
    children: tuple[Pushed, ...] = field(default_factory=tuple)


class FakeRegistry:
    """Writes pushes into ``store`` under ``layout`` the way the registry does."""

    def __init__(self, store: ObjectStore, layout: RegistryLayout | None = None):
        self.store = store
        self.layout = layout or RegistryLayout()

    def put_blob(self, repository: str, data: bytes) -> Digest:
        digest = Digest.of(data)
        key = self.layout.blob_data(digest)
        if not self.store.exists(key):
            self.store.put(key, data)
        self.store.put(self.layout.layer_link(repository, digest), encode_link(digest))
        return digest

    def put_manifest(self, repository: str, data: bytes, tag: str | None) -> Digest:
        digest = Digest.of(data)
        key = self.layout.blob_data(digest)
        if not self.store.exists(key):
            self.store.put(key, data)
        self.store.put(
            self.layout.revision_link(repository, digest), encode_link(digest)
        )
        if tag is not None:
            self.store.put(
                self.layout.tag_index_link(repository, tag, digest), encode_link(digest)
            )
            self.store.put(self.layout.tag_link(repository, tag), encode_link(digest))
        return digest

    def image_manifest(
        self,
        repository: str,
        layers: list[bytes],
        *,
        docker: bool = False,
        layer_types: list[str] | None = None,
        extra: dict | None = None,
        config: dict | None = None,
    ) -> tuple[bytes, Digest, tuple[Digest, ...]]:
        config_doc = config or {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        config_data = json.dumps(config_doc).encode()
        config_digest = self.put_blob(repository, config_data)
        digests = []
        descriptors = []
        for index, layer in enumerate(layers):
            digest = self.put_blob(repository, layer)
            digests.append(digest)
            media_type = (layer_types or [])[index : index + 1] or [
                DOCKER_GZIP if docker else OCI_GZIP
            ]
            descriptors.append(
                {"mediaType": media_type[0], "digest": digest.value, "size": len(layer)}
            )
        doc = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                "digest": config_digest.value,
                "size": len(config_data),
            },
            "layers": descriptors,
            **(extra or {}),
        }
        return dumps(doc), config_digest, tuple(digests)

    def push_image(
        self,
        repository: str,
        tag: str | None,
        layers: list[bytes],
        **options,
    ) -> Pushed:
        data, config, digests = self.image_manifest(repository, layers, **options)
        digest = self.put_manifest(repository, data, tag)
        return Pushed(repository, tag, digest, data, digests, config)

    def push_index(
        self, repository: str, tag: str | None, platforms: list[tuple[str, list[bytes]]]
    ) -> Pushed:
        children = []
        descriptors = []
        for arch, layers in platforms:
            child = self.push_image(
                repository,
                None,
                layers,
                config={
                    "architecture": arch,
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": []},
                },
            )
            children.append(child)
            descriptors.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": child.digest.value,
                    "size": len(child.data),
                    "platform": {"architecture": arch, "os": "linux"},
                }
            )
        data = dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        )
        digest = self.put_manifest(repository, data, tag)
        return Pushed(repository, tag, digest, data, children=tuple(children))

    def tag_digest(self, repository: str, tag: str) -> Digest:
        return Digest.parse(
            self.store.get(self.layout.tag_link(repository, tag)).data.decode()
        )

    def manifest(self, digest: Digest) -> dict:
        return json.loads(self.store.get(self.layout.blob_data(digest)).data)

    def export_layout(self, repository: str, tag: str, path) -> Digest:
        """Copy what ``repository:tag`` points at into an OCI layout as ``tag``.

        The manifest (or index and its children), configs and layers are
        copied byte for byte, so skopeo's ``oci:`` transport and regseal read
        exactly what a pull from the registry would give them.
        """
        from tests.support.ocilayout import set_tag, write_blob

        digest = self.tag_digest(repository, tag)
        data = self.store.get(self.layout.blob_data(digest)).data
        doc = json.loads(data)
        pending = [doc]
        while pending:
            current = pending.pop()
            for child in current.get("manifests", []):
                child_digest = Digest.parse(child["digest"])
                child_data = self.store.get(self.layout.blob_data(child_digest)).data
                write_blob(path, child_data)
                pending.append(json.loads(child_data))
            for descriptor in [current.get("config"), *current.get("layers", [])]:
                if descriptor:
                    blob = self.store.get(
                        self.layout.blob_data(Digest.parse(descriptor["digest"]))
                    ).data
                    write_blob(path, blob)
        write_blob(path, data)
        set_tag(
            path,
            tag,
            {"mediaType": doc["mediaType"], "digest": digest.value, "size": len(data)},
        )
        return digest

    def snapshot(self) -> dict[str, bytes]:
        """Every object under the registry root, for "nothing changed" checks."""
        return {
            key: self.store.get(key).data
            for key in self.store.list_keys(self.layout.base)
        }


def s3_event(bucket: str, key: str, name: str = "ObjectCreated:Put") -> dict:
    """An S3 notification as moto sends it (the whole key quote_plus-encoded)."""
    from urllib.parse import quote_plus

    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventName": name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key), "size": 71},
                },
            }
        ]
    }
