"""The distribution API client against the fake API (basic, bearer, open)."""

from __future__ import annotations

import json
import logging
import os

import boto3
import pytest

from regseal.digest import Digest
from regseal.errors import (
    RegistryAuthError,
    RegistryError,
    RegistryNotFoundError,
)
from regseal.manifest import OCI_MANIFEST
from regseal.registryapi import RegistryClient
from regseal.registryauth import CredentialSource
from tests.support import registryapi as fake
from tests.support.registry import random_layer

ACCOUNT = {
    "REGSEAL_REGISTRY_USERNAME": fake.USERNAME,
    "REGSEAL_REGISTRY_PASSWORD": fake.PASSWORD,
}


@pytest.fixture(params=["none", "basic", "bearer"])
def api(request, stack):
    with fake.FakeRegistryApi(stack.registry, auth=request.param) as served:
        yield served


def client_for(api, env=ACCOUNT):
    return RegistryClient(api.url, CredentialSource(env=env))


def test_manifest_head_get_put_delete_by_tag_and_digest(api, stack):
    pushed = stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    client = client_for(api)

    info = client.head_manifest("team-a/app", "1.0")
    got = client.get_manifest("team-a/app", pushed.digest.value)
    again = client.put_manifest("team-a/app", "copy", pushed.data, OCI_MANIFEST)

    assert (info.digest, info.media_type, info.size) == (
        pushed.digest,
        OCI_MANIFEST,
        len(pushed.data),
    )
    assert (got.digest, got.data) == (pushed.digest, pushed.data)
    assert again == pushed.digest
    assert sorted(client.tags("team-a/app")) == ["1.0", "copy"]
    accept = api.requests("HEAD", "/manifests/")[-1].headers["Accept"]
    assert "application/vnd.oci.image.index.v1+json" in accept
    assert "application/vnd.docker.distribution.manifest.v2+json" in accept

    assert client.delete_manifest("team-a/app", pushed.digest) is True
    assert client.head_manifest("team-a/app", pushed.digest.value) is None
    assert client.delete_manifest("team-a/app", pushed.digest) is False
    # As in distribution, the tags that pointed at it are gone with it.
    assert client.tags("team-a/app") == []


def test_small_blob_goes_in_one_put_with_the_digest(api):
    client = client_for(api)
    data = os.urandom(3000)

    client.push_blob("team-a/app", data, Digest.of(data))

    assert client.head_blob("team-a/app", Digest.of(data)) == 3000
    assert api.requests("PATCH") == []
    [put] = api.requests("PUT", "/blobs/uploads/")
    assert f"digest={Digest.of(data).value.replace(':', '%3A')}" in put.path
    assert put.body_size == 3000


def test_chunked_upload_sends_contiguous_ranges_and_the_digest_last(api):
    client = client_for(api)
    data = os.urandom(250_000)
    upload = client.start_upload("team-a/app")

    for start in range(0, len(data), 100_000):
        upload.write_chunk(data[start : start + 100_000])
    upload.complete(Digest.of(data))

    ranges = [r.headers["Content-Range"] for r in api.requests("PATCH")]
    assert ranges == ["0-99999", "100000-199999", "200000-249999"]
    assert api.requests("PUT", "/blobs/uploads/")[0].body_size == 0
    assert client.head_blob("team-a/app", Digest.of(data)) == 250_000
    # Each request used the Location the previous answer named (the fake
    # refuses a stale _state, as distribution does).
    states = [r.path.split("_state=")[1] for r in api.requests("PATCH")]
    assert len(set(states)) == 3


def test_wrong_digest_at_the_end_is_refused_with_the_registry_code(api):
    client = client_for(api)
    upload = client.start_upload("team-a/app")
    upload.write_chunk(b"abc")

    with pytest.raises(RegistryError, match="DIGEST_INVALID") as info:
        upload.complete(Digest.of(b"abd"))
    assert info.value.status == 400
    assert info.value.codes == ("DIGEST_INVALID",)


def test_blob_delete_unlinks_it_from_the_repository_only(api, stack):
    pushed = stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    stack.registry.put_blob(
        "team-b/app",
        stack.store.get(stack.registry.layout.blob_data(pushed.layers[0])).data,
    )
    client = client_for(api)

    assert client.delete_blob("team-a/app", pushed.layers[0]) is True
    assert client.head_blob("team-a/app", pushed.layers[0]) is None
    assert client.head_blob("team-b/app", pushed.layers[0]) is not None
    assert client.delete_blob("team-a/app", pushed.layers[0]) is False


def test_cross_repository_mount(api, stack):
    pushed = stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    client = client_for(api)

    assert client.mount_blob("team-c/app", pushed.layers[0], "team-a/app") is True
    assert client.head_blob("team-c/app", pushed.layers[0]) is not None
    # Unknown in the source: the registry opens an upload instead, cancelled.
    missing = Digest.of(b"nowhere")
    assert client.mount_blob("team-c/app", missing, "team-a/app") is False
    assert api.requests("DELETE", "/blobs/uploads/")


