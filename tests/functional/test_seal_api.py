"""The seal in registry-API mode: push, deliver the event, check via the API.

The registry is the fake distribution API in front of the moto bucket; the
seal gets its own S3 client, whose every write is recorded, and a store that
refuses writes under the registry root, as the wiring gives it in api mode.
"""

from __future__ import annotations

import json
import os
import time

import boto3
import pytest

from regseal import ocicrypt
from regseal.apiwriteback import ApiWriteBack
from regseal.digest import Digest
from regseal.errors import IntegrityError, RegistryConflictError, StorageError
from regseal.events import Action, ObjectEvent
from regseal.layerstream import StreamSettings
from regseal.manifest import ANNOTATION_PLAINTEXT, OCI_INDEX, OCI_MANIFEST
from regseal.registryapi import RegistryClient
from regseal.registryauth import CredentialSource
from regseal.seal import Outcome, Sealer
from regseal.storage import ReadOnlyPrefixStore
from regseal.writeback import StorageWriteBack
from tests.functional.conftest import BUCKET
from tests.support import registryapi as fake
from tests.support.crypto import open_layer
from tests.support.registry import random_layer, tar_gz

PART = 5 * 1024 * 1024
WRITES = {
    "PutObject",
    "DeleteObject",
    "DeleteObjects",
    "CopyObject",
    "UploadPartCopy",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
}


class RecordingTargets:
    """A TargetLog that remembers what the seal recorded, in order."""

    def __init__(self):
        self.recorded: list[tuple[str, str, str, Digest]] = []

    def record(self, team, repository, tag, manifest, custom, *, newer_only=False):
        entry = (team, repository, tag, Digest.of(manifest))
        changed = entry not in self.recorded
        if changed:
            self.recorded.append(entry)
        return changed

    def forget(self, team, repository, tag):
        return False


class ApiStack:
    def __init__(self, stack, api):
        self.stack = stack
        self.api = api
        self.layout = stack.sealer.layout
        self.targets = RecordingTargets()
        self.later = 0.0  # seconds added to the seal's clock
        self.seal_writes: list[tuple[str, str]] = []
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.meta.events.register("provide-client-params.s3", self._record)
        self.store = ReadOnlyPrefixStore(s3, BUCKET, (self.layout.base,))
        self.client = RegistryClient(
            api.url,
            CredentialSource(
                env={
                    "REGSEAL_REGISTRY_USERNAME": fake.USERNAME,
                    "REGSEAL_REGISTRY_PASSWORD": fake.PASSWORD,
                }
            ),
        )
        self.writer = ApiWriteBack(
            self.store, self.client, StreamSettings(PART, 2), layout=self.layout
        )
        self.sealer = Sealer(
            self.store,
            stack.sealer.settings,
            stack.sealer.policies,
            stack.sealer.kms,
            clock=lambda: time.time() + self.later,
            writer=self.writer,
            targets=self.targets,
        )

    def _record(self, params, model, **_):
        if model.name in WRITES:
            self.seal_writes.append((model.name, params.get("Key", "")))

    def seal_tag(self, repository, tag):
        key = self.layout.tag_link(repository, tag)
        return self.sealer.handle(ObjectEvent(BUCKET, key, Action.CREATED))

    def seal_revision(self, repository, digest):
        key = self.layout.revision_link(repository, digest)
        return self.sealer.handle(ObjectEvent(BUCKET, key, Action.CREATED))

    def sealed_manifest(self, repository, reference):
        return json.loads(self.client.get_manifest(repository, reference).data)

    def blob(self, digest):
        return self.stack.store.get(self.layout.blob_data(Digest.parse(digest))).data


@pytest.fixture
def api_stack(stack):
    with fake.FakeRegistryApi(stack.registry, auth="bearer") as api:
        yield ApiStack(stack, api)


