"""The distribution API client against Debian's docker-registry 2.8 on moto.

One registry per auth scheme: htpasswd basic auth, and token auth with the
local token service (ES256 JWTs the registry verifies against the service's
certificate).
"""

import json
import os

import pytest

from regseal.digest import Digest
from regseal.errors import RegistryAuthError, RegistryError, RegistryNotFoundError
from regseal.manifest import OCI_CONFIG, OCI_MANIFEST
from regseal.registryapi import RegistryClient
from regseal.registryauth import CredentialSource
from tests.support.auth_registry import KINDS, running_auth_registry

pytestmark = pytest.mark.e2e

ACCOUNT = {
    "REGSEAL_REGISTRY_USERNAME": "testing",
    "REGSEAL_REGISTRY_PASSWORD": "testing",
}
CHUNK = 5 * 1024 * 1024


@pytest.fixture(scope="module", params=KINDS)
def registry(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"registry-{request.param}")
    with running_auth_registry(request.param, workdir) as running:
        yield request.param, running.url, running.tokens


def client(url, env=ACCOUNT, **options):
    return RegistryClient(url, CredentialSource(env=env), **options)


def push_image(api, repository, tag, layer):
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    api.push_blob(repository, config, Digest.of(config))
    upload = api.start_upload(repository)
    for start in range(0, len(layer), CHUNK):
        upload.write_chunk(layer[start : start + CHUNK])
    upload.complete(Digest.of(layer))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": Digest.of(config).value,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest.of(layer).value,
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return api.put_manifest(repository, tag, manifest, OCI_MANIFEST), upload


def test_chunked_push_then_pull_and_listings(registry):
    kind, url, tokens = registry
    api = client(url, page_size=1)
    layer = os.urandom(2 * CHUNK + 1234)

    digest, upload = push_image(api, f"team-a/{kind}", "1.0", layer)
    api.put_manifest(
        f"team-a/{kind}",
        "latest",
        api.get_manifest(f"team-a/{kind}", "1.0").data,
        OCI_MANIFEST,
    )

    assert upload.chunks == 3
    assert api.head_blob(f"team-a/{kind}", Digest.of(layer)) == len(layer)
    info = api.head_manifest(f"team-a/{kind}", "1.0")
    assert (info.digest, info.media_type) == (digest, OCI_MANIFEST)
    assert api.tags(f"team-a/{kind}") == ["1.0", "latest"]  # two pages of one
    assert f"team-a/{kind}" in api.catalog()
    if tokens is not None:
        # One token per scope (pull, pull+push, catalog), reused until expiry.
        assert api.auth.tokens_fetched <= 4 < api.requests


def test_mount_and_blob_delete(registry):
    kind, url, _ = registry
    api = client(url)
    layer = os.urandom(1000)
    push_image(api, f"team-m/{kind}", "1", layer)

    assert api.mount_blob(f"team-n/{kind}", Digest.of(layer), f"team-m/{kind}")
    assert api.head_blob(f"team-n/{kind}", Digest.of(layer)) == 1000
    assert api.delete_blob(f"team-n/{kind}", Digest.of(layer)) is True
    assert api.head_blob(f"team-n/{kind}", Digest.of(layer)) is None
    assert api.head_blob(f"team-m/{kind}", Digest.of(layer)) == 1000


def test_manifest_delete_by_digest_answers_404_afterwards(registry):
    kind, url, _ = registry
    api = client(url)
    digest, _ = push_image(api, f"team-d/{kind}", "1.0", os.urandom(500))
    other, _ = push_image(api, f"team-d/{kind}", "2.0", os.urandom(500))

    assert api.delete_manifest(f"team-d/{kind}", digest) is True

    with pytest.raises(RegistryNotFoundError, match="404 MANIFEST_UNKNOWN"):
        api.get_manifest(f"team-d/{kind}", digest.value)
    assert api.delete_manifest(f"team-d/{kind}", digest) is False
    # distribution drops the tags that pointed at it, and only those.
    assert api.tags(f"team-d/{kind}") == ["2.0"]
    assert api.head_manifest(f"team-d/{kind}", "2.0").digest == other


def test_registry_errors_carry_distribution_codes(registry):
    kind, url, _ = registry
    api = client(url)

    upload = api.start_upload(f"team-e/{kind}")
    upload.write_chunk(b"abc")

    with pytest.raises(RegistryError) as info:
        upload.complete(Digest.of(b"abd"))

    assert info.value.status == 400
    assert info.value.codes == ("DIGEST_INVALID",)
    assert f"of team-e/{kind}: expected HTTP 201, got 400 DIGEST_INVALID" in str(
        info.value
    )


def test_wrong_password_and_no_account_are_auth_errors(registry):
    _, url, _ = registry

    with pytest.raises(RegistryAuthError, match="refused"):
        client(url, {**ACCOUNT, "REGSEAL_REGISTRY_PASSWORD": "wrong"}).tags("a/b")
    with pytest.raises(RegistryAuthError):
        client(url, {}).head_manifest("a/b", "1")
