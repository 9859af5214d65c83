"""The bad-input corpus: what reaches the seal function, and what must follow.

Each case builds its input in a fresh registry bucket and returns the SQS
message body the function would get. The expected outcome is one of:

- ``Error(type, ...)``: the exception the function raises (so SQS retries
  and, after the receive limit, dead-letters the message), whose message
  names the input;
- ``Skip(reason)`` / ``Ignore(reason)``: a documented outcome without error;
- ``Sealed()``: a valid input that regseal must seal.

For every outcome but ``Sealed`` the bucket must be byte-for-byte unchanged.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from regseal.digest import Digest
from regseal.errors import (
    EventError,
    FormatError,
    IntegrityError,
    ManifestError,
    RegsealError,
)
from regseal.layout import encode_link
from regseal.manifest import (
    DOCKER_CONFIG,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    dumps,
)
from tests.support.registry import OCI_GZIP, random_layer, s3_event

MiB = 1024 * 1024
REPO = "team-a/app"
ROOT = "docker/registry/v2/repositories/"
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"


@dataclass(frozen=True)
class Error:
    type: type[RegsealError]
    words: tuple[str, ...] = ()
    leaves_ciphertext: bool = False
    """The bucket gains only ciphertext of layers sealed before the error
    (unreferenced by any manifest): the one documented exception to "the
    bucket is unchanged", for damage found only by reading a whole layer."""


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Ignore:
    reason: str


@dataclass(frozen=True)
class NoEvents:
    pass


@dataclass(frozen=True)
class Sealed:
    check: Callable[[Input, dict], None] | None = None
    """Further checks on the sealed manifest (or index) the tag points at."""


Outcome = Error | Skip | Ignore | NoEvents | Sealed


@dataclass(frozen=True)
class Input:
    body: str | bytes
    names: tuple[str, ...] = ()
    """Strings an error message must contain: the key, digest or name at fault."""
    context: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Any], Input]
    expect: Outcome
    family: str = "bad input"


# -- builders ------------------------------------------------------------------------


def tag_key(repository: str = REPO, tag: str = "1") -> str:
    return f"{ROOT}{repository}/_manifests/tags/{tag}/current/link"


def s3_body(reg, key: str) -> str:
    return json.dumps(s3_event(reg.bucket, key))


def eventbridge_body(bucket: str, key: str, detail_type="Object Created") -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "0b6b1c6e-0000-4000-8000-000000000000",
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2026-12-04T14:20:28Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {"key": key, "size": 71},
                "reason": "PutObject",
            },
        }
    )


def blob(reg, data: bytes, repository: str = REPO) -> dict:
    digest = reg.registry.put_blob(repository, data)
    return {"digest": digest.value, "size": len(data)}


def config(reg, repository: str = REPO, media_type: str = OCI_CONFIG) -> dict:
    data = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    return {"mediaType": media_type, **blob(reg, data, repository)}


def layer(reg, data: bytes | None = None, media_type: str = OCI_GZIP, **extra) -> dict:
    return {
        "mediaType": media_type,
        **blob(reg, random_layer(1500) if data is None else data),
        **extra,
    }


def manifest_doc(reg, layers: list[dict] | None = None, **extra) -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config(reg),
        "layers": [layer(reg)] if layers is None else layers,
        **extra,
    }


def put_raw(reg, data: bytes, tag: str | None = "1", repository: str = REPO) -> Digest:
    return reg.registry.put_manifest(repository, data, tag)


def tagged(reg, doc_or_data: dict | bytes, tag: str = "1", repository=REPO) -> Input:
    data = doc_or_data if isinstance(doc_or_data, bytes) else dumps(doc_or_data)
    digest = put_raw(reg, data, tag, repository)
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    # Errors about the manifest name its blob key, which holds the hex.
    return Input(
        s3_body(reg, tag_key(repository, tag)),
        (digest.hex,),
        {"digest": digest, "doc": doc},
    )


def with_doc(change: Callable[[Any, dict], Any]) -> Callable[[Any], Input]:
    """A case that pushes a valid image manifest after ``change`` edits it."""

    def build(reg) -> Input:
        doc = manifest_doc(reg, [layer(reg), layer(reg)])
        names = change(reg, doc) or ()
        built = tagged(reg, doc)
        return Input(built.body, tuple(names) or built.names, built.context)

    return build


