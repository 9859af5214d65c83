"""The local stack's tag front, in front of the fake registry API.

Pushes by tag through the front reach the registry by digest, so storage
gets no tag link; the tag is served, listed and dropped by the front, and
every other request (blob uploads, auth challenges) passes through.
"""

from __future__ import annotations

import http.client
import json

import pytest

from regseal.digest import Digest
from regseal.errors import RegistryAuthError
from regseal.local.tagfront import TagFront
from regseal.manifest import OCI_MANIFEST
from regseal.registryapi import RegistryClient
from regseal.registryauth import CredentialSource
from tests.support import registryapi as fake
from tests.support.registry import random_layer

REPO = "team-a/app"


@pytest.fixture
def front(stack):
    with fake.FakeRegistryApi(stack.registry, auth="bearer") as api:
        front = TagFront(api.name)
        front.start()
        try:
            yield front, api, stack
        finally:
            front.stop()


def client_for(front, password=fake.PASSWORD):
    return RegistryClient(
        f"http://{front.address}",
        CredentialSource(
            env={
                "REGSEAL_REGISTRY_USERNAME": fake.USERNAME,
                "REGSEAL_REGISTRY_PASSWORD": password,
            }
        ),
    )


def push_through(client, stack, tag):
    """Upload an image's blobs and push its manifest by tag through the front."""
    data, config, layers = stack.registry.image_manifest(REPO, [random_layer()])
    # image_manifest wrote the blobs to storage; push them again through the
    # API, as a client would.
    for digest in (config, *layers):
        blob = stack.store.get(stack.registry.layout.blob_data(digest)).data
        client.push_blob(REPO, blob, digest)
    return client.put_manifest(REPO, tag, data, OCI_MANIFEST), data


def test_push_by_tag_stores_no_tag_link_and_the_front_serves_the_tag(front):
    front, api, stack = front
    client = client_for(front)

    digest, data = push_through(client, stack, "1.0")

    layout = stack.registry.layout
    assert digest == Digest.of(data)
    assert list(stack.store.list_keys(layout.tags_prefix(REPO))) == []
    assert stack.store.exists(layout.revision_link(REPO, digest))
    assert api.requests("PUT", "/manifests/1.0") == []
    assert len(api.requests("PUT", f"/manifests/{digest.value}")) >= 1
    assert client.head_manifest(REPO, "1.0").digest == digest
    assert client.get_manifest(REPO, "1.0").data == data
    assert client.tags(REPO) == ["1.0"]
    assert front.tags(REPO) == {"1.0": digest.value}
    assert client.head_manifest(REPO, "2.0") is None


def test_deleting_the_manifest_drops_its_tags(front):
    front, _, stack = front
    client = client_for(front)
    digest, _ = push_through(client, stack, "1.0")
    other, _ = push_through(client, stack, "2.0")

    assert client.delete_manifest(REPO, digest)

    assert client.tags(REPO) == ["2.0"]
    assert client.head_manifest(REPO, "1.0") is None
    assert client.head_manifest(REPO, "2.0").digest == other


def test_a_chunked_upload_passes_through_byte_for_byte(front):
    front, _, stack = front
    client = client_for(front)
    blob = random_layer(300_000)
    digest = Digest.of(blob)
    upload = client.start_upload(REPO)
    upload.write_chunk(blob[:100_000])
    upload.write_chunk(blob[100_000:])
    upload.complete(digest)

    assert stack.store.get(stack.registry.layout.blob_data(digest)).data == blob
    assert client.head_blob(REPO, digest) is not None


def test_chunked_transfer_encoding_of_a_request_body_is_decoded(front):
    front, api, _ = front
    api.auth = "none"
    connection = http.client.HTTPConnection(front.address, timeout=10)
    body = json.dumps({"schemaVersion": 2}).encode()
    connection.putrequest("PUT", f"/v2/{REPO}/manifests/1.0")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.putheader("Content-Type", OCI_MANIFEST)
    connection.endheaders()
    for start in range(0, len(body), 5):
        piece = body[start : start + 5]
        connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    connection.send(b"0\r\n\r\n")
    reply = connection.getresponse()
    reply.read()
    connection.close()

    assert reply.status == 201
    assert api.requests("PUT", f"/manifests/{Digest.of(body).value}")[0].body_size == (
        len(body)
    )
    assert front.tags(REPO) == {"1.0": Digest.of(body).value}


def test_the_registry_still_decides_who_may_do_what(front):
    front, _, stack = front
    push_through(client_for(front), stack, "1.0")

    with pytest.raises(RegistryAuthError):
        client_for(front, password="wrong").tags(REPO)
    with pytest.raises(RegistryAuthError):
        client_for(front, password="wrong").head_manifest(REPO, "1.0")
    connection = http.client.HTTPConnection(front.address, timeout=10)
    connection.request("GET", f"/v2/{REPO}/tags/list")
    reply = connection.getresponse()
    reply.read()
    connection.close()
    assert reply.status == 401
    assert reply.getheader("WWW-Authenticate", "").startswith("Bearer realm=")
