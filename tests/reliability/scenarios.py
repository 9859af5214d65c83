"""Images the reliability suites push, and what sealing them must lead to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from regseal.digest import Digest
from regseal.events import ObjectEvent
from regseal.manifest import ANNOTATION_PLAINTEXT
from tests.support.registry import random_layer

MiB = 1024 * 1024


@dataclass(frozen=True)
class Pushed:
    """What a scenario pushed: each tag's plaintext digest, and the events."""

    tags: dict[tuple[str, str], Digest]
    events: list[ObjectEvent]


@dataclass(frozen=True)
class Scenario:
    name: str
    push: Callable[[object], Pushed]
    clock: Callable[[], float] | None = None


def _oci_image(reg) -> Pushed:
    image = reg.registry.push_image(
        "team-a/app", "1", [random_layer(3000), random_layer(2000)]
    )
    return Pushed(
        {("team-a/app", "1"): image.digest}, [reg.tag_event("team-a/app", "1")]
    )


def _index(reg) -> Pushed:
    index = reg.registry.push_index(
        "team-a/multi", "1", [("amd64", [random_layer()]), ("arm64", [random_layer()])]
    )
    return Pushed(
        {("team-a/multi", "1"): index.digest}, [reg.tag_event("team-a/multi", "1")]
    )


def _two_tags(reg) -> Pushed:
    image = reg.registry.push_image("team-a/app", "x", [random_layer(), random_layer()])
    reg.registry.put_manifest("team-a/app", image.data, "y")
    return Pushed(
        {("team-a/app", "x"): image.digest, ("team-a/app", "y"): image.digest},
        [reg.tag_event("team-a/app", "x"), reg.tag_event("team-a/app", "y")],
    )


def _large_layer(reg) -> Pushed:
    # Incompressible and above one 5 MiB part: the multipart path.
    image = reg.registry.push_image(
        "team-a/big", "1", [random_layer(5 * MiB + 64 * 1024), random_layer(1000)]
    )
    return Pushed(
        {("team-a/big", "1"): image.digest}, [reg.tag_event("team-a/big", "1")]
    )


def _by_digest(reg) -> Pushed:
    image = reg.registry.push_image(
        "team-a/app", None, [random_layer(), random_layer()]
    )
    return Pushed({}, [reg.revision_event("team-a/app", image.digest)])


AFTER_GRACE = 4102444800.0  # year 2100: every grace period has passed

SCENARIOS = [
    Scenario("oci-image", _oci_image),
    Scenario("two-platform-index", _index),
    Scenario("two-tag-image", _two_tags),
    Scenario("multipart-layer", _large_layer),
    Scenario("pushed-by-digest", _by_digest, clock=lambda: AFTER_GRACE),
]


def tag_problems(reg, pushed: Pushed, *, sealed: bool) -> list[str]:
    """Tags that lost their image or went elsewhere.

    Each tag must point at its pushed plaintext or at a sealed manifest made
    from it; with ``sealed``, only the latter.
    """
    problems = []
    for (repository, tag), plaintext in pushed.tags.items():
        try:
            current = reg.registry.tag_digest(repository, tag)
        except Exception as exc:  # a lost tag is the finding
            problems.append(f"{repository}:{tag} unreadable: {exc!r}")
            continue
        if current == plaintext:
            if sealed:
                problems.append(f"{repository}:{tag} still at plaintext {plaintext}")
            continue
        source = (
            reg.registry.manifest(current)
            .get("annotations", {})
            .get(ANNOTATION_PLAINTEXT)
        )
        if source != plaintext.value:
            problems.append(
                f"{repository}:{tag} at {current}, sealed from {source}, "
                f"expected {plaintext}"
            )
    return problems
