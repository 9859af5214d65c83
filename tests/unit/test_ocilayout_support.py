"""The test-support OCI layout builder writes what it reports."""

from __future__ import annotations

import gzip
import hashlib
import json

from tests.support.ocilayout import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    Layer,
    read_blob,
    read_image_layout,
    tar_layer,
    write_image_layout,
)


def test_tar_layer_is_deterministic_gzip_of_a_tar():
    first = tar_layer({"a.txt": b"a"})

    assert first == tar_layer({"a.txt": b"a"})
    assert first != tar_layer({"a.txt": b"b"})
    assert gzip.decompress(first)[:5] == b"a.txt"


def test_oci_image_round_trips_through_read(tmp_path):
    gz = tar_layer({"a.txt": b"a"})
    tar = tar_layer({"b.txt": b"b"}, compress=False)

    image = write_image_layout(tmp_path, [gz, Layer(tar, annotations={"k": "v"})])

    read = read_image_layout(tmp_path)
    assert read.digest == image.digest
    assert read.manifest.layer_digests == image.manifest.layer_digests
    assert read.manifest.layer_media_types == (OCI_LAYER_GZIP, OCI_LAYER_TAR)
    assert read.manifest.diff_ids == (
        "sha256:" + hashlib.sha256(gzip.decompress(gz)).hexdigest(),
        "sha256:" + hashlib.sha256(tar).hexdigest(),
    )
    assert read.manifest.document["layers"][1]["annotations"] == {"k": "v"}
    assert image.reference == f"oci:{tmp_path}:latest"


def test_docker_manifest_list_with_two_platforms_and_a_second_tag(tmp_path):
    layers = [tar_layer({"a.txt": b"a"})]
    write_image_layout(tmp_path, layers, tag="oci")

    image = write_image_layout(
        tmp_path,
        layers,
        tag="docker",
        manifest_format="docker",
        platforms=["linux/amd64", "linux/arm64"],
    )

    assert image.media_type == DOCKER_MANIFEST_LIST
    assert [m.platform for m in image.manifests] == ["linux/amd64", "linux/arm64"]
    assert len({m.config_digest for m in image.manifests}) == 2
    for manifest in image.manifests:
        assert manifest.media_type == DOCKER_MANIFEST
        assert manifest.layer_media_types == (DOCKER_LAYER_GZIP,)
        assert manifest.document["config"]["mediaType"] == DOCKER_CONFIG
        config = json.loads(read_blob(tmp_path, manifest.config_digest))
        assert f"{config['os']}/{config['architecture']}" == manifest.platform
    assert read_image_layout(tmp_path, "docker").manifests == image.manifests
    assert read_image_layout(tmp_path, "oci").media_type != OCI_INDEX
