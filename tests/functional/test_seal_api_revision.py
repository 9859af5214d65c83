"""Registries that keep tags in their database: the revision event seals.

Harbor 2.15 and later store a push by tag as a push by digest and keep the
tag in their database, so storage gets a revision link and no tag link, and
only the revision event reaches the seal. The fake API plays that registry
(``tags_in_database``): a push writes the revision link, the tag lives in
the API only, and a PUT by tag (the seal's move) writes no tag link either.
"""

from __future__ import annotations

import pytest

from regseal.digest import Digest
from regseal.errors import RetryableError
from regseal.manifest import ANNOTATION_PLAINTEXT, OCI_INDEX, OCI_MANIFEST
from regseal.seal import Outcome
from regseal.writeback import TagState
from tests.functional.test_seal_api import ApiStack, assert_no_registry_storage_writes
from tests.support import registryapi as fake
from tests.support.registry import random_layer

REPO = "team-a/app"


@pytest.fixture
def harbor(stack):
    with fake.FakeRegistryApi(
        stack.registry, auth="bearer", tags_in_database=True
    ) as api:
        yield ApiStack(stack, api)


@pytest.fixture
def api_stack(stack):
    with fake.FakeRegistryApi(stack.registry, auth="bearer") as api:
        yield ApiStack(stack, api)


def push_by_tag(harbor, repository, tags, layers=None):
    """Push as Harbor 2.15 stores it: by digest in storage, tags in the API."""
    pushed = harbor.stack.registry.push_image(
        repository, None, layers or [random_layer()]
    )
    for tag in tags:
        harbor.api.extra_tags[repository, tag] = pushed.digest
    return pushed


def tag_links(harbor, repository):
    prefix = harbor.layout.tags_prefix(repository)
    return list(harbor.stack.store.list_keys(prefix))


def writes(harbor):
    return [r for r in harbor.api.log if r.method not in {"GET", "HEAD"}]


def assert_plaintext_hidden(harbor, repository, pushed):
    client = harbor.client
    assert client.head_manifest(repository, pushed.digest.value) is None
    for digest in pushed.layers:
        assert client.head_blob(repository, digest) is None
    assert not harbor.stack.store.exists(
        harbor.layout.revision_link(repository, pushed.digest)
    )


def test_tag_only_in_the_api_is_sealed_by_the_revision_event(harbor):
    pushed = push_by_tag(harbor, REPO, ["1.0"])
    assert tag_links(harbor, REPO) == []

    result = harbor.seal_revision(REPO, pushed.digest)

    # At once, although the revision link is younger than the grace period.
    assert result.outcome is Outcome.SEALED
    assert result.tags == ("1.0",)
    assert result.fields()["tags"] == ["1.0"]
    sealed = Digest.parse(result.sealed_digest)
    client = harbor.client
    assert client.head_manifest(REPO, "1.0").digest == sealed
    doc = harbor.sealed_manifest(REPO, "1.0")
    assert doc["annotations"][ANNOTATION_PLAINTEXT] == pushed.digest.value
    assert all(layer["mediaType"].endswith("+encrypted") for layer in doc["layers"])
    assert_plaintext_hidden(harbor, REPO, pushed)
    assert client.tags(REPO) == ["1.0"]
    assert harbor.targets.recorded == [("team-a", REPO, "1.0", sealed)]
    # The registry kept the moved tag in its database, as Harbor would.
    assert tag_links(harbor, REPO) == []
    assert_no_registry_storage_writes(harbor)


def test_two_tags_on_one_digest_both_move_to_one_sealed_manifest(harbor):
    pushed = push_by_tag(harbor, REPO, ["1.0", "latest"])

    result = harbor.seal_revision(REPO, pushed.digest)

    assert result.outcome is Outcome.SEALED
    assert result.tags == ("1.0", "latest")
    sealed = Digest.parse(result.sealed_digest)
    client = harbor.client
    assert client.head_manifest(REPO, "1.0").digest == sealed
    assert client.head_manifest(REPO, "latest").digest == sealed
    assert len(harbor.api.requests("PUT", "/blobs/uploads/")) == 1
    assert len(harbor.api.requests("PUT", "/manifests/sha256:")) == 1
    assert_plaintext_hidden(harbor, REPO, pushed)
    assert harbor.targets.recorded == [
        ("team-a", REPO, "1.0", sealed),
        ("team-a", REPO, "latest", sealed),
    ]


