"""Races on moto with S3's conditional writes: threads, duplicates, reordering.

Each Sealer stands for one Lambda invocation (its own objects, the shared
bucket). Interleavings that matter are forced with HookedStore (a barrier or
a push right before a given write) rather than left to thread timing; a few
free-running repetitions cover the rest. Every test ends with all events
delivered (retried past the grace period, as SQS would) and the registry
finished: every tag sealed, every sealed layer decrypts, no plaintext
reachable, and no tag rolled back.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from regseal.errors import RegsealError, RetryableError
from regseal.events import Action, ObjectEvent
from regseal.manifest import ANNOTATION_PLAINTEXT
from regseal.seal import Outcome
from tests.reliability.scenarios import AFTER_GRACE
from tests.support.faults import HookedStore, tag_move
from tests.support.registry import random_layer


def run_together(*calls):
    """Run each call on its own thread; return results (or exceptions) in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
    results = []
    for future in futures:
        try:
            results.append(future.result())
        except Exception as exc:
            results.append(exc)
    return results


def barrier_before(reg, predicate, parties=2):
    barrier = threading.Barrier(parties, timeout=20)
    return lambda: HookedStore(reg.store, predicate, barrier.wait)


def drain(rig, reg, events):
    """Deliver events until none is left to retry, as SQS and Lambda would.

    Retryable errors come back once the grace period has passed; any other
    error is a failure of the test.
    """
    sealer = rig.sealer(reg.store)
    late = rig.sealer(reg.store, clock=lambda: AFTER_GRACE)
    results = []
    retry = []
    for event in events:
        try:
            results.append(sealer.handle(event))
        except RetryableError:
            retry.append(event)
    for event in retry:
        results.append(late.handle(event))
    return results


def sealed_from(reg, repository, tag):
    digest = reg.registry.tag_digest(repository, tag)
    return reg.registry.manifest(digest)["annotations"][ANNOTATION_PLAINTEXT]


def assert_finished(rig, reg):
    report = rig.check(reg.store, finished=True)
    assert report.violations == (), "\n".join(map(str, report.violations))


def push_events(reg, repository, tag, pushed):
    """The events of a push, in the registry's write order: revision, then tag."""
    return [
        reg.revision_event(repository, pushed.digest),
        reg.tag_event(repository, tag),
    ]


# -- the same event twice --------------------------------------------------------


def test_same_event_twice_at_once_moves_the_tag_once(rig):
    reg = rig.registry()
    pushed = reg.registry.push_image(
        "team-a/app", "1", [random_layer(), random_layer()]
    )
    store = barrier_before(reg, tag_move("team-a/app", "1"))
    event = reg.tag_event("team-a/app", "1")

    results = run_together(
        lambda: rig.sealer(store()).handle(event),
        lambda: rig.sealer(store()).handle(event),
    )

    # Both sealed and one lost the tag move; or the later one found the
    # earlier one's finished seal, reused it and found the tag already moved.
    outcomes = sorted(r.outcome.value for r in results)
    assert outcomes in (["sealed", "superseded"], ["reused", "sealed"])
    winner = next(r for r in results if r.outcome is Outcome.SEALED)
    assert reg.registry.tag_digest("team-a/app", "1").value == winner.sealed_digest
    assert all(
        r.sealed_digest == winner.sealed_digest
        for r in results
        if r.outcome is Outcome.REUSED
    )
    assert sealed_from(reg, "team-a/app", "1") == pushed.digest.value
    drain(rig, reg, push_events(reg, "team-a/app", "1", pushed))
    assert_finished(rig, reg)


@pytest.mark.parametrize("attempt", range(3))
def test_same_event_twice_free_running(rig, attempt):
    reg = rig.registry()
    pushed = reg.registry.push_image("team-a/app", "1", [random_layer()])
    event = reg.tag_event("team-a/app", "1")

    results = run_together(
        lambda: rig.sealer(reg.store).handle(event),
        lambda: rig.sealer(reg.store).handle(event),
    )

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sealed_from(reg, "team-a/app", "1") == pushed.digest.value
    drain(rig, reg, push_events(reg, "team-a/app", "1", pushed))
    assert_finished(rig, reg)