def test_tags_and_catalog_follow_pagination(stack):
    for tag in ["a", "b", "c", "d", "e"]:
        stack.registry.push_image("team-a/app", tag, [random_layer(100)])
    stack.registry.push_image("team-b/app", "1", [random_layer(100)])
    with fake.FakeRegistryApi(stack.registry, auth="bearer") as api:
        client = RegistryClient(api.url, CredentialSource(env=ACCOUNT), page_size=2)

        assert client.tags("team-a/app") == ["a", "b", "c", "d", "e"]
        assert client.catalog() == ["team-a/app", "team-b/app"]
        assert len(api.requests("GET", "/tags/list")) >= 3


def test_missing_manifest_error_names_registry_repository_and_code(api):
    client = client_for(api)

    with pytest.raises(RegistryNotFoundError) as info:
        client.get_manifest("team-a/app", "nope")

    assert str(info.value) == (
        f"registry {api.name}: GET manifest nope of team-a/app: expected HTTP 200, "
        "got 404 MANIFEST_UNKNOWN: manifest unknown"
    )


def test_manifest_with_unlinked_blob_is_refused(api):
    client = client_for(api)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "x", "digest": Digest.of(b"c").value, "size": 1},
        "layers": [],
    }

    with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN"):
        client.put_manifest("team-a/app", "1.0", json.dumps(doc).encode(), OCI_MANIFEST)


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_wrong_password_is_an_auth_error(stack, auth):
    with fake.FakeRegistryApi(stack.registry, auth=auth) as api:
        client = client_for(api, {**ACCOUNT, "REGSEAL_REGISTRY_PASSWORD": "wrong"})

        with pytest.raises(RegistryAuthError, match="refused") as info:
            client.tags("team-a/app")
        assert info.value.status == 401


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_no_credentials_for_a_closed_registry_is_an_auth_error(stack, auth):
    with (
        fake.FakeRegistryApi(stack.registry, auth=auth) as api,
        pytest.raises(RegistryAuthError),
    ):
        client_for(api, {}).head_manifest("team-a/app", "1.0")


def test_bearer_tokens_are_reused_per_scope_and_renewed_when_refused(stack):
    stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    with fake.FakeRegistryApi(stack.registry, auth="bearer") as api:
        client = client_for(api)
        for _ in range(3):
            client.head_manifest("team-a/app", "1.0")
        client.tags("team-a/app")
        assert api.tokens_issued == 1  # pull covers HEAD and the listing
        assert len(api.requests("HEAD")) == 4  # one 401, then three with a token

        api.expire_tokens()
        assert client.head_manifest("team-a/app", "1.0") is not None
        assert api.tokens_issued == 2


def test_credentials_and_tokens_never_reach_the_logs(stack, caplog):
    caplog.set_level(logging.DEBUG)
    stack.registry.push_image("team-a/app", "1.0", [random_layer()])
    with fake.FakeRegistryApi(stack.registry, auth="bearer") as api:
        client = client_for(api)
        client.head_manifest("team-a/app", "1.0")
        client.push_blob("team-a/app", b"x", Digest.of(b"x"))
        tokens = list(api._grants)

    assert tokens
    assert caplog.records  # the client and urllib3 did log at debug
    for token in tokens:
        assert token not in caplog.text
    assert "dGVzdGluZzp0ZXN0aW5n" not in caplog.text  # base64 of testing:testing


def test_unreachable_registry_is_a_registry_error():
    client = RegistryClient("http://127.0.0.1:9", CredentialSource(env={}), timeout=2)

    with pytest.raises(RegistryError, match=r"registry 127\.0\.0\.1:9: HEAD manifest"):
        client.head_manifest("team-a/app", "1.0")


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:5000", "http://"])
def test_registry_url_must_be_http(url):
    with pytest.raises(RegistryError, match="expected a registry URL"):
        RegistryClient(url)


def test_credentials_from_secrets_manager_and_ssm(aws):
    secret = {"username": "robot$team-a+sealer", "password": "pw-1"}
    boto3.client("secretsmanager").create_secret(
        Name="regseal/registry", SecretString=json.dumps(secret)
    )
    boto3.client("ssm").put_parameter(
        Name="/regseal/registry", Value=json.dumps(secret), Type="SecureString"
    )

    from_secret = CredentialSource("secretsmanager:regseal/registry").get()
    from_parameter = CredentialSource("ssm:/regseal/registry").get()

    assert from_secret == from_parameter
    assert (from_secret.username, from_secret.password) == (
        "robot$team-a+sealer",
        "pw-1",
    )


def test_missing_secret_is_a_credentials_error_naming_it(aws):
    from regseal.registryauth import CredentialsError

    with pytest.raises(CredentialsError, match="secretsmanager:regseal/absent"):
        CredentialSource("secretsmanager:regseal/absent").get()