def test_tag_moved_while_sealing_is_left_alone_and_the_other_tag_moves(harbor):
    registry = harbor.stack.registry
    pushed = push_by_tag(harbor, REPO, ["1.0", "latest"])
    newer = []

    def concurrent_push(repository, reference):
        # While the sealed manifest goes up by digest, "latest" gets a new push.
        if reference.startswith("sha256:") and not newer:
            newer.append(push_by_tag(harbor, REPO, ["latest"]))

    harbor.api.hooks["PUT manifest"] = concurrent_push

    result = harbor.seal_revision(REPO, pushed.digest)

    assert result.outcome is Outcome.SEALED
    assert result.tags == ("1.0",)
    client = harbor.client
    assert client.head_manifest(REPO, "1.0").digest.value == result.sealed_digest
    assert client.head_manifest(REPO, "latest").digest == newer[0].digest
    assert harbor.api.requests("PUT", "/manifests/latest") == []
    assert_plaintext_hidden(harbor, REPO, pushed)
    # The newer push is untouched: its own revision event seals it.
    assert registry.manifest(newer[0].digest)["layers"][0]["mediaType"] == (
        "application/vnd.oci.image.layer.v1.tar+gzip"
    )
    assert [t[2] for t in harbor.targets.recorded] == ["1.0"]


def test_push_inside_the_check_push_window_loses_the_tag_but_stays_by_digest(
    harbor,
):
    # The window docs/harbor.md names: a push between the move's HEAD and its
    # PUT by tag is overwritten, and the second HEAD cannot tell. The newer
    # manifest is not lost: it stays by digest, and its own revision event
    # (no tag names it now) seals it untagged after the grace period.
    pushed = push_by_tag(harbor, REPO, ["1.0"])
    newer = []

    def push_inside(repository, reference):
        if reference == "1.0" and not newer:
            newer.append(push_by_tag(harbor, REPO, ["1.0"]))

    harbor.api.hooks["PUT manifest"] = push_inside

    result = harbor.seal_revision(REPO, pushed.digest)

    assert (result.outcome, result.tags) == (Outcome.SEALED, ("1.0",))
    client = harbor.client
    assert client.head_manifest(REPO, "1.0").digest.value == result.sealed_digest
    assert client.head_manifest(REPO, newer[0].digest.value) is not None
    assert_plaintext_hidden(harbor, REPO, pushed)
    harbor.api.hooks.clear()
    harbor.later = 120.0
    late = harbor.seal_revision(REPO, newer[0].digest)
    assert (late.outcome, late.tags) == (Outcome.SEALED, ())
    assert_plaintext_hidden(harbor, REPO, newer[0])


def test_tag_moved_right_after_its_push_is_superseded_and_plaintext_hidden(harbor):
    pushed = push_by_tag(harbor, REPO, ["1.0"])
    newer = []

    def push_after(repository, reference):
        if reference == "1.0" and not newer:
            newer.append(push_by_tag(harbor, REPO, ["1.0"]))

    harbor.api.hooks["after PUT manifest"] = push_after

    result = harbor.seal_revision(REPO, pushed.digest)

    assert result.outcome is Outcome.SUPERSEDED
    assert result.tags == ()
    assert "every tag moved or was deleted while sealing" in result.reason
    client = harbor.client
    assert client.head_manifest(REPO, "1.0").digest == newer[0].digest
    # The sealed image stays by digest; nothing tags the plaintext, so no
    # event would come back for it: it is hidden now.
    assert client.head_manifest(REPO, result.sealed_digest) is not None
    assert_plaintext_hidden(harbor, REPO, pushed)
    assert harbor.targets.recorded == []


def test_redelivered_revision_event_changes_nothing(harbor):
    pushed = push_by_tag(harbor, REPO, ["1.0"])
    first = harbor.seal_revision(REPO, pushed.digest)
    before = writes(harbor)
    snapshot = harbor.stack.registry.snapshot()

    again = harbor.seal_revision(REPO, pushed.digest)

    assert first.outcome is Outcome.SEALED
    assert (again.outcome, again.reason) == (
        Outcome.SKIPPED,
        "revision no longer exists",
    )
    assert writes(harbor) == before
    assert harbor.stack.registry.snapshot() == snapshot
    assert len(harbor.targets.recorded) == 1


def test_redelivery_after_a_crash_before_the_move_finishes_the_seal(
    harbor, monkeypatch
):
    pushed = push_by_tag(harbor, REPO, ["1.0", "latest"])
    real_move = harbor.writer.move_tag
    calls = []

    def crash_on_second_tag(repository, tag, *args):
        calls.append(tag)
        if tag == "latest" and calls.count("latest") == 1:
            raise RuntimeError("function timed out")
        return real_move(repository, tag, *args)

    monkeypatch.setattr(harbor.writer, "move_tag", crash_on_second_tag)
    with pytest.raises(RuntimeError, match="timed out"):
        harbor.seal_revision(REPO, pushed.digest)
    client = harbor.client
    assert client.head_manifest(REPO, "latest").digest == pushed.digest
    assert client.head_manifest(REPO, pushed.digest.value) is not None
    uploads = len(harbor.api.requests("PUT", "/blobs/uploads/"))

    result = harbor.seal_revision(REPO, pushed.digest)

    assert (result.outcome, result.reason) == (Outcome.SKIPPED, "already sealed")
    assert result.tags == ("1.0", "latest")
    sealed = client.head_manifest(REPO, "1.0").digest
    assert client.head_manifest(REPO, "latest").digest == sealed
    assert len(harbor.api.requests("PUT", "/blobs/uploads/")) == uploads  # reused
    assert_plaintext_hidden(harbor, REPO, pushed)
    assert sorted(t[2] for t in harbor.targets.recorded) == ["1.0", "latest"]


