"""Backfill (`regseal seal`) and status over many existing images."""

from __future__ import annotations

import pytest

from regseal import backfill, status
from regseal.digest import Digest
from regseal.inventory import Selection, scan
from tests.support.registry import random_layer

REPOSITORIES = [f"team-a/svc{i:02d}" for i in range(20)]
TAGS_PER_REPOSITORY = 10


class Interrupt(Exception):
    pass


def push_many(stack):
    shared = random_layer(64)  # one base layer in every image, as real images have
    pushed = {}
    for repository in REPOSITORIES:
        for t in range(TAGS_PER_REPOSITORY):
            tag = f"v{t}"
            pushed[(repository, tag)] = stack.registry.push_image(
                repository, tag, [shared, random_layer(64)]
            )
    return pushed


def test_backfill_of_200_tags_interrupted_and_resumed(stack, tmp_path):
    pushed = push_many(stack)
    inventories = scan(stack.store, stack.sealer.layout, Selection.parse("team-a/*"))
    assert sum(len(i.tags) for i in inventories) == 200
    checkpoint_file = tmp_path / "checkpoint.jsonl"

    def interrupt_at_120(done, total, summary):
        if done == 120:
            raise KeyboardInterrupt

    checkpoint = backfill.Checkpoint(checkpoint_file)
    with pytest.raises(KeyboardInterrupt):
        backfill.run(
            stack.sealer, inventories, checkpoint=checkpoint, progress=interrupt_at_120
        )
    checkpoint.close()

    checkpoint = backfill.Checkpoint(checkpoint_file)
    assert len(checkpoint.done) == 120
    summary = backfill.run(stack.sealer, inventories, checkpoint=checkpoint)
    checkpoint.close()

    assert summary.resumed == 120
    assert summary.failed == []
    assert dict(summary.outcomes) == {"sealed": 80, "skipped": 200}
    assert dict(summary.skipped) == {"revision no longer exists": 200}
    for (repository, tag), image in pushed.items():
        sealed = stack.registry.tag_digest(repository, tag)
        assert sealed != image.digest, f"{repository}:{tag} still plaintext"
        doc = stack.registry.manifest(sealed)
        assert all(layer["mediaType"].endswith("+encrypted") for layer in doc["layers"])
        assert not stack.store.exists(
            stack.sealer.layout.revision_link(repository, image.digest)
        )


def test_backfill_lists_the_bucket_once(stack):
    push_many(stack)
    before = stack.store.requests["ListObjectsV2"]
    inventories = scan(stack.store, stack.sealer.layout, Selection())
    # 200 tags, 200 revisions and 400 layer links: 8 pages of 1000 keys at most.
    assert stack.store.requests["ListObjectsV2"] - before <= 8
    assert len(inventories) == len(REPOSITORIES)


def test_dry_run_writes_nothing_and_reports_what_would_be_sealed(stack):
    stack.registry.push_image("team-a/app", "1", [random_layer()])
    stack.registry.push_image("other/app", "1", [random_layer()])
    before = stack.registry.snapshot()
    inventories = scan(stack.store, stack.sealer.layout, Selection())

    summary = backfill.run(stack.sealer, inventories, dry_run=True)

    assert stack.registry.snapshot() == before
    assert summary.outcomes["pending"] == 1
    assert summary.skipped["no team claims the repository"] >= 1


def test_failures_are_reported_and_do_not_stop_the_run(stack):
    stack.registry.push_image("team-a/good", "1", [random_layer()])
    stack.registry.put_manifest("team-a/bad", b"{not json", "1")
    inventories = scan(stack.store, stack.sealer.layout, Selection("team-a/*"))

    summary = backfill.run(stack.sealer, inventories)

    assert [key for key, _ in summary.failed] == [
        stack.sealer.layout.tag_link("team-a/bad", "1"),
        stack.sealer.layout.revision_link("team-a/bad", Digest.of(b"{not json")),
    ]
    assert "expected manifest JSON" in summary.failed[0][1]
    assert summary.outcomes["sealed"] == 1


def test_status_reports_sealed_plaintext_and_current_keys(stack):
    stack.registry.push_image("team-a/app", "sealed", [random_layer()])
    plain = stack.registry.push_image("team-a/app", "plain", [random_layer()])
    stack.sealer.seal_tag("team-a/app", "sealed")
    policy = stack.sealer.policies.get()
    inventories = scan(stack.store, stack.sealer.layout, Selection("team-a/app"))

    rows = {r.tag: r for r in status.statuses(stack.sealer, inventories, policy)}

    assert rows["plain"].state == "plaintext"
    assert rows["plain"].digest == plain.digest.value
    assert rows["plain"].plaintext_reachable is True
    sealed = rows["sealed"]
    assert (sealed.state, sealed.team, sealed.current) == ("sealed", "team-a", True)
    assert sealed.recipients == ("rsa", "ec")
    assert sealed.policy_version == "test-1"
    assert sealed.plaintext_reachable is False

    changed = dict(stack.policy)
    changed["teams"] = {
        "team-a": {
            **stack.policy["teams"]["team-a"],
            "recipients": stack.policy["teams"]["team-a"]["recipients"][:1],
        }
    }
    stack.set_policy(changed)
    row = status.tag_status(
        stack.sealer, "team-a/app", "sealed", stack.sealer.policies.get()
    )
    assert row.current is False
