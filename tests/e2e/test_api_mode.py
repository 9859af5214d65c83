"""End to end in registry-API mode: the local stack with ``--write-back api``.

skopeo pushes to a registry that requires an account (htpasswd basic auth,
or token auth against the stack's token service); the real seal function,
with its S3 writes recorded, seals through the registry's API; skopeo pulls
and decrypts with the stack's JWE key; the registry's own API shows the
plaintext gone and a consistent view.
"""

import json
import subprocess
import time
from pathlib import Path

import boto3
import pytest

from regseal.digest import Digest
from regseal.errors import RegistryAuthError, RegistryNotFoundError
from regseal.layout import RegistryLayout
from regseal.local.sample import write_sample_image
from regseal.manifest import ANNOTATION_PLAINTEXT
from regseal.registryapi import RegistryClient
from regseal.registryauth import CredentialSource

pytestmark = pytest.mark.e2e

RECORDING_HANDLER = Path(__file__).parent / "fixtures" / "seal_recording.py"
REPOSITORY = "e2e/api"
SEAL_TIMEOUT = 60.0


@pytest.fixture(scope="module", params=["htpasswd", "token"])
def api_stack(request, tmp_path_factory):
    from tests.e2e.conftest import running_stack

    directory = tmp_path_factory.mktemp(f"api-{request.param}")
    write_log = directory / "seal-writes.jsonl"
    with running_stack(
        directory,
        handler=RECORDING_HANDLER,
        options=("--write-back", "api", "--registry-auth", request.param),
        # Small parts, so that the sample's big layer goes up in chunks.
        env={"REGSEAL_PART_SIZE_MIB": "5", "REGSEAL_TEST_WRITE_LOG": str(write_log)},
    ) as stack:
        yield stack, write_log


def api_client(state, password=None):
    return RegistryClient(
        f"http://{state.registry}",
        CredentialSource(
            env={
                "REGSEAL_REGISTRY_USERNAME": state.registry_username,
                "REGSEAL_REGISTRY_PASSWORD": password or state.registry_password,
            }
        ),
    )


def skopeo(*args):
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=300, check=False
    )


def wait_for(condition, message):
    deadline = time.monotonic() + SEAL_TIMEOUT
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(message)


def read_layout_manifest(directory):
    index = json.loads((directory / "index.json").read_text())
    digest = Digest.parse(index["manifests"][0]["digest"])
    return json.loads((directory / "blobs" / "sha256" / digest.hex).read_bytes())


def push_until_sealed(stack, tmp_path, repository, tag, *, big_layer_bytes):
    """Push a sample image with skopeo and the stack's account; wait until the
    tag serves the sealed manifest and the plaintext is no longer served.

    Returns:
        The API client, the sealed manifest's document, the plaintext digest.
    """
    state = stack.state
    creds = f"{state.registry_username}:{state.registry_password}"
    write_sample_image(tmp_path / "img", big_layer_bytes=big_layer_bytes)
    pushed = skopeo(
        "copy",
        "--quiet",
        "--dest-creds",
        creds,
        "--dest-tls-verify=false",
        f"oci:{tmp_path / 'img'}:latest",
        f"docker://{state.registry}/{repository}:{tag}",
    )
    assert pushed.returncode == 0, pushed.stderr
    client = api_client(state)

    def sealed():
        doc = json.loads(client.get_manifest(repository, tag).data)
        return doc if ANNOTATION_PLAINTEXT in doc.get("annotations", {}) else None

    doc = wait_for(sealed, f"{repository}:{tag} was not sealed; see {stack.output}")
    plaintext = Digest.parse(doc["annotations"][ANNOTATION_PLAINTEXT])
    wait_for(
        lambda: client.head_manifest(repository, plaintext.value) is None,
        f"plaintext {plaintext} still served; see {stack.output}",
    )
    return client, doc, plaintext