def child(reg, arch: str, repository: str = REPO) -> dict:
    data = dumps(manifest_doc(reg))
    digest = put_raw(reg, data, None, repository)
    return {
        "mediaType": OCI_MANIFEST,
        "digest": digest.value,
        "size": len(data),
        "platform": {"architecture": arch, "os": "linux"},
    }


def index_doc(manifests: list[dict]) -> dict:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}


def empty_tar_gz() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w"):
        pass
    return gzip.compress(raw.getvalue(), mtime=0)


def zstd_frame(payload: bytes) -> bytes:
    """A valid zstd frame holding ``payload`` in one raw (stored) block."""
    assert len(payload) < 1 << 20
    header = bytes([0x20]) + bytes([len(payload) & 0xFF])  # single segment, FCS 1B
    if len(payload) > 255:
        header = bytes([0x60]) + (len(payload) - 256).to_bytes(2, "little")
    block = ((len(payload) << 3) | 1).to_bytes(3, "little")  # last, raw
    return b"\x28\xb5\x2f\xfd" + header + block + payload


# -- event and key cases ---------------------------------------------------------


def _body(text: str | bytes, *names: str) -> Callable[[Any], Input]:
    return lambda reg: Input(text, names)


def _records(reg, record: dict) -> str:
    return json.dumps({"Records": [record]})


def _bad_key(key: str, *names: str, encoded: bool = True) -> Callable[[Any], Input]:
    def build(reg) -> Input:
        reg.registry.push_image(REPO, "1", [random_layer()])
        body = s3_body(reg, key) if encoded else eventbridge_body(reg.bucket, key)
        return Input(body, names)

    return build


def _raw_s3_key(raw_key: str, *names: str) -> Callable[[Any], Input]:
    """An S3 notification whose key is given exactly as it would arrive."""

    def build(reg) -> Input:
        reg.registry.push_image(REPO, "1", [random_layer()])
        event = s3_event(reg.bucket, "x")
        event["Records"][0]["s3"]["object"]["key"] = raw_key
        return Input(json.dumps(event), names)

    return build


def _valid_then(body: Callable[[Any], str]) -> Callable[[Any], Input]:
    def build(reg) -> Input:
        reg.registry.push_image(REPO, "1", [random_layer()])
        return Input(body(reg))

    return build


