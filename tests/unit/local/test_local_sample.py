import gzip
import hashlib
import io
import json
import tarfile

import pytest

from regseal.local.sample import write_sample_image

BIG = 300_000


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def layout(tmp_path):
    image = write_sample_image(tmp_path / "img", tag="1.0", big_layer_bytes=BIG)
    return image, tmp_path / "img"


def blob(layout_dir, digest):
    return (
        layout_dir / "blobs" / "sha256" / digest.removeprefix("sha256:")
    ).read_bytes()


def test_layout_names_the_manifest_by_its_tag(layout):
    image, directory = layout

    index = json.loads((directory / "index.json").read_text())
    oci_layout = json.loads((directory / "oci-layout").read_text())

    [entry] = index["manifests"]
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "1.0"}
    assert entry["digest"] == str(image.manifest_digest)
    assert sha256(blob(directory, entry["digest"])) == entry["digest"]
    assert oci_layout == {"imageLayoutVersion": "1.0.0"}


def test_manifest_lists_three_layers_of_the_three_kinds(layout):
    image, directory = layout

    manifest = json.loads(blob(directory, str(image.manifest_digest)))

    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ]
    for descriptor, layer in zip(manifest["layers"], image.layers, strict=True):
        data = blob(directory, descriptor["digest"])
        assert sha256(data) == descriptor["digest"] == str(layer.digest)
        assert len(data) == descriptor["size"] == layer.size


def test_config_diff_ids_are_the_uncompressed_layer_digests(layout):
    image, directory = layout
    manifest = json.loads(blob(directory, str(image.manifest_digest)))

    config = json.loads(blob(directory, manifest["config"]["digest"]))

    uncompressed = []
    for descriptor in manifest["layers"]:
        data = blob(directory, descriptor["digest"])
        if descriptor["mediaType"].endswith("+gzip"):
            data = gzip.decompress(data)
        uncompressed.append(sha256(data))
    assert config["rootfs"] == {"type": "layers", "diff_ids": uncompressed}
    assert [str(layer.diff_id) for layer in image.layers] == uncompressed


def test_big_layer_holds_one_random_file_of_the_asked_size(layout):
    image, directory = layout

    data = gzip.decompress(blob(directory, str(image.layers[2].digest)))

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        [member] = tar.getmembers()
        content = tar.extractfile(member).read()
    assert member.name == "opt/regseal-demo/random.bin"
    assert len(content) == BIG
    # Random data does not compress.
    assert image.layers[2].size > BIG


def test_each_build_has_fresh_blobs(tmp_path):
    first = write_sample_image(tmp_path / "a", big_layer_bytes=1000)
    second = write_sample_image(tmp_path / "b", big_layer_bytes=1000)

    assert not {layer.digest for layer in first.layers} & {
        layer.digest for layer in second.layers
    }
