"""TUF on the real stack: skopeo pushes, the seal function records the target,
the TUF function (its own pump) publishes snapshot and timestamp, and clients
fetch the metadata anonymously over HTTP from moto's S3 endpoint.

The client checks use python-tuf's ngclient unmodified (its default urllib3
fetcher, bootstrapped from the stack's ``tuf_root``) and ``regseal verify``.
"""

import hashlib
import itertools
import os
import subprocess
import sys

import pytest
from tuf.ngclient import Updater

from regseal.errors import VerificationError
from regseal.verify import ImageReference, verify
from tests.support import skopeo
from tests.support.ocilayout import tar_layer, write_image_layout
from tests.support.stackclient import StackClient, sha256_digest, wait_for

pytestmark = pytest.mark.e2e

SEAL_TIMEOUT = 60.0
TUF_TIMEOUT = 30.0
_clients = itertools.count()


@pytest.fixture
def stack(local_stack_run):
    client = StackClient(local_stack_run.state, local_stack_run.output)
    client.wait_drained()
    client.wait_tuf_drained()
    return client


def fresh_updater(stack, tmp_path):
    """An ngclient Updater with an empty cache, trusting the stack's root."""
    cache = tmp_path / f"ngclient-{next(_clients)}"
    cache.mkdir()
    return Updater(
        metadata_dir=str(cache),
        metadata_base_url=stack.state.tuf_metadata_url,
        bootstrap=stack.state.tuf_root.read_bytes(),
    )


def target_of(stack, tmp_path, path):
    """The target at ``path`` as a fresh ngclient sees it (None if unknown)."""
    updater = fresh_updater(stack, tmp_path)
    updater.refresh()
    return updater.get_targetinfo(path)


def push_unique(stack, tmp_path, repository, tag, label):
    """Push a one-layer image no other push has; return the pushed digest."""
    image = write_image_layout(
        tmp_path / label, [tar_layer({f"{label}/data": os.urandom(2048)})]
    )
    return skopeo.push(
        image.reference,
        f"{stack.state.registry}/{repository}:{tag}",
        digest_file=tmp_path / f"{label}.digest",
    )


def served_sealed_manifest(stack, repository, tag, pushed):
    """The registry's manifest for the tag once it is no longer ``pushed``."""

    def sealed():
        data = stack.registry_manifest(repository, tag)
        return data if sha256_digest(data) != pushed else None

    try:
        return wait_for(sealed, timeout=SEAL_TIMEOUT, what=f"{repository}:{tag} sealed")
    except TimeoutError as exc:
        pytest.fail(f"{exc}; the stack's output ends with:\n{stack.log_tail()}")


def wait_target(stack, tmp_path, path, digest):
    """Wait until a fresh client's target at ``path`` has ``digest``."""

    def published():
        target = target_of(stack, tmp_path, path)
        if target is not None and "sha256:" + target.hashes["sha256"] == digest:
            return target
        return None

    try:
        return wait_for(
            published, timeout=TUF_TIMEOUT, what=f"TUF target {path} at {digest}"
        )
    except TimeoutError as exc:
        pytest.fail(f"{exc}; the stack's output ends with:\n{stack.log_tail()}")


def versions(stack):
    """(timestamp, snapshot, demo team role) versions as published now."""
    timestamp = stack.tuf_metadata("timestamp.json")["signed"]
    snapshot_version = timestamp["meta"]["snapshot.json"]["version"]
    snapshot = stack.tuf_metadata(f"{snapshot_version}.snapshot.json")["signed"]
    return (
        timestamp["version"],
        snapshot_version,
        snapshot["meta"]["demo.json"]["version"],
    )