def _truncated(reg) -> Input:
    text = s3_body(reg, tag_key())
    return Input(text[: len(text) // 2])


HEX = "a" * 64

EVENT_CASES = [
    Case("body-not-json", _body("{not json"), Error(EventError, ("JSON event",))),
    Case("body-truncated-json", _truncated, Error(EventError, ("JSON event",))),
    Case("body-empty", _body(""), Error(EventError, ("JSON event",))),
    Case("body-not-utf8", _body(b"\xff\xfe\x00{"), Error(EventError, ("JSON event",))),
    Case("body-json-array", _body("[]"), Error(EventError, ("got list",))),
    Case(
        "records-not-a-list",
        _body('{"Records": {}}'),
        Error(EventError, ("'Records' to be a list",)),
    ),
    Case(
        "record-of-another-service",
        _body('{"Records": [{"eventSource": "aws:sqs"}]}'),
        Error(EventError, ("Records[0]", "aws:s3")),
    ),
    Case(
        "record-without-key",
        _body('{"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {}}}]}'),
        Error(EventError, ("s3.object.key",)),
    ),
    Case(
        "unknown-event-name",
        lambda reg: Input(
            s3_body(reg, tag_key()).replace("ObjectCreated:Put", "ObjectRestore:Post"),
            ("ObjectRestore:Post",),
        ),
        Error(EventError),
    ),
    Case(
        "eventbridge-without-detail",
        _body('{"source": "aws.s3", "detail-type": "Object Created"}'),
        Error(EventError, ("detail.bucket.name",)),
    ),
    Case("s3-test-event", _body('{"Event": "s3:TestEvent"}'), NoEvents()),
    Case(
        "event-for-another-bucket",
        _valid_then(lambda reg: json.dumps(s3_event("another-bucket", tag_key()))),
        Ignore("event for bucket 'another-bucket'"),
    ),
    Case(
        "key-outside-the-root-directory",
        _valid_then(lambda reg: s3_body(reg, "elsewhere/" + tag_key())),
        Ignore("not a tag or revision link"),
    ),
    Case(
        "blob-key",
        _valid_then(
            lambda reg: s3_body(reg, f"docker/registry/v2/blobs/sha256/aa/{HEX}/data")
        ),
        Ignore("not a tag or revision link"),
    ),
    Case(
        "upload-key",
        _valid_then(lambda reg: s3_body(reg, f"{ROOT}{REPO}/_uploads/u-1/startedat")),
        Ignore("not a tag or revision link"),
    ),
    Case(
        "layer-link-key",
        _valid_then(
            lambda reg: s3_body(reg, f"{ROOT}{REPO}/_layers/sha256/{HEX}/link")
        ),
        Ignore("layer link"),
    ),
    Case(
        "tag-index-link-key",
        _valid_then(
            lambda reg: s3_body(
                reg, f"{ROOT}{REPO}/_manifests/tags/1/index/sha256/{HEX}/link"
            )
        ),
        Ignore("tag-index link"),
    ),
    Case(
        "removal-event",
        _valid_then(
            lambda reg: json.dumps(
                s3_event(reg.bucket, tag_key(), "ObjectRemoved:Delete")
            )
        ),
        Ignore("removal"),
    ),
    Case(
        "sha512-revision-key",
        _valid_then(
            lambda reg: s3_body(
                reg, f"{ROOT}{REPO}/_manifests/revisions/sha512/{'b' * 128}/link"
            )
        ),
        Ignore("not a tag or revision link"),
    ),
    Case(
        "dot-dot-in-repository",
        _bad_key(tag_key("team-a/../secret"), "team-a/../secret"),
        Error(FormatError, ("repository name",)),
    ),
    Case(
        "encoded-slash-in-eventbridge-key",
        _bad_key(tag_key("team-a%2Fapp"), "team-a%2Fapp", encoded=False),
        Error(FormatError, ("repository name",)),
    ),
    Case(
        "double-encoded-slash-in-s3-key",
        _raw_s3_key(
            "docker%2Fregistry%2Fv2%2Frepositories%2Fteam-a%252Fapp%2F_manifests"
            "%2Ftags%2F1%2Fcurrent%2Flink",
            "team-a%2Fapp",
        ),
        Error(FormatError, ("repository name",)),
    ),
    Case(
        "space-in-repository",
        _bad_key(tag_key("team-a/my app"), "team-a/my app"),
        Error(FormatError, ("repository name",)),
    ),
    Case(
        "raw-plus-in-s3-key-is-a-space",
        _raw_s3_key(tag_key("team-a/my+app"), "team-a/my app"),
        Error(FormatError, ("repository name",)),
    ),
    Case(
        "plus-in-tag",
        _bad_key(tag_key(REPO, "1.0+build"), "1.0+build"),
        Error(FormatError, ("tag of 1-128 characters",)),
    ),
    Case(
        "uppercase-repository",
        _bad_key(tag_key("Team-A/app"), "Team-A/app"),
        Error(FormatError, ("repository name",)),
    ),
    Case(
        "tag-of-129-characters",
        _bad_key(tag_key(REPO, "t" * 129), "t" * 129),
        Error(FormatError, ("tag of 1-128 characters",)),
    ),
    Case(
        "revision-key-with-short-hex",
        _bad_key(f"{ROOT}{REPO}/_manifests/revisions/sha256/abc/link", "sha256:abc"),
        Error(FormatError, ("64 hex characters",)),
    ),
    Case(
        "moto-style-encoded-slashes",
        lambda reg: tagged(reg, manifest_doc(reg)),  # s3_event encodes every "/"
        Sealed(),
        family="valid edge cases",
    ),
]


# -- link file cases ---------------------------------------------------------------


def _tag_link(content: bytes | Callable[[Any], bytes]) -> Callable[[Any], Input]:
    def build(reg) -> Input:
        reg.registry.push_image(REPO, "1", [random_layer()])
        key = tag_key()
        reg.store.put(key, content(reg) if callable(content) else content)
        return Input(s3_body(reg, key), (key,))

    return build


def _unrevisioned(reg) -> bytes:
    pushed = reg.registry.push_image(REPO, "1", [random_layer()])
    reg.store.delete(reg.layout.revision_link(REPO, pushed.digest))
    return encode_link(pushed.digest)


LINK_CASES = [
    Case(
        "tag-link-with-newline",
        _tag_link(b"sha256:" + HEX.encode() + b"\n"),
        Error(FormatError, ("no newline",)),
    ),
    Case("tag-link-garbage", _tag_link(b"\x00\xffgarbage"), Error(FormatError)),
    Case("tag-link-empty", _tag_link(b""), Error(FormatError, ("sha256:<64 hex>",))),
    Case(
        "tag-link-sha512",
        _tag_link(b"sha512:" + b"c" * 128),
        Error(FormatError, ("sha256:<64 hex>",)),
    ),
    Case(
        "tag-link-to-a-digest-without-revision",
        lambda reg: Input(
            s3_body(reg, tag_key()),
            ("no revision link",),
            {"_": reg.store.put(tag_key(), _unrevisioned(reg))},
        ),
        Error(ManifestError),
    ),
]


# -- manifest cases ----------------------------------------------------------------


def _missing_blob(reg) -> Input:
    data = dumps(manifest_doc(reg))
    digest = put_raw(reg, data)
    reg.store.delete(reg.layout.blob_data(digest))
    return Input(s3_body(reg, tag_key()), (reg.layout.blob_data(digest),))


def _altered_blob(reg) -> Input:
    data = dumps(manifest_doc(reg))
    digest = put_raw(reg, data)
    reg.store.put(reg.layout.blob_data(digest), data + b"\n")
    return Input(s3_body(reg, tag_key()), (str(digest),))


def _set(path: str, value: Any, name: str | None = None):
    def change(reg, doc):
        target = doc
        parts = path.split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
        return (name,) if name else ()

    return change


_DELETE = object()


def _delete_key(which: str):
    """Remove the config's or the second layer's blob or _layers link."""

    def change(reg, doc):
        descriptor = doc["config"] if which.startswith("config") else doc["layers"][1]
        digest = Digest.parse(descriptor["digest"])
        if which.endswith("blob"):
            reg.store.delete(reg.layout.blob_data(digest))
        else:
            reg.store.delete(reg.layout.layer_link(REPO, digest))
        return (digest.value,)

    return change


def _grow(which: str):
    def change(reg, doc):
        descriptor = doc["config"] if which == "config" else doc["layers"][1]
        descriptor["size"] += 7
        return (descriptor["digest"],)

    return change


def _corrupt_second_layer(reg, doc):
    digest = Digest.parse(doc["layers"][1]["digest"])
    key = reg.layout.blob_data(digest)
    data = bytearray(reg.store.get(key).data)
    data[-5] ^= 0xFF
    reg.store.put(key, bytes(data))
    return (digest.value,)


def _big_manifest(size: int):
    def build(reg) -> Input:
        doc = manifest_doc(reg, annotations={"org.example.padding": "x" * size})
        return tagged(reg, doc)

    return build


MANIFEST_CASES = [
    Case(
        "manifest-truncated-json",
        lambda reg: tagged(reg, dumps(manifest_doc(reg))[:-40]),
        Error(ManifestError, ("expected manifest JSON",)),
    ),
    Case(
        "manifest-not-utf8",
        lambda reg: tagged(reg, b"\xff\xfe" + dumps(manifest_doc(reg))),
        Error(ManifestError, ("expected manifest JSON",)),
    ),
    Case(
        "manifest-json-array",
        lambda reg: tagged(reg, b"[1, 2]"),
        Error(ManifestError, ("expected a JSON object",)),
    ),
    Case(
        "manifest-of-5-mib",
        _big_manifest(5 * MiB),
        Error(ManifestError, ("at most 4194304 bytes",)),
    ),
    Case(
        "manifest-of-3-mib",
        _big_manifest(3 * MiB),
        Sealed(),
        family="valid edge cases",
    ),
    Case(
        "schema-version-3",
        with_doc(_set("schemaVersion", 3)),
        Error(ManifestError, ("expected schemaVersion 2, got 3",)),
    ),
    Case(
        "schema-version-as-string",
        with_doc(_set("schemaVersion", "2")),
        Error(ManifestError, ("expected schemaVersion 2, got '2'",)),
    ),
    Case(
        "docker-schema1",
        lambda reg: tagged(
            reg,
            {
                "schemaVersion": 1,
                "name": REPO,
                "tag": "1",
                "architecture": "amd64",
                "fsLayers": [{"blobSum": f"sha256:{HEX}"}],
                "history": [{"v1Compatibility": "{}"}],
            },
        ),
        Skip("not an image manifest"),
    ),
    Case(
        "unknown-manifest-media-type",
        with_doc(_set("mediaType", "application/vnd.example.thing.v1+json")),
        Skip("not an image manifest"),
    ),
    Case(
        "layer-digest-sha512",
        with_doc(_set("layers.0.digest", "sha512:" + "d" * 128, "sha512:")),
        Error(ManifestError, ("layers[0]", "expected a sha256 digest")),
    ),
    Case(
        "layer-digest-too-short",
        with_doc(_set("layers.1.digest", "sha256:" + "e" * 63, "e" * 63)),
        Error(ManifestError, ("layers[1]", "64 hex characters")),
    ),
    Case(
        "layer-digest-uppercase",
        with_doc(_set("layers.0.digest", "sha256:" + "F" * 64, "F" * 64)),
        Error(ManifestError, ("layers[0]",)),
    ),
    Case(
        "config-digest-blake3",
        with_doc(_set("config.digest", "blake3:" + "0" * 64, "blake3:")),
        Error(ManifestError, ("config",)),
    ),
    Case(
        "layers-not-a-list",
        with_doc(_set("layers", {"0": 1})),
        Error(ManifestError, ("'layers' list",)),
    ),
    Case(
        "descriptor-without-media-type",
        with_doc(_set("layers.0.mediaType", _DELETE)),
        Error(ManifestError, ("layers[0]", "'mediaType'")),
    ),
    Case(
        "negative-size",
        with_doc(_set("layers.1.size", -1)),
        Error(ManifestError, ("layers[1]", "non-negative integer 'size'")),
    ),
    Case(
        "size-as-string",
        with_doc(_set("layers.0.size", "1500")),
        Error(ManifestError, ("layers[0]", "'size'")),
    ),
    Case(
        "annotation-value-not-a-string",
        with_doc(_set("annotations", {"a": 1})),
        Error(ManifestError, ("annotations to map strings to strings",)),
    ),
    Case(
        "manifest-blob-missing",
        _missing_blob,
        Error(ManifestError, ("is missing",)),
    ),
    Case(
        "manifest-blob-altered",
        _altered_blob,
        Error(ManifestError, ("does not match its digest",)),
    ),
    Case(
        "config-blob-missing",
        with_doc(_delete_key("config-blob")),
        Error(ManifestError, ("config", "missing")),
    ),
    Case(
        "config-layers-link-missing",
        with_doc(_delete_key("config-link")),
        Error(ManifestError, ("config", "missing")),
    ),
    Case(
        "layer-blob-missing",
        with_doc(_delete_key("layer-blob")),
        Error(ManifestError, ("missing",)),
    ),
    Case(
        "layer-layers-link-missing",
        with_doc(_delete_key("layer-link")),
        Error(ManifestError, ("missing",)),
    ),
    Case(
        "layer-size-mismatch",
        with_doc(_grow("layer")),
        Error(ManifestError, ("descriptor says",)),
    ),
    Case(
        "config-size-mismatch",
        with_doc(_grow("config")),
        Error(ManifestError, ("config", "descriptor says")),
    ),
    Case(
        "layer-content-altered-same-size",
        with_doc(_corrupt_second_layer),
        Error(IntegrityError, ("expected",), leaves_ciphertext=True),
    ),
    Case(
        "image-without-layers",
        with_doc(_set("layers", [])),
        Skip("no plaintext layers"),
    ),
    Case(
        "repository-no-team-claims",
        lambda reg: tagged(reg, manifest_doc(reg), repository="other/app"),
        Skip("no team claims the repository"),
    ),
]


# -- layer kinds -------------------------------------------------------------------


def _layers_of(*makers) -> Callable[[Any], Input]:
    def build(reg) -> Input:
        return tagged(reg, manifest_doc(reg, [make(reg) for make in makers]))

    return build


def _foreign(reg) -> dict:
    return {
        "mediaType": DOCKER_FOREIGN,
        "digest": "sha256:" + "f" * 64,
        "size": 1024,
        "urls": ["https://mcr.example/layer"],
    }


def _foreign_kept(given: Input, sealed: dict) -> None:
    assert sealed["layers"][0]["mediaType"] == DOCKER_FOREIGN
    assert sealed["layers"][0]["urls"] == ["https://mcr.example/layer"]
    assert sealed["layers"][1]["mediaType"].endswith("+encrypted")


def _all_encrypted(given: Input, sealed: dict) -> None:
    assert all(x["mediaType"].endswith("+encrypted") for x in sealed["layers"])


def _skopeo_encrypted(reg) -> dict:
    return layer(
        reg,
        os.urandom(2000),
        OCI_GZIP + "+encrypted",
        annotations={
            "org.opencontainers.image.enc.keys.jwe": "ZXhhbXBsZQ==",
            "org.opencontainers.image.enc.pubopts": "e30=",
        },
    )


def _claims_encrypted(annotations: dict[str, str]) -> Callable[[Any], dict]:
    """A layer typed ``+encrypted`` whose blob is plaintext, with ``annotations``."""

    def make(reg) -> dict:
        return layer(reg, media_type=OCI_GZIP + "+encrypted", annotations=annotations)

    return make


def _fake_encrypted(*makers, missing: tuple[str, ...]) -> Callable[[Any], Input]:
    """A manifest of ``makers``' layers; the error names the fake one's digest."""

    def build(reg) -> Input:
        layers = [make(reg) for make in makers]
        built = tagged(reg, manifest_doc(reg, layers))
        fake = next(x for x in layers if x["mediaType"].endswith("+encrypted"))
        return Input(built.body, (*built.names, fake["digest"], *missing))

    return build


def _fake_encrypted_child(reg) -> Input:
    data = dumps(manifest_doc(reg, [_claims_encrypted({})(reg)]))
    digest = put_raw(reg, data, None)
    fake = {
        "mediaType": OCI_MANIFEST,
        "digest": digest.value,
        "size": len(data),
        "platform": {"architecture": "arm64", "os": "linux"},
    }
    built = tagged(reg, index_doc([child(reg, "amd64"), fake]))
    return Input(built.body, (digest.value,), built.context)


_PUBOPTS = "org.opencontainers.image.enc.pubopts"
_KEYS = "org.opencontainers.image.enc.keys.*"


def _partially_encrypted(given: Input, sealed: dict) -> None:
    first, second = sealed["layers"]
    assert first["annotations"]["org.opencontainers.image.enc.pubopts"] == "e30="
    assert (
        "org.opencontainers.image.enc.keys.provider.regseal" in (second["annotations"])
    )


LAYER_CASES = [
    Case(
        "zero-byte-layer",
        _layers_of(lambda reg: layer(reg, b""), lambda reg: layer(reg)),
        Sealed(_all_encrypted),
        family="valid edge cases",
    ),
    Case(
        "empty-tar-layer",
        _layers_of(lambda reg: layer(reg, empty_tar_gz())),
        Sealed(_all_encrypted),
        family="valid edge cases",
    ),
    Case(
        "uncompressed-tar-layer",
        _layers_of(lambda reg: layer(reg, random_layer()[:0] + b"t" * 2048, OCI_TAR)),
        Sealed(_all_encrypted),
        family="valid edge cases",
    ),
    Case(
        "zstd-layer",
        _layers_of(lambda reg: layer(reg, zstd_frame(b"tar" * 300), OCI_ZSTD)),
        Sealed(_all_encrypted),
        family="valid edge cases",
    ),
    Case(
        "docker-schema2-with-foreign-layer",
        lambda reg: tagged(
            reg,
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": config(reg, media_type=DOCKER_CONFIG),
                "layers": [
                    _foreign(reg),
                    layer(
                        reg,
                        media_type="application/vnd.docker.image.rootfs.diff.tar.gzip",
                    ),
                ],
            },
        ),
        Sealed(_foreign_kept),
        family="valid edge cases",
    ),
    Case(
        "only-foreign-layers",
        _layers_of(_foreign),
        Skip("no plaintext layers"),
    ),
    Case(
        "nondistributable-layer-pushed-with-its-blob",
        _layers_of(lambda reg: layer(reg, media_type=NONDISTRIBUTABLE)),
        Sealed(_all_encrypted),
        family="valid edge cases",
    ),
    Case(
        "partially-encrypted-manifest",
        _layers_of(_skopeo_encrypted, lambda reg: layer(reg)),
        Sealed(_partially_encrypted),
        family="valid edge cases",
    ),
    Case(
        "every-layer-encrypted-by-someone-else",
        _layers_of(_skopeo_encrypted),
        Skip("already encrypted, not by regseal"),
    ),
    Case(
        "layer-typed-encrypted-without-ocicrypt-annotations",
        _fake_encrypted(_claims_encrypted({}), missing=(_PUBOPTS, _KEYS)),
        Error(ManifestError, ("no ocicrypt layer",)),
    ),
    Case(
        "fake-encrypted-layer-beside-a-plaintext-one",
        _fake_encrypted(
            lambda reg: layer(reg), _claims_encrypted({}), missing=(_PUBOPTS, _KEYS)
        ),
        Error(ManifestError, ("layer 1", "no ocicrypt layer")),
    ),
    Case(
        "encrypted-layer-with-keys-but-no-pubopts",
        _fake_encrypted(
            _claims_encrypted({"org.opencontainers.image.enc.keys.jwe": "eA=="}),
            missing=(_PUBOPTS,),
        ),
        Error(ManifestError, ("no ocicrypt layer",)),
    ),
    Case(
        "encrypted-layer-with-pubopts-but-no-key",
        _fake_encrypted(_claims_encrypted({_PUBOPTS: "e30="}), missing=(_KEYS,)),
        Error(ManifestError, ("no ocicrypt layer",)),
    ),
]


# -- artifacts -----------------------------------------------------------------------


def _cosign_signature(reg) -> Input:
    image = reg.registry.push_image(REPO, "1", [random_layer()])
    payload = json.dumps(
        {"critical": {"image": {"docker-manifest-digest": image.digest.value}}}
    ).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config(reg),
        "layers": [
            {
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                **blob(reg, payload),
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
            }
        ],
    }
    return tagged(reg, doc, tag=f"sha256-{image.digest.hex}.sig")


