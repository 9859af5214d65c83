"""Load on the local stack: 50 images pushed at once by several skopeo processes.

The test starts a stack of its own (tests/e2e/conftest.py), which runs the
real seal function (functions/seal/app.py) behind the event pump. Every
image must end sealed, decryptable with the stack's JWE key, with nothing
lost, no plaintext reachable and nothing in the dead-letter queue; the test
prints how long pushing and sealing took.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from regseal.digest import Digest
from regseal.invariants import Keys, check_registry
from regseal.jwe import load_private_key
from regseal.layout import RegistryLayout, decode_link
from regseal.manifest import ANNOTATION_PLAINTEXT
from regseal.storage import ObjectStore
from tests.support.ocilayout import tar_layer, write_image_layout

pytestmark = pytest.mark.e2e

IMAGES = 50
PUSHERS = 5  # skopeo processes at a time
REPOSITORIES = 10
SEAL_TIMEOUT = 300.0


def client(state, service):
    return boto3.client(
        service,
        endpoint_url=state.s3_endpoint,
        region_name=state.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def push(state, source: str, destination: str, digest_file: Path) -> str:
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--digestfile",
            str(digest_file),
            source,
            f"docker://{state.registry}/{destination}",
        ],
        check=True,
        timeout=120,
    )
    return digest_file.read_text().strip()


def sealed_from(store, layout, repository, tag) -> str | None:
    """The plaintext digest a tag's sealed manifest came from (None: not sealed)."""
    key = layout.tag_link(repository, tag)
    digest = decode_link(store.get(key).data, key)
    doc = store.get(layout.blob_data(digest)).data
    return json.loads(doc).get("annotations", {}).get(ANNOTATION_PLAINTEXT)


def queue_counts(sqs, url) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
        ],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_fifty_images_pushed_at_once_are_all_sealed(tmp_path, start_stack):
    layouts = []
    for i in range(IMAGES):
        layers = [
            tar_layer({f"app-{i}.txt": os.urandom(2048)}),
            tar_layer({"etc": b"%d" % i}),
        ]
        image = write_image_layout(tmp_path / f"image-{i}", layers)
        layouts.append((image, f"load/app-{i % REPOSITORIES}", f"v{i // REPOSITORIES}"))

    (tmp_path / "stack").mkdir()
    with start_stack(tmp_path / "stack") as stack:
        state, output = stack.state, stack.output
        started = time.monotonic()
        with ThreadPoolExecutor(PUSHERS) as pool:
            pushed = list(
                pool.map(
                    lambda item: push(
                        state,
                        item[0].reference,
                        f"{item[1]}:{item[2]}",
                        tmp_path / f"{item[1].replace('/', '_')}-{item[2]}.digest",
                    ),
                    layouts,
                )
            )
        push_seconds = time.monotonic() - started

        store = ObjectStore(client(state, "s3"), state.bucket)
        layout = RegistryLayout()
        expected = {
            (repository, tag): digest
            for (_, repository, tag), digest in zip(layouts, pushed, strict=True)
        }
        pending = dict(expected)
        while pending and time.monotonic() - started < SEAL_TIMEOUT:
            for (repository, tag), digest in list(pending.items()):
                source = sealed_from(store, layout, repository, tag)
                if source is not None:
                    assert source == digest, f"{repository}:{tag} sealed from {source}"
                    del pending[(repository, tag)]
            time.sleep(0.5)
        sealed_seconds = time.monotonic() - started
        assert pending == {}, f"{len(pending)} images not sealed in {SEAL_TIMEOUT}s"

        sqs = client(state, "sqs")
        while queue_counts(sqs, state.queue_url) and time.monotonic() - started < (
            SEAL_TIMEOUT
        ):
            time.sleep(0.5)
        drained_seconds = time.monotonic() - started

        key = load_private_key(state.jwe_private_key.read_bytes(), source="stack key")
        checked = time.monotonic()
        report = check_registry(store, keys=Keys(jwe_keys=[key]), finished=True)
        check_seconds = time.monotonic() - checked
        dead = queue_counts(sqs, state.dlq_url)
        private_lines = [
            line
            for line in state.jwe_private_key.read_text().splitlines()
            if not line.startswith("-----")
        ]
        stack_log = output.read_text()

    print(
        f"\n{IMAGES} images, {PUSHERS} skopeo processes at a time: pushed in "
        f"{push_seconds:.1f}s, all sealed after {sealed_seconds:.1f}s, queue drained "
        f"after {drained_seconds:.1f}s; {report.layers_opened} layers decrypted and "
        f"every invariant checked in {check_seconds:.1f}s"
    )
    assert report.violations == (), "\n".join(map(str, report.violations))
    assert report.tags == IMAGES
    assert report.layers_opened == 2 * IMAGES
    assert dead == 0
    assert not [line for line in private_lines if line in stack_log]
    assert len({Digest.parse(d) for d in pushed}) == IMAGES