def test_redelivery_after_a_failed_tuf_record_records_the_target(harbor, monkeypatch):
    pushed = push_by_tag(harbor, REPO, ["1.0"])

    def tuf_down(*args, **kwargs):
        raise RuntimeError("TUF is down")

    monkeypatch.setattr(harbor.targets, "record", tuf_down)
    with pytest.raises(RuntimeError, match="TUF is down"):
        harbor.seal_revision(REPO, pushed.digest)
    # Plaintext first: the tag serves the sealed image and nothing else.
    sealed = harbor.client.head_manifest(REPO, "1.0").digest
    assert sealed != pushed.digest
    assert_plaintext_hidden(harbor, REPO, pushed)
    monkeypatch.undo()

    # The plaintext revision is gone; the seal's record still leads to the
    # tags the seal moved.
    result = harbor.seal_revision(REPO, pushed.digest)

    assert (result.outcome, result.reason) == (
        Outcome.SKIPPED,
        "revision no longer exists",
    )
    assert result.tags == ("1.0",)
    assert harbor.targets.recorded == [("team-a", REPO, "1.0", sealed)]


def test_index_pushed_by_tag_is_sealed_with_its_children_by_digest(harbor):
    registry = harbor.stack.registry
    pushed = registry.push_index(
        "team-a/multi", None, [("amd64", [random_layer()]), ("arm64", [random_layer()])]
    )
    harbor.api.extra_tags["team-a/multi", "1.0"] = pushed.digest
    # The children's revision events come first; nothing tags a child, so
    # each waits for the grace period, while the index push may still need it.
    for child in pushed.children:
        with pytest.raises(RetryableError, match="pushed by digest"):
            harbor.seal_revision("team-a/multi", child.digest)
    assert writes(harbor) == []

    result = harbor.seal_revision("team-a/multi", pushed.digest)

    assert result.outcome is Outcome.SEALED
    assert result.tags == ("1.0",)
    index = harbor.sealed_manifest("team-a/multi", "1.0")
    assert index["mediaType"] == OCI_INDEX
    assert index["annotations"][ANNOTATION_PLAINTEXT] == pushed.digest.value
    for child, plaintext in zip(index["manifests"], pushed.children, strict=True):
        sealed = harbor.sealed_manifest("team-a/multi", child["digest"])
        assert sealed["annotations"][ANNOTATION_PLAINTEXT] == plaintext.digest.value
        assert sealed["layers"][0]["mediaType"].endswith("+encrypted")
        assert_plaintext_hidden(harbor, "team-a/multi", plaintext)
    assert_plaintext_hidden(harbor, "team-a/multi", pushed)
    # Each child was sealed once, inside the index: three manifests pushed.
    assert len(harbor.api.requests("PUT", "/manifests/sha256:")) == 3
    before = writes(harbor)

    # After the grace period the children's events find them hidden.
    harbor.later = 120.0
    for child in pushed.children:
        again = harbor.seal_revision("team-a/multi", child.digest)
        assert again.reason == "revision no longer exists"
    assert writes(harbor) == before
    assert [t[2] for t in harbor.targets.recorded] == ["1.0"]


def test_tag_deleted_before_the_seal_leaves_the_untagged_path(harbor):
    pushed = push_by_tag(harbor, REPO, ["1.0"])
    del harbor.api.extra_tags[REPO, "1.0"]

    with pytest.raises(RetryableError, match="pushed by digest"):
        harbor.seal_revision(REPO, pushed.digest)
    assert writes(harbor) == []

    harbor.later = 120.0
    result = harbor.seal_revision(REPO, pushed.digest)

    assert result.outcome is Outcome.SEALED
    assert result.tags == ()
    assert harbor.client.tags(REPO) == []
    assert harbor.client.head_manifest(REPO, result.sealed_digest) is not None
    assert_plaintext_hidden(harbor, REPO, pushed)
    assert harbor.targets.recorded == []