def assert_no_registry_storage_writes(api_stack):
    base = api_stack.layout.base
    assert api_stack.seal_writes  # the seal did write its own records
    assert [w for w in api_stack.seal_writes if w[1].startswith(base)] == []
    assert {key.split("/", 1)[0] for _, key in api_stack.seal_writes} == {"regseal"}


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker-schema2"])
def test_api_mode_seals_through_the_api_and_writes_no_registry_storage(
    api_stack, docker
):
    big = tar_gz({"big.bin": os.urandom(PART + PART // 2)})  # two chunks
    layers = [random_layer(3000), big]
    pushed = api_stack.stack.registry.push_image(
        "team-a/app", "1.0", layers, docker=docker
    )

    result = api_stack.seal_tag("team-a/app", "1.0")

    assert result.outcome is Outcome.SEALED
    client = api_stack.client
    tagged = client.head_manifest("team-a/app", "1.0")
    assert tagged.digest.value == result.sealed_digest != pushed.digest.value
    assert tagged.media_type == OCI_MANIFEST
    doc = api_stack.sealed_manifest("team-a/app", "1.0")
    assert doc["annotations"][ANNOTATION_PLAINTEXT] == pushed.digest.value
    for descriptor, plaintext in zip(doc["layers"], layers, strict=True):
        assert descriptor["mediaType"].endswith("+encrypted")
        ciphertext = api_stack.blob(descriptor["digest"])
        for key in api_stack.stack.private_keys:
            assert open_layer(descriptor, ciphertext, key) == plaintext
        assert client.head_blob("team-a/app", Digest.parse(descriptor["digest"]))
    # The plaintext is gone through the API; the config is still served.
    assert client.head_manifest("team-a/app", pushed.digest.value) is None
    for digest in pushed.layers:
        assert client.head_blob("team-a/app", digest) is None
    assert client.head_blob("team-a/app", pushed.config) is not None
    assert client.tags("team-a/app") == ["1.0"]
    assert client.catalog() == ["team-a/app"]
    # The big layer went as two ordered chunks of one part, the small one whole.
    patches = api_stack.api.requests("PATCH")
    assert [p.headers["Content-Range"] for p in patches] == [
        f"0-{PART - 1}",
        f"{PART}-{len(big) - 1}",
    ]
    assert_no_registry_storage_writes(api_stack)


def test_redelivery_after_an_api_seal_changes_nothing(api_stack):
    api_stack.stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    api_stack.seal_tag("team-a/app", "1.0")
    writes = [r for r in api_stack.api.log if r.method not in {"GET", "HEAD"}]
    snapshot = api_stack.stack.registry.snapshot()

    again = api_stack.seal_tag("team-a/app", "1.0")

    assert (again.outcome, again.reason) == (Outcome.SKIPPED, "already sealed")
    assert [r for r in api_stack.api.log if r.method not in {"GET", "HEAD"}] == writes
    assert api_stack.stack.registry.snapshot() == snapshot


def test_tag_moved_before_the_push_is_not_rolled_back(api_stack):
    registry = api_stack.stack.registry
    old = registry.push_image("team-a/app", "1.0", [random_layer()])
    newer = []

    def concurrent_push(repository, reference):
        if reference.startswith("sha256:") and not newer:
            newer.append(registry.push_image("team-a/app", "1.0", [random_layer()]))

    api_stack.api.hooks["PUT manifest"] = concurrent_push

    result = api_stack.seal_tag("team-a/app", "1.0")

    assert result.outcome is Outcome.SUPERSEDED
    client = api_stack.client
    assert client.head_manifest("team-a/app", "1.0").digest == newer[0].digest
    assert api_stack.api.requests("PUT", "/manifests/1.0") == []
    # The older push is sealed (by digest) and, untagged now, no event
    # would come back for it: its plaintext is hidden right away.
    assert client.head_manifest("team-a/app", result.sealed_digest) is not None
    assert client.head_manifest("team-a/app", old.digest.value) is None
    assert client.head_blob("team-a/app", old.layers[0]) is None


def test_tag_moved_right_after_the_push_is_reported_and_hides_the_old_plaintext(
    api_stack,
):
    registry = api_stack.stack.registry
    old = registry.push_image("team-a/app", "1.0", [random_layer()])
    newer = []

    def push_after(repository, reference):
        if reference == "1.0" and not newer:
            newer.append(registry.push_image("team-a/app", "1.0", [random_layer()]))

    api_stack.api.hooks["after PUT manifest"] = push_after

    result = api_stack.seal_tag("team-a/app", "1.0")

    assert result.outcome is Outcome.SUPERSEDED
    client = api_stack.client
    assert client.head_manifest("team-a/app", "1.0").digest == newer[0].digest
    assert client.head_manifest("team-a/app", result.sealed_digest) is not None
    assert client.head_manifest("team-a/app", old.digest.value) is None
    # The newer push is untouched: its own event seals it.
    assert client.head_manifest("team-a/app", newer[0].digest.value) is not None


def test_tag_that_only_the_api_knows_keeps_its_manifest_and_layers(api_stack):
    # Harbor keeps tags in its database (2.15 writes none to storage): the
    # registry's view, not storage's, decides what may be deleted.
    registry = api_stack.stack.registry
    pushed = registry.push_image("team-a/app", "1.0", [random_layer()])
    api_stack.api.extra_tags["team-a/app", "stable"] = pushed.digest

    with pytest.raises(RegistryConflictError, match="refusing to unlink blob"):
        api_stack.seal_tag("team-a/app", "1.0")

    client = api_stack.client
    assert client.head_manifest("team-a/app", "1.0").digest != pushed.digest
    assert client.head_manifest("team-a/app", "stable").digest == pushed.digest
    assert client.head_blob("team-a/app", pushed.layers[0]) is not None
    assert api_stack.api.requests("DELETE") == []


def test_manifest_an_api_tag_resolves_to_is_never_deleted(api_stack):
    pushed = api_stack.stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    api_stack.api.extra_tags["team-a/app", "stable"] = pushed.digest

    with pytest.raises(RegistryConflictError) as info:
        api_stack.writer.unlink_manifest("team-a/app", pushed.digest, ["1.0"])

    assert "but tags '1.0', 'stable' resolve to it" in str(info.value)
    assert api_stack.client.head_manifest("team-a/app", pushed.digest.value)


def test_api_mode_seals_an_index_children_first(api_stack):
    registry = api_stack.stack.registry
    pushed = registry.push_index(
        "team-a/multi",
        "1.0",
        [("amd64", [random_layer()]), ("arm64", [random_layer()])],
    )

    result = api_stack.seal_tag("team-a/multi", "1.0")

    assert result.outcome is Outcome.SEALED
    client = api_stack.client
    index = api_stack.sealed_manifest("team-a/multi", "1.0")
    assert index["mediaType"] == OCI_INDEX
    for child, plaintext in zip(index["manifests"], pushed.children, strict=True):
        sealed = api_stack.sealed_manifest("team-a/multi", child["digest"])
        assert sealed["layers"][0]["mediaType"].endswith("+encrypted")
        assert client.head_manifest("team-a/multi", plaintext.digest.value) is None
    assert client.head_manifest("team-a/multi", pushed.digest.value) is None
    assert_no_registry_storage_writes(api_stack)


def test_read_only_prefix_store_refuses_a_storage_write_back(stack):
    layout = stack.sealer.layout
    guarded = ReadOnlyPrefixStore(stack.s3, BUCKET, (layout.base,))
    writer = StorageWriteBack(guarded, layout, "regseal/staging/", StreamSettings())
    data = b'{"schemaVersion": 2}'

    with pytest.raises(StorageError, match="PutObject refused: expected no writes"):
        writer.write_manifest("team-a/app", Digest.of(data), data, OCI_MANIFEST)
    assert not stack.store.exists(layout.blob_data(Digest.of(data)))
    guarded.put("regseal/own-record", b"{}")
    assert stack.store.exists("regseal/own-record")


@pytest.mark.parametrize("size", [2000, PART + 1000], ids=["whole", "chunked"])
def test_layer_whose_blob_does_not_match_uploads_nothing(api_stack, size):
    registry = api_stack.stack.registry
    pushed = registry.push_image("team-a/app", "1.0", [tar_gz({"f": os.urandom(size)})])
    # Same size, other content: the plaintext digest check at the end fails.
    blob_key = api_stack.layout.blob_data(pushed.layers[0])
    original = api_stack.stack.store.get(blob_key).data
    api_stack.stack.store.put(blob_key, bytes(reversed(original)))

    with pytest.raises(IntegrityError, match="encrypted plaintext has digest"):
        api_stack.seal_tag("team-a/app", "1.0")

    assert api_stack.api.requests("PUT", "/blobs/uploads/") == []
    assert api_stack.api.requests("PUT", "/manifests/") == []
    assert api_stack.api._uploads == {}  # a chunked session was cancelled
    assert api_stack.client.head_manifest("team-a/app", "1.0").digest == pushed.digest


@pytest.mark.parametrize("size", [2000, PART + 1000], ids=["whole", "chunked"])
def test_trusting_api_seal_uploads_a_replaced_layer_that_fails_to_open(api_stack, size):
    registry = api_stack.stack.registry
    pushed = registry.push_image("team-a/app", "1.0", [tar_gz({"f": os.urandom(size)})])
    blob_key = api_stack.layout.blob_data(pushed.layers[0])
    original = api_stack.stack.store.get(blob_key).data
    api_stack.stack.store.put(blob_key, bytes(reversed(original)))
    api_stack.writer.stream = StreamSettings(PART, 2, verify_plaintext=False)

    api_stack.seal_tag("team-a/app", "1.0")

    [layer] = api_stack.sealed_manifest("team-a/app", "1.0")["layers"]
    ciphertext = api_stack.blob(layer["digest"])
    assert Digest.of(ciphertext).value == layer["digest"]
    with pytest.raises(IntegrityError):
        open_layer(layer, ciphertext, api_stack.stack.private_keys[0])


def test_small_layer_is_uploaded_whole_under_its_ciphertext_digest(api_stack):
    pushed = api_stack.stack.registry.push_image("team-a/app", "1.0", [random_layer()])

    api_stack.seal_tag("team-a/app", "1.0")

    [layer] = api_stack.sealed_manifest("team-a/app", "1.0")["layers"]
    ciphertext = api_stack.blob(layer["digest"])
    [put] = api_stack.api.requests("PUT", "/blobs/uploads/")
    assert "digest=" + layer["digest"].replace(":", "%3A") in put.path
    assert put.body_size == layer["size"] == len(ciphertext)
    assert Digest.of(ciphertext).value == layer["digest"] != pushed.layers[0].value
    assert api_stack.api.requests("PATCH") == []
    assert ocicrypt.ANNOTATION_PUBOPTS in layer["annotations"]


def test_registry_view_is_listed_once_per_hiding_pass(api_stack):
    api_stack.stack.registry.push_image(
        "team-a/app", "1.0", [random_layer(), random_layer(), random_layer()]
    )

    api_stack.seal_tag("team-a/app", "1.0")

    # Three layer unlinks and one manifest delete share one listing.
    assert len(api_stack.api.requests("DELETE", "/blobs/")) == 3
    assert len(api_stack.api.requests("DELETE", "/manifests/")) == 1
    listings = api_stack.api.requests("GET", "/tags/list")
    assert sum("Authorization" in r.headers for r in listings) == 1


def test_registry_view_expires_and_is_forgotten_on_writes(api_stack):
    pushed = api_stack.stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    now = [0.0]
    writer = ApiWriteBack(
        api_stack.store,
        api_stack.client,
        StreamSettings(PART, 2),
        lambda: now[0],
        layout=api_stack.layout,
    )

    def listings():
        # Answered listings only (a first request may collect a 401).
        requests = api_stack.api.requests("GET", "/tags/list")
        return sum("Authorization" in r.headers for r in requests)

    first = writer.tagged_view("team-a/app")
    writer._view("team-a/app")
    writer._view("team-a/app")
    assert listings() == 2  # tagged_view itself, then one cached _view
    now[0] = 11.0
    writer._view("team-a/app")
    assert listings() == 3
    writer.write_manifest("team-a/app", pushed.digest, pushed.data, OCI_MANIFEST)
    writer._view("team-a/app")
    assert listings() == 4
    assert first.tags == {"1.0": pushed.digest}
    assert pushed.layers[0] in first.used
    assert pushed.config in first.used
