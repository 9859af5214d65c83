"""What a repository's revisions reference, read in parallel for hiding.

Hiding must know every digest the repository's remaining manifests use; a
cold function reads them all at once (REFERENCE_READERS threads), a warm one
only the revisions it has not seen.
"""

from __future__ import annotations

from tests.support.registry import random_layer


def push_many(stack, count):
    return [
        stack.registry.push_image("team-a/app", None, [random_layer(64)])
        for _ in range(count)
    ]


def test_every_revision_maps_to_its_config_and_layers(stack):
    pushed = push_many(stack, 40)

    references = stack.sealer._repository_references("team-a/app")

    assert references == {p.digest: {p.config, *p.layers} for p in pushed}


def test_a_warm_sealer_reads_only_revisions_it_has_not_seen(stack):
    push_many(stack, 30)
    stack.sealer._repository_references("team-a/app")
    before = stack.store.requests["GetObject"]
    newer = push_many(stack, 3)

    references = stack.sealer._repository_references("team-a/app")

    assert stack.store.requests["GetObject"] - before == 3
    assert len(references) == 33
    assert all(references[p.digest] == {p.config, *p.layers} for p in newer)


def test_a_revision_whose_manifest_blob_is_missing_is_read_again_next_time(stack):
    pushed = push_many(stack, 5)
    missing = pushed[2]
    data = stack.store.get(stack.sealer.layout.blob_data(missing.digest)).data
    stack.store.delete(stack.sealer.layout.blob_data(missing.digest))

    first = stack.sealer._repository_references("team-a/app")
    stack.store.put(stack.sealer.layout.blob_data(missing.digest), data)
    second = stack.sealer._repository_references("team-a/app")

    assert first[missing.digest] == set()
    assert second[missing.digest] == {missing.config, *missing.layers}