def _sigstore_bundle(reg) -> Input:
    image = reg.registry.push_image(REPO, "1", [random_layer()])
    empty = {"mediaType": "application/vnd.oci.empty.v1+json", **blob(reg, b"{}")}
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "config": empty,
        "layers": [
            {
                "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                **blob(reg, b'{"mediaType": "bundle"}'),
            }
        ],
        "subject": {
            "mediaType": OCI_MANIFEST,
            "digest": image.digest.value,
            "size": len(image.data),
        },
    }
    return tagged(reg, doc, tag=f"sha256-{image.digest.hex}")


def _helm_chart(reg) -> Input:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.cncf.helm.config.v1+json",
            **blob(reg, b'{"name":"app","version":"1.0.0"}'),
        },
        "layers": [
            {
                "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                **blob(reg, random_layer()),
            }
        ],
    }
    return tagged(reg, doc)


def _artifact(reg) -> Input:
    return tagged(
        reg,
        manifest_doc(reg, artifactType="application/vnd.example.sbom.v1+json"),
    )


def _attestation(reg, platform_child: dict) -> dict:
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1"}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config(reg),
        "layers": [
            {
                "mediaType": "application/vnd.in-toto+json",
                **blob(reg, statement),
                "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/v0.2"},
            }
        ],
    }
    data = dumps(doc)
    digest = put_raw(reg, data, None)
    return {
        "mediaType": OCI_MANIFEST,
        "digest": digest.value,
        "size": len(data),
        "annotations": {
            "vnd.docker.reference.digest": platform_child["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        },
        "platform": {"architecture": "unknown", "os": "unknown"},
    }


def _buildkit_index(reg) -> Input:
    amd, arm = child(reg, "amd64"), child(reg, "arm64")
    doc = index_doc([amd, arm, _attestation(reg, amd), _attestation(reg, arm)])
    return tagged(reg, doc)


def _attestations_kept(given: Input, sealed: dict) -> None:
    pushed = given.context["doc"]["manifests"]
    platforms, attestations = sealed["manifests"][:2], sealed["manifests"][2:]
    assert all(
        m["digest"] != p["digest"] for m, p in zip(platforms, pushed[:2], strict=True)
    )
    # Each attestation is kept as pushed, but names the sealed image that
    # replaced the plaintext one it describes.
    for kept, was, platform in zip(attestations, pushed[2:], platforms, strict=True):
        reference = "vnd.docker.reference.digest"
        assert kept["annotations"][reference] == platform["digest"]
        assert {**kept["annotations"], reference: was["annotations"][reference]} == (
            was["annotations"]
        )
        assert {k: v for k, v in kept.items() if k != "annotations"} == {
            k: v for k, v in was.items() if k != "annotations"
        }


ARTIFACT_CASES = [
    Case(
        "cosign-signature-tag",
        _cosign_signature,
        Skip("not an image manifest"),
        family="artifacts",
    ),
    Case(
        "sigstore-bundle-referrer",
        _sigstore_bundle,
        Skip("not an image manifest"),
        family="artifacts",
    ),
    Case("helm-chart", _helm_chart, Skip("not an image manifest"), family="artifacts"),
    Case(
        "oci-artifact-with-artifact-type",
        _artifact,
        Skip("not an image manifest"),
        family="artifacts",
    ),
    Case(
        "buildkit-attestations-in-an-index",
        _buildkit_index,
        Sealed(_attestations_kept),
        family="artifacts",
    ),
]


# -- indexes -------------------------------------------------------------------------


def _nested(depth: int) -> Callable[[Any], Input]:
    def build(reg) -> Input:
        descriptor = child(reg, "amd64")
        for _ in range(depth - 1):
            data = dumps(index_doc([descriptor]))
            digest = put_raw(reg, data, None)
            descriptor = {
                "mediaType": OCI_INDEX,
                "digest": digest.value,
                "size": len(data),
            }
        return tagged(reg, index_doc([descriptor]))

    return build


def _forged_cycle(reg) -> Input:
    # A real index cannot list itself (its digest would have to be inside
    # it); the nearest thing is a child key holding the parent's bytes.
    data = dumps(manifest_doc(reg))
    fake = put_raw(reg, data, None)
    parent = dumps(
        index_doc([{"mediaType": OCI_INDEX, "digest": fake.value, "size": 10}])
    )
    reg.store.put(reg.layout.blob_data(fake), parent)
    built = tagged(reg, parent)
    return Input(built.body, (fake.hex,), built.context)


def _missing_child(reg) -> Input:
    amd = child(reg, "amd64")
    reg.store.delete(reg.layout.revision_link(REPO, Digest.parse(amd["digest"])))
    built = tagged(reg, index_doc([amd, child(reg, "arm64")]))
    return Input(built.body, (amd["digest"],), built.context)


def _with_unknown_child(reg) -> Input:
    other = {
        "mediaType": "application/vnd.example.thing.v1+json",
        **blob(reg, b"thing"),
    }
    return tagged(reg, index_doc([child(reg, "amd64"), other]))


def _unknown_child_kept(given: Input, sealed: dict) -> None:
    assert sealed["manifests"][1] == given.context["doc"]["manifests"][1]


INDEX_CASES = [
    Case(
        "index-that-lists-itself",
        _forged_cycle,
        Error(ManifestError, ("does not match its digest",)),
    ),
    Case(
        "index-nested-ten-deep",
        lambda reg: Input(_nested(10)(reg).body, ("of team-a/app",)),
        Error(ManifestError, ("nested at most 4 deep",)),
    ),
    Case("index-nested-three-deep", _nested(3), Sealed(), family="valid edge cases"),
    Case(
        "index-child-without-revision-link",
        _missing_child,
        Error(ManifestError, ("no revision link",)),
    ),
    Case(
        "index-with-a-fake-encrypted-child",
        _fake_encrypted_child,
        Error(ManifestError, ("no ocicrypt layer",)),
    ),
    Case(
        "index-with-an-unknown-child-type",
        _with_unknown_child,
        Sealed(_unknown_child_kept),
        family="valid edge cases",
    ),
]

CASES = (
    EVENT_CASES
    + LINK_CASES
    + MANIFEST_CASES
    + LAYER_CASES
    + ARTIFACT_CASES
    + INDEX_CASES
)