def test_tag_deleted_while_sealing_is_not_recreated(harbor):
    pushed = push_by_tag(harbor, REPO, ["1.0"])

    def delete_tag(repository, reference):
        harbor.api.extra_tags.pop((REPO, "1.0"), None)

    harbor.api.hooks["PUT manifest"] = delete_tag

    result = harbor.seal_revision(REPO, pushed.digest)

    assert result.outcome is Outcome.SUPERSEDED
    assert harbor.api.requests("PUT", "/manifests/1.0") == []
    assert harbor.client.head_manifest(REPO, "1.0") is None
    assert_plaintext_hidden(harbor, REPO, pushed)


def test_manifest_deleted_while_sealing_leaves_none_of_its_layers_pullable(harbor):
    # The newcomer's case: the plaintext manifest is deleted through the API
    # (and with it, its tag) while the seal runs.
    pushed = push_by_tag(harbor, REPO, ["1.0"])

    def delete_manifest(repository, reference):
        if harbor.client.head_manifest(REPO, pushed.digest.value) is not None:
            harbor.client.delete_manifest(REPO, pushed.digest)
            harbor.api.extra_tags.pop((REPO, "1.0"), None)

    harbor.api.hooks["PUT manifest"] = delete_manifest

    result = harbor.seal_revision(REPO, pushed.digest)

    assert result.outcome is Outcome.SUPERSEDED
    assert "moved or was deleted" in result.reason
    assert harbor.client.head_manifest(REPO, "1.0") is None
    assert_plaintext_hidden(harbor, REPO, pushed)
    assert harbor.targets.recorded == []


def test_tag_with_a_link_in_storage_is_left_to_its_tag_event(api_stack):
    # Distribution (and Harbor up to 2.14) write the tag link too, so both
    # events arrive: the revision event leaves the tag to the tag event, as
    # in storage mode, and after the grace period finds the work done.
    pushed = api_stack.stack.registry.push_image(REPO, "1.0", [random_layer()])
    assert api_stack.writer.tags_for_revision(REPO, pushed.digest) == []

    with pytest.raises(RetryableError, match="tagged; checking again"):
        api_stack.seal_revision(REPO, pushed.digest)
    assert writes(api_stack) == []
    sealed = api_stack.seal_tag(REPO, "1.0")
    before = writes(api_stack)
    api_stack.later = 120.0
    again = api_stack.seal_revision(REPO, pushed.digest)

    assert sealed.outcome is Outcome.SEALED
    assert (again.outcome, again.reason) == (
        Outcome.SKIPPED,
        "revision no longer exists",
    )
    assert again.tags == ()
    assert writes(api_stack) == before
    assert len(api_stack.api.requests("PUT", "/blobs/uploads/")) == 1
    digest = api_stack.client.head_manifest(REPO, "1.0").digest
    assert digest.value == sealed.sealed_digest
    assert api_stack.targets.recorded == [("team-a", REPO, "1.0", digest)]


def test_api_only_tag_beside_a_stored_one_is_moved_by_the_revision_event(api_stack):
    # Harbor up to 2.14: the push wrote "1.0" to storage, and "stable" lives
    # in Harbor's database only (added through its own API): the revision
    # event moves "stable", the tag event moves "1.0".
    registry = api_stack.stack.registry
    pushed = registry.push_image(REPO, "1.0", [random_layer()])
    api_stack.api.extra_tags[REPO, "stable"] = pushed.digest

    first = api_stack.seal_revision(REPO, pushed.digest)
    second = api_stack.seal_tag(REPO, "1.0")

    assert (first.outcome, first.tags) == (Outcome.SEALED, ("stable",))
    assert second.outcome is Outcome.REUSED
    client = api_stack.client
    sealed = client.head_manifest(REPO, "stable").digest
    assert client.head_manifest(REPO, "1.0").digest == sealed
    assert len(api_stack.api.requests("PUT", "/blobs/uploads/")) == 1
    assert_plaintext_hidden(api_stack, REPO, pushed)
    assert sorted(t[2] for t in api_stack.targets.recorded) == ["1.0", "stable"]


def test_storage_mode_leaves_tags_to_their_own_events(stack):
    pushed = stack.registry.push_image(REPO, "1.0", [random_layer()])

    assert stack.sealer.writer.tags_for_revision(REPO, pushed.digest) == []
    with pytest.raises(RetryableError, match="tagged; checking again"):
        stack.sealer.seal_revision(REPO, pushed.digest)
    with pytest.raises(ValueError, match="expected the ETag of its current/link"):
        stack.sealer.writer.move_tag(
            REPO,
            "1.0",
            pushed.digest,
            pushed.data,
            OCI_MANIFEST,
            TagState(pushed.digest),
        )
    assert stack.registry.tag_digest(REPO, "1.0") == pushed.digest