def stack_s3(state):
    """An S3 client on the stack's moto server."""
    return boto3.client(
        "s3",
        endpoint_url=state.s3_endpoint,
        region_name=state.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_push_is_sealed_through_the_api_and_decrypts_with_skopeo(api_stack, tmp_path):
    stack, write_log = api_stack
    state = stack.state
    creds = f"{state.registry_username}:{state.registry_password}"
    reference = f"docker://{state.registry}/{REPOSITORY}:1.0"
    client, doc, plaintext = push_until_sealed(
        stack, tmp_path, REPOSITORY, "1.0", big_layer_bytes=12 * 1024 * 1024
    )

    # Sealed: every layer encrypted. The plaintext manifest is gone through the
    # API (its blob data stays in storage for garbage collection).
    assert all(layer["mediaType"].endswith("+encrypted") for layer in doc["layers"])
    with pytest.raises(RegistryNotFoundError, match="MANIFEST_UNKNOWN"):
        client.get_manifest(REPOSITORY, plaintext.value)
    s3 = stack_s3(state)
    layout = RegistryLayout()
    original = json.loads(
        s3.get_object(Bucket=state.bucket, Key=layout.blob_data(plaintext))[
            "Body"
        ].read()
    )
    for layer in original["layers"]:
        assert client.head_blob(REPOSITORY, Digest.parse(layer["digest"])) is None

    # The registry's own view is consistent.
    assert client.tags(REPOSITORY) == ["1.0"]
    assert REPOSITORY in client.catalog()
    assert client.head_manifest(REPOSITORY, "1.0").digest == Digest.of(
        client.get_manifest(REPOSITORY, "1.0").data
    )

    # skopeo, with the account and the stack's key, gets the exact original
    # layers and config back.
    out = tmp_path / "decrypted"
    pulled = skopeo(
        "copy",
        "--quiet",
        "--src-creds",
        creds,
        "--src-tls-verify=false",
        "--decryption-key",
        str(state.jwe_private_key),
        reference,
        f"oci:{out}:latest",
    )
    assert pulled.returncode == 0, pulled.stderr
    decrypted = read_layout_manifest(out)
    assert [layer["digest"] for layer in decrypted["layers"]] == [
        layer["digest"] for layer in original["layers"]
    ]
    assert decrypted["config"]["digest"] == original["config"]["digest"]

    # regseal itself wrote only its own records, nothing of the registry's.
    writes = [json.loads(line) for line in write_log.read_text().splitlines()]
    assert writes
    assert [w for w in writes if w["key"].startswith(layout.base)] == []
    # regseal's own prefixes only: its records and the TUF metadata.
    assert {w["key"].split("/", 1)[0] for w in writes} <= {"regseal", "tuf"}
    assert '"seal failed"' not in stack.output.read_text()


def test_registry_requires_the_account(api_stack):
    stack, _ = api_stack
    state = stack.state

    anonymous = skopeo(
        "inspect", "--tls-verify=false", f"docker://{state.registry}/{REPOSITORY}:1.0"
    )

    assert anonymous.returncode != 0
    assert "authentication required" in anonymous.stderr or "unauthorized" in (
        anonymous.stderr.lower()
    )
    with pytest.raises(RegistryAuthError):
        api_client(state, password="wrong").tags(REPOSITORY)


def test_the_recorder_sees_storage_writes_in_storage_mode(tmp_path, start_stack):
    # The control for the check above: the same recording handler, in
    # storage mode, records the seal's writes under the registry root.
    write_log = tmp_path / "seal-writes.jsonl"
    write_sample_image(tmp_path / "img", big_layer_bytes=64 * 1024)
    with start_stack(
        tmp_path,
        handler=RECORDING_HANDLER,
        env={"REGSEAL_TEST_WRITE_LOG": str(write_log)},
    ) as stack:
        state = stack.state
        pushed = skopeo(
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{tmp_path / 'img'}:latest",
            f"docker://{state.registry}/{REPOSITORY}:1.0",
        )
        assert pushed.returncode == 0, pushed.stderr
        tag_link = RegistryLayout().tag_link(REPOSITORY, "1.0")

        def tag_written():
            if not write_log.exists():
                return False
            lines = write_log.read_text().splitlines()
            return any(json.loads(line)["key"] == tag_link for line in lines)

        wait_for(tag_written, f"the seal did not move the tag; see {stack.output}")
