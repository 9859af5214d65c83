"""``regseal decrypt docker://…`` against the local stack with the real seal handler.

Push with skopeo, wait until the seal function moved the tag to the sealed
manifest, then decrypt from the registry three ways: skopeo with the stack's
JWE key, ``regseal decrypt --key`` with the same key, and ``regseal decrypt``
with KMS alone (the stack's moto endpoint, dummy credentials). The three OCI
layouts must be identical, and the layers the original ones.

The stack is this module's own (``regseal local up`` with the default seal
handler, functions/seal/app.py), so the test does not depend on what the
session fixture runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from regseal.local.processes import free_port
from regseal.local.state import StackState
from tests.e2e.conftest import process_exists
from tests.support.ocilayout import (
    read_image_layout,
    sha256_digest,
    tar_layer,
    write_image_layout,
)

pytestmark = pytest.mark.e2e

REGSEAL = str(Path(sys.executable).with_name("regseal"))
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
SEAL_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A local stack with the real seal function; stopped by PID afterwards."""
    directory = tmp_path_factory.mktemp("decrypt-stack")
    state_file = directory / "state.json"
    environment = {k: v for k, v in os.environ.items() if k != "REGSEAL_SEAL_HANDLER"}
    with (directory / "stack.out").open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regseal",
                "local",
                "up",
                "--state",
                str(state_file),
            ],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    state = None
    try:
        deadline = time.monotonic() + 90
        while not state_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail((directory / "stack.out").read_text())
            time.sleep(0.2)
        state = StackState.load(state_file)
        yield state
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in state.pids.values() if state else []:
            if pid != process.pid and process_exists(pid):
                os.kill(pid, signal.SIGKILL)


def manifest_of(state, repository, reference):
    request = urllib.request.Request(
        f"http://{state.registry}/v2/{repository}/manifests/{reference}",
        headers={"Accept": ACCEPT},
    )
    with NO_PROXY.open(request, timeout=10) as response:
        return json.loads(response.read())


def is_sealed(state, repository, tag):
    doc = manifest_of(state, repository, tag)
    children = (
        [manifest_of(state, repository, m["digest"]) for m in doc["manifests"]]
        if "manifests" in doc
        else [doc]
    )
    return all(
        layer["mediaType"].endswith("+encrypted")
        for child in children
        for layer in child["layers"]
    )


def wait_sealed(state, repository, tag):
    deadline = time.monotonic() + SEAL_TIMEOUT
    while time.monotonic() < deadline:
        if is_sealed(state, repository, tag):
            return
        time.sleep(0.5)
    pytest.fail(f"{repository}:{tag} was not sealed within {SEAL_TIMEOUT} s")


def skopeo(*args):
    result = subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def tree(path):
    return {
        str(file.relative_to(path)): (file.stat().st_mode & 0o777, file.read_bytes())
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def regseal_decrypt(environment, *args):
    result = subprocess.run(
        [REGSEAL, "decrypt", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def without_aws(environ):
    return {k: v for k, v in environ.items() if not k.startswith("AWS_")}


@pytest.mark.parametrize("kind", ["oci", "v2s2", "index"])
def test_decrypt_from_the_registry_equals_skopeo_with_jwe_and_with_kms(
    stack, tmp_path, kind
):
    unique = os.urandom(8).hex().encode()
    layers = [
        tar_layer({"etc/release": b"build " + unique}),
        tar_layer({"opt/data.bin": os.urandom(200_000) + unique}),
    ]
    image = write_image_layout(
        tmp_path / "img",
        layers,
        platforms=["linux/amd64", "linux/arm64"] if kind == "index" else (),
        manifest_annotations={"org.example.build": unique.decode()},
    )
    repository = f"e2e-decrypt/{kind}"
    push = ["--all"] if kind == "index" else []
    if kind == "v2s2":
        push += ["--format", "v2s2"]
    skopeo(
        *push,
        "--dest-tls-verify=false",
        image.reference,
        f"docker://{stack.registry}/{repository}:1",
    )
    wait_sealed(stack, repository, "1")
    source = f"docker://{stack.registry}/{repository}:1"
    key = str(stack.jwe_private_key)
    all_images = ["--all"] if kind == "index" else []

    skopeo(
        *all_images,
        "--src-tls-verify=false",
        "--decryption-key",
        key,
        source,
        f"oci:{tmp_path / 'sk'}:1",
    )
    jwe = regseal_decrypt(
        without_aws(os.environ), "--key", key, source, f"oci:{tmp_path / 'jwe'}:1"
    )
    kms_environment = {
        **without_aws(os.environ),
        "AWS_ENDPOINT_URL": stack.s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": stack.region,
    }
    regseal_decrypt(kms_environment, source, f"oci:{tmp_path / 'kms'}:1")

    expected = tree(tmp_path / "sk")
    assert tree(tmp_path / "jwe") == expected
    assert tree(tmp_path / "kms") == expected
    decrypted = read_image_layout(tmp_path / "jwe", "1")
    for manifest in decrypted.manifests:
        assert list(manifest.layer_digests) == [sha256_digest(x) for x in layers]
        annotations = manifest.document["annotations"]
        # Docker schema2 has no annotations: the push to v2s2 dropped them.
        assert annotations.get("org.example.build") == (
            None if kind == "v2s2" else unique.decode()
        )
        assert "dev.regseal.plaintext-manifest" in annotations
    expected_count = 2 if kind == "index" else 1
    assert f"{expected_count} manifest(s)" in jwe.stderr


def test_decrypt_when_kms_fails_names_key_and_repository_and_writes_nothing(
    stack, tmp_path
):
    image = write_image_layout(tmp_path / "img", [tar_layer({"x": os.urandom(64)})])
    skopeo(
        "--dest-tls-verify=false",
        image.reference,
        f"docker://{stack.registry}/e2e-decrypt/denied:1",
    )
    wait_sealed(stack, "e2e-decrypt/denied", "1")
    environment = {
        **without_aws(os.environ),
        "AWS_ENDPOINT_URL": stack.s3_endpoint,
        "AWS_REGION": stack.region,
        # moto accepts any access key: make KMS unreachable instead (a free
        # loopback port nothing listens on).
        "AWS_ENDPOINT_URL_KMS": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }

    result = subprocess.run(
        [
            REGSEAL,
            "decrypt",
            f"docker://{stack.registry}/e2e-decrypt/denied:1",
            f"oci:{tmp_path / 'out'}:1",
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=180,
        check=False,
    )

    assert result.returncode == 1
    assert "for repository 'e2e-decrypt/denied'" in result.stderr
    assert f"KMS key arn:aws:kms:{stack.region}:" in result.stderr
    assert stack.kms_key_id in result.stderr
    assert not (tmp_path / "out").exists()