# -- events out of order ---------------------------------------------------------


def test_revision_event_before_the_tag_is_written_waits(rig):
    reg = rig.registry()
    data, _, _ = reg.registry.image_manifest("team-a/app", [random_layer()])
    digest = reg.registry.put_manifest("team-a/app", data, None)  # tag not yet
    revision = reg.revision_event("team-a/app", digest)

    with pytest.raises(RetryableError, match="pushed by digest"):
        rig.sealer(reg.store).handle(revision)
    reg.registry.put_manifest("team-a/app", data, "1")
    results = drain(rig, reg, [reg.tag_event("team-a/app", "1"), revision])

    assert [r.outcome for r in results] == [Outcome.SEALED, Outcome.SKIPPED]
    assert_finished(rig, reg)


def test_tag_event_before_revision_event(rig):
    reg = rig.registry()
    pushed = reg.registry.push_image("team-a/app", "1", [random_layer()])

    results = drain(rig, reg, push_events(reg, "team-a/app", "1", pushed)[::-1])

    assert results[0].outcome is Outcome.SEALED
    assert results[1].outcome is Outcome.SKIPPED
    assert_finished(rig, reg)


def test_tag_event_of_an_old_push_after_a_newer_push(rig):
    reg = rig.registry()
    old = reg.registry.push_image("team-a/app", "1", [random_layer()])
    old_events = push_events(reg, "team-a/app", "1", old)
    # The old push's revision event is handled while the tag points at it;
    # it comes back (RetryableError) in case its tag's event misses it.
    with pytest.raises(RetryableError, match="tagged; checking again"):
        rig.sealer(reg.store).handle(old_events[0])
    new = reg.registry.push_image("team-a/app", "1", [random_layer()])

    results = drain(
        rig,
        reg,
        [old_events[1], *push_events(reg, "team-a/app", "1", new), old_events[0]],
    )

    # The old push's tag event sealed the new image; its revision event,
    # back after the grace period, sealed the old one by digest.
    assert results[0].plaintext_digest == new.digest.value
    assert results[-1].outcome is Outcome.SEALED
    assert results[-1].plaintext_digest == old.digest.value

    assert sealed_from(reg, "team-a/app", "1") == new.digest.value
    assert_finished(rig, reg)


# -- a newer push while sealing --------------------------------------------------


def test_newer_push_during_the_seal_wins_and_is_sealed_by_its_own_event(rig):
    reg = rig.registry()
    old = reg.registry.push_image("team-a/app", "1", [random_layer()])
    # Its revision event comes first, while the tag points at it.
    drain(rig, reg, [reg.revision_event("team-a/app", old.digest)])
    newer = {}

    def push_newer():
        newer["image"] = reg.registry.push_image("team-a/app", "1", [random_layer()])

    store = HookedStore(reg.store, tag_move("team-a/app", "1"), push_newer)
    result = rig.sealer(store).handle(reg.tag_event("team-a/app", "1"))

    assert result.outcome is Outcome.SUPERSEDED
    assert reg.registry.tag_digest("team-a/app", "1") == newer["image"].digest
    drain(rig, reg, push_events(reg, "team-a/app", "1", newer["image"]))
    assert sealed_from(reg, "team-a/app", "1") == newer["image"].digest.value
    assert_finished(rig, reg)


def test_newer_push_while_two_seals_of_the_old_one_run(rig):
    reg = rig.registry()
    old = reg.registry.push_image("team-a/app", "1", [random_layer()])
    drain(rig, reg, [reg.revision_event("team-a/app", old.digest)])
    barrier = threading.Barrier(3, timeout=20)

    def store():
        return HookedStore(reg.store, tag_move("team-a/app", "1"), barrier.wait)

    event = reg.tag_event("team-a/app", "1")
    results = run_together(
        lambda: rig.sealer(store()).handle(event),
        lambda: rig.sealer(store()).handle(event),
        lambda: (
            barrier.wait(),
            reg.registry.push_image("team-a/app", "1", [random_layer()]),
        )[1],
    )

    newer = results[2]
    assert [type(r).__name__ for r in results[:2]] == ["SealResult", "SealResult"]
    drain(rig, reg, push_events(reg, "team-a/app", "1", newer))
    assert sealed_from(reg, "team-a/app", "1") == newer.digest.value
    assert_finished(rig, reg)


