"""End to end as Harbor 2.15 and later would run: tags never reach storage.

``regseal local up --write-back api --tags-in-database``: a front on the
registry stores a push by tag as a push by digest and keeps the tag itself,
as Harbor 2.15 does, so storage gets no tag link and the seal no tag event.
skopeo pushes by tag; the seal hears only the revision event, finds the tag
through the registry's API, seals, moves the tag and records its TUF
target; skopeo decrypts to the original layers.
"""

import json

import pytest
from tuf.ngclient import Updater

from regseal.digest import Digest
from regseal.errors import RegistryNotFoundError
from regseal.layout import RegistryLayout
from tests.e2e.test_api_mode import (
    RECORDING_HANDLER,
    push_until_sealed,
    read_layout_manifest,
    skopeo,
    stack_s3,
    wait_for,
)
from tests.support.stackclient import StackClient

pytestmark = pytest.mark.e2e

REPOSITORY = "e2e/harbor"


@pytest.fixture(scope="module")
def harbor_stack(tmp_path_factory):
    from tests.e2e.conftest import running_stack

    directory = tmp_path_factory.mktemp("api-tags-in-database")
    write_log = directory / "seal-writes.jsonl"
    with running_stack(
        directory,
        handler=RECORDING_HANDLER,
        options=("--write-back", "api", "--tags-in-database"),
        env={"REGSEAL_TEST_WRITE_LOG": str(write_log)},
    ) as stack:
        yield stack, write_log


def test_push_by_tag_is_sealed_through_its_revision_event(harbor_stack, tmp_path):
    stack, write_log = harbor_stack
    state = stack.state
    assert (state.write_back, state.tags_in_database) == ("api", True)
    creds = f"{state.registry_username}:{state.registry_password}"
    reference = f"docker://{state.registry}/{REPOSITORY}:1.0"
    client, _, plaintext = push_until_sealed(
        stack, tmp_path, REPOSITORY, "1.0", big_layer_bytes=2 * 1024 * 1024
    )
    sealed_digest = client.head_manifest(REPOSITORY, "1.0").digest

    # The revision event did it: storage has no tag link, so no tag event.
    # Its "seal finished" line comes after the TUF record, which may still be
    # running once the plaintext is gone: wait for it.
    layout = RegistryLayout()
    revision = layout.revision_link(REPOSITORY, plaintext)
    log = StackClient(state, stack.output)

    def finished_seals():
        records = log.log_records()
        found = [
            (r.fields["outcome"], r.fields.get("tags"), r.fields.get("sealed_digest"))
            for r in records
            if r.message == "seal finished" and r.fields.get("key") == revision
        ]
        return (found, records) if found else None

    finished, records = wait_for(
        finished_seals, f"no 'seal finished' for {revision}; see {stack.output}"
    )
    assert finished == [("sealed", ["1.0"], sealed_digest.value)]
    assert [r for r in records if "/_manifests/tags/" in r.fields.get("key", "")] == []
    s3 = stack_s3(state)
    listed = s3.list_objects_v2(
        Bucket=state.bucket, Prefix=layout.tags_prefix(REPOSITORY)
    )
    assert listed.get("Contents", []) == []

    # The plaintext is gone through the API; the registry's view is consistent.
    with pytest.raises(RegistryNotFoundError, match="MANIFEST_UNKNOWN"):
        client.get_manifest(REPOSITORY, plaintext.value)
    original = json.loads(
        s3.get_object(Bucket=state.bucket, Key=layout.blob_data(plaintext))[
            "Body"
        ].read()
    )
    for layer in original["layers"]:
        assert client.head_blob(REPOSITORY, Digest.parse(layer["digest"])) is None
    assert client.tags(REPOSITORY) == ["1.0"]
    assert sealed_digest == Digest.of(client.get_manifest(REPOSITORY, "1.0").data)

    # skopeo gets the exact original layers and config back.
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

    # The tag's TUF target names the sealed manifest.
    def target():
        cache = tmp_path / "tuf-cache"
        cache.mkdir(exist_ok=True)
        updater = Updater(
            metadata_dir=str(cache),
            metadata_base_url=state.tuf_metadata_url,
            bootstrap=state.tuf_root.read_bytes(),
        )
        updater.refresh()
        info = updater.get_targetinfo(f"{REPOSITORY}/tags/1.0")
        return info if info and info.hashes["sha256"] == sealed_digest.hex else None

    found = wait_for(target, f"no TUF target for {REPOSITORY}:1.0; see {stack.output}")
    assert found.custom["plaintextDigest"] == plaintext.value

    # regseal wrote only its own records and the TUF metadata.
    writes = [json.loads(line) for line in write_log.read_text().splitlines()]
    assert writes
    assert [w for w in writes if w["key"].startswith(layout.base)] == []
    assert {w["key"].split("/", 1)[0] for w in writes} <= {"regseal", "tuf"}
    assert '"seal failed"' not in stack.output.read_text()
