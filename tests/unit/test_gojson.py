"""Go encoding/json and image-spec struct shapes, against bytes skopeo 1.9.3 wrote.

The expected strings of the struct tests were written by Debian's skopeo
decrypting crafted images (tests/functional/test_decrypt.py repeats the
comparison against the live binary); the omitempty case follows the struct
tags.
"""

from __future__ import annotations

import pytest

from regseal import gojson
from regseal.errors import ManifestError

DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<&>é\u2028", '"\\u003c\\u0026\\u003eé\\u2028"'),
        ('a\tb\nc\rd"e\\f', '"a\\tb\\nc\\rd\\"e\\\\f"'),
        ("\x00\x08\x0c\x1f", '"\\u0000\\u0008\\u000c\\u001f"'),
        ("\ud800", '"\\ufffd"'),
        ("\u2029", '"\\u2029"'),
        ("日本", '"日本"'),
    ],
    ids=["html", "short-escapes", "controls", "lone-surrogate", "ps", "cjk"],
)
def test_strings_are_escaped_as_go_escapes_them(value, expected):
    assert gojson.dumps(value) == expected.encode()


def test_structs_keep_order_and_nothing_has_spaces():
    assert (
        gojson.dumps({"b": [1, True, None], "a": {}}) == b'{"b":[1,true,null],"a":{}}'
    )


def test_floats_are_refused():
    with pytest.raises(TypeError):
        gojson.dumps(1.5)


def test_descriptor_drops_unknown_members_and_orders_the_rest():
    source = {
        "artifactType": "t/t",
        "platform": {
            "variant": "v8",
            "os.features": ["f"],
            "os": "linux",
            "os.version": "1",
            "architecture": "arm64",
            "features": ["q"],
        },
        "data": "aGk=",
        "annotations": {"z": "1", "a": "2"},
        "urls": ["u"],
        "size": 78,
        "digest": DIGEST,
        "mediaType": "m/t",
        "zz": 2,
    }

    assert gojson.dumps(gojson.descriptor(source)) == (
        b'{"mediaType":"m/t","digest":"' + DIGEST.encode() + b'","size":78,'
        b'"urls":["u"],"annotations":{"a":"2","z":"1"},"data":"aGk=",'
        b'"platform":{"architecture":"arm64","os":"linux","os.version":"1",'
        b'"os.features":["f"],"variant":"v8"},"artifactType":"t/t"}'
    )


def test_empty_members_are_omitted_but_digest_and_size_stay():
    source = {"digest": "", "size": 0, "annotations": {}, "urls": [], "data": ""}

    assert gojson.dumps(gojson.descriptor(source)) == b'{"digest":"","size":0}'


def test_manifest_keeps_subject_and_sorted_annotations_and_drops_artifact_type():
    source = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "x/y",
        "zzz": {"q": 1},
        "config": {"mediaType": "c", "digest": DIGEST, "size": 1},
        "layers": [],
        "annotations": {"m": "<é>", "a": "b"},
        "subject": {"mediaType": "s", "digest": DIGEST, "size": 1, "zz": 1},
    }
    layer = gojson.layer_descriptor("l", DIGEST, 5, {"x": "1"})

    assert gojson.manifest(source, [layer]) == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"mediaType":"c","digest":"' + DIGEST.encode() + b'","size":1},'
        b'"layers":[{"mediaType":"l","digest":"' + DIGEST.encode() + b'","size":5,'
        b'"annotations":{"x":"1"}}],'
        b'"subject":{"mediaType":"s","digest":"' + DIGEST.encode() + b'","size":1},'
        b'"annotations":{"a":"b","m":"\\u003c\xc3\xa9\\u003e"}}'
    )


def test_index_from_components_keeps_only_what_the_rebuild_keeps():
    child = {
        "data": "aGk=",
        "artifactType": "a/a",
        "zz": 2,
        "annotations": {"a": "<"},
        "platform": {
            "variant": "v8",
            "features": ["x"],
            "os": "linux",
            "architecture": "amd64",
        },
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": DIGEST,
        "size": 399,
    }

    assert gojson.index_from_components([child], {"i": "j"}) == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'
        b'"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"digest":"' + DIGEST.encode() + b'","size":399,"annotations":{"a":"\\u003c"},'
        b'"platform":{"architecture":"amd64","os":"linux","variant":"v8"}}],'
        b'"annotations":{"i":"j"}}'
    )


def test_layout_index_keeps_media_type_and_annotations_only():
    doc = {
        "zz": 1,
        "annotations": {"b": "1", "a": "<"},
        "manifests": [{"size": 5, "digest": DIGEST, "mediaType": "x/y"}],
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "subject": {"mediaType": "a/b", "digest": DIGEST, "size": 1},
        "artifactType": "t/t",
    }

    assert gojson.layout_index(doc) == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'
        b'"manifests":[{"mediaType":"x/y","digest":"' + DIGEST.encode() + b'",'
        b'"size":5}],"annotations":{"a":"\\u003c","b":"1"}}'
    )


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ({"digest": DIGEST, "size": "5"}, "size: expected an integer"),
        ({"digest": DIGEST, "size": 1, "annotations": {"a": 1}}, "map of strings"),
        ({"digest": DIGEST, "size": 1, "data": "%%"}, "standard base64"),
        ({"digest": DIGEST, "size": 1, "platform": []}, "platform: expected an object"),
    ],
)
def test_values_go_could_not_unmarshal_are_refused(source, needle):
    with pytest.raises(ManifestError, match=needle):
        gojson.descriptor(source)