# -- two tags of one image ---------------------------------------------------------


def test_two_tags_of_one_image_sealed_at_once(rig):
    reg = rig.registry()
    pushed = reg.registry.push_image(
        "team-a/app", "x", [random_layer(), random_layer()]
    )
    reg.registry.put_manifest("team-a/app", pushed.data, "y")
    barrier = threading.Barrier(2, timeout=20)

    def store():
        return HookedStore(
            reg.store,
            lambda w: w.startswith("PutObject") and w.endswith("/current/link"),
            barrier.wait,
        )

    results = run_together(
        lambda: rig.sealer(store()).handle(reg.tag_event("team-a/app", "x")),
        lambda: rig.sealer(store()).handle(reg.tag_event("team-a/app", "y")),
    )

    # The later one may find the earlier one's finished seal and reuse it.
    outcomes = {r.outcome for r in results}
    assert Outcome.SEALED in outcomes
    assert outcomes <= {Outcome.SEALED, Outcome.REUSED}
    for tag in ("x", "y"):
        assert sealed_from(reg, "team-a/app", tag) == pushed.digest.value
    assert_finished(rig, reg)


@pytest.mark.parametrize("attempt", range(3))
def test_two_tags_of_one_image_free_running(rig, attempt):
    reg = rig.registry()
    pushed = reg.registry.push_index(
        "team-a/multi", "x", [("amd64", [random_layer()]), ("arm64", [random_layer()])]
    )
    reg.registry.put_manifest("team-a/multi", pushed.data, "y")

    results = run_together(
        lambda: rig.sealer(reg.store).handle(reg.tag_event("team-a/multi", "x")),
        lambda: rig.sealer(reg.store).handle(reg.tag_event("team-a/multi", "y")),
    )

    assert not [r for r in results if isinstance(r, BaseException)], results
    drain(rig, reg, [reg.tag_event("team-a/multi", t) for t in ("x", "y")])
    assert_finished(rig, reg)


# -- the function's own writes ------------------------------------------------------


def own_write_events(reg, written):
    events = []
    for what in written:
        operation, key = what.split(" ", 1)
        if operation in {"PutObject", "CopyObject", "CompleteMultipartUpload"}:
            events.append(ObjectEvent(reg.bucket, key, Action.CREATED))
        elif operation == "DeleteObject":
            events.append(ObjectEvent(reg.bucket, key, Action.REMOVED))
    return events


@pytest.mark.parametrize("kind", ["image", "index", "by-digest"])
def test_own_writes_looping_back_change_nothing(rig, kind):
    reg = rig.registry()
    if kind == "image":
        pushed = reg.registry.push_image("team-a/app", "1", [random_layer()])
        event = reg.tag_event("team-a/app", "1")
    elif kind == "index":
        pushed = reg.registry.push_index(
            "team-a/app",
            "1",
            [("amd64", [random_layer()]), ("arm64", [random_layer()])],
        )
        event = reg.tag_event("team-a/app", "1")
    else:
        pushed = reg.registry.push_image("team-a/app", None, [random_layer()])
        event = reg.revision_event("team-a/app", pushed.digest)
    recorder = HookedStore(reg.store, lambda _w: False, lambda: None)
    first = rig.sealer(recorder, clock=lambda: AFTER_GRACE).handle(event)
    assert first.outcome is Outcome.SEALED
    after = reg.snapshot()
    loop = own_write_events(reg, recorder.written)
    assert len(loop) >= 8

    sealer = rig.sealer(reg.store, clock=lambda: AFTER_GRACE)
    outcomes = run_together(*(lambda e=e: sealer.handle(e) for e in loop))

    errors = [o for o in outcomes if isinstance(o, RegsealError | Exception)]
    assert errors == []
    assert {o.outcome for o in outcomes} <= {Outcome.SKIPPED, Outcome.IGNORED}
    assert reg.snapshot() == after
    assert_finished(rig, reg)