def regseal_verify(stack, reference, tmp_path):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "regseal",
            "verify",
            reference,
            "--root",
            str(stack.state.tuf_root),
            "--metadata",
            stack.state.tuf_metadata_url,
            "--cache-dir",
            str(tmp_path / "verify-cache"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_sealed_push_verifies_and_ngclient_finds_the_sealed_digest(stack, tmp_path):
    repository, tag = "e2e/tuf/app", "1.0"
    pushed = push_unique(stack, tmp_path, repository, tag, "first")
    sealed = served_sealed_manifest(stack, repository, tag, pushed)

    target = wait_target(
        stack, tmp_path, f"{repository}/tags/{tag}", sha256_digest(sealed)
    )
    result = regseal_verify(
        stack, f"{stack.state.registry}/{repository}:{tag}", tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"verified {stack.state.registry}/{repository}:{tag} {sha256_digest(sealed)}"
    )
    assert target.length == len(sealed)
    assert target.hashes == {"sha256": hashlib.sha256(sealed).hexdigest()}
    assert target.custom["plaintextDigest"] == pushed
    assert target.custom["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert stack.tag_target(repository, tag) == sha256_digest(sealed)


def test_repush_to_the_tag_moves_the_target_and_every_version_goes_up(stack, tmp_path):
    repository, tag = "e2e/tuf/repush", "1.0"
    reference = ImageReference.parse(f"{stack.state.registry}/{repository}:{tag}")
    cache = tmp_path / "returning-client"
    first_pushed = push_unique(stack, tmp_path, repository, tag, "one")
    first = served_sealed_manifest(stack, repository, tag, first_pushed)
    wait_target(stack, tmp_path, f"{repository}/tags/{tag}", sha256_digest(first))
    stack.wait_tuf_drained()
    before = versions(stack)
    verified_first = verify(
        reference,
        root=stack.state.tuf_root.read_bytes(),
        metadata_url=stack.state.tuf_metadata_url,
        cache_dir=cache,
    )

    second_pushed = push_unique(stack, tmp_path, repository, tag, "two")
    second = served_sealed_manifest(stack, repository, tag, second_pushed)
    target = wait_target(
        stack, tmp_path, f"{repository}/tags/{tag}", sha256_digest(second)
    )
    stack.wait_tuf_drained()
    after = versions(stack)
    # The same cache: a returning client accepts the newer metadata.
    verified_second = verify(
        reference,
        root=stack.state.tuf_root.read_bytes(),
        metadata_url=stack.state.tuf_metadata_url,
        cache_dir=cache,
    )

    assert sha256_digest(first) != sha256_digest(second)
    assert verified_first.digest == sha256_digest(first)
    assert verified_second.digest == sha256_digest(second)
    assert target.custom["plaintextDigest"] == second_pushed
    assert all(new > old for new, old in zip(after, before, strict=True)), (
        before,
        after,
    )


def test_deleting_the_sealed_manifest_removes_the_target(stack, tmp_path):
    repository, tag = "e2e/tuf/deleted", "1.0"
    path = f"{repository}/tags/{tag}"
    pushed = push_unique(stack, tmp_path, repository, tag, "doomed")
    sealed = served_sealed_manifest(stack, repository, tag, pushed)
    wait_target(stack, tmp_path, path, sha256_digest(sealed))

    status = stack.registry_delete(f"{repository}/manifests/{sha256_digest(sealed)}")

    # distribution deletes the revision link, then every tag pointing at the
    # manifest (the whole tag directory, current/link included): S3 removal
    # events that the seal function turns into a removed target.
    assert status == 202
    assert stack.keys(stack.tag_link_key(repository, tag)) == []
    assert stack.keys(stack.revision_link_key(repository, sha256_digest(sealed))) == []
    wait_for(
        lambda: target_of(stack, tmp_path, path) is None,
        timeout=TUF_TIMEOUT,
        what=f"TUF target {path} removed",
    )
    with pytest.raises(VerificationError, match="unknown target"):
        verify(
            ImageReference.parse(f"{stack.state.registry}/{repository}:{tag}"),
            root=stack.state.tuf_root.read_bytes(),
            metadata_url=stack.state.tuf_metadata_url,
            cache_dir=tmp_path / "verify-after-delete",
        )

    def removals():
        return [
            record
            for record in stack.log_records()
            if record.fields.get("key") == stack.tag_link_key(repository, tag)
            and record.fields.get("reason") == "target removed"
        ]

    # The handler logs its verdict after the TUF write that the client saw.
    removed = wait_for(removals, timeout=TUF_TIMEOUT, what="'target removed' logged")
    assert len(removed) == 1


def test_verify_of_a_tag_never_sealed_fails_with_unknown_target(stack, tmp_path):
    result = regseal_verify(
        stack, f"{stack.state.registry}/e2e/tuf/never:pushed", tmp_path
    )

    assert result.returncode == 1
    assert "unknown target" in result.stderr
    assert "e2e/tuf/never/tags/pushed" in result.stderr


def test_tag_link_rolled_back_in_the_bucket_keeps_the_newer_target(stack, tmp_path):
    # A storage writer (not the registry) points the tag at an image regseal
    # sealed earlier: the target stays on the newer one, so verify fails.
    repository, tag = "e2e/tuf/rollback", "1.0"
    path = f"{repository}/tags/{tag}"
    old_pushed = push_unique(stack, tmp_path, repository, tag, "older")
    old = sha256_digest(served_sealed_manifest(stack, repository, tag, old_pushed))
    wait_target(stack, tmp_path, path, old)
    new_pushed = push_unique(stack, tmp_path, repository, tag, "newer")
    new = sha256_digest(served_sealed_manifest(stack, repository, tag, new_pushed))
    wait_target(stack, tmp_path, path, new)
    stack.wait_drained()
    stack.wait_tuf_drained()
    tag_key = stack.tag_link_key(repository, tag)

    stack.put(tag_key, old.encode())

    def refusals():
        return [
            record
            for record in stack.log_records()
            if record.fields.get("key") == tag_key
            and "target not moved back" in str(record.fields.get("reason"))
        ]

    refused = wait_for(refusals, timeout=SEAL_TIMEOUT, what="rollback refused")
    stack.wait_drained()
    stack.wait_tuf_drained()
    result = regseal_verify(
        stack, f"{stack.state.registry}/{repository}:{tag}", tmp_path
    )

    warnings = [
        record
        for record in stack.log_records()
        if record.message.startswith(f"refused to move the TUF target of {repository}")
    ]
    assert len(refused) == 1
    assert [record.level for record in warnings] == ["WARNING"]
    assert old in warnings[0].message
    assert new in warnings[0].message
    assert refused[0].fields["outcome"] == "skipped"
    assert f"sealed before {new}" in refused[0].fields["reason"]
    assert target_of(stack, tmp_path, path).hashes == {
        "sha256": new.removeprefix("sha256:")
    }
    assert stack.tag_target(repository, tag) == old
    assert result.returncode == 1
    assert "manifest mismatch" in result.stderr
    assert f"the registry serves {old}" in result.stderr
