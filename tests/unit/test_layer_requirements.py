"""layers/regseal/requirements.txt stays the pinned form of pyproject's deps."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pinned() -> list[Requirement]:
    text = (ROOT / "layers" / "regseal" / "requirements.txt").read_text()
    return [
        Requirement(line)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_every_layer_requirement_is_pinned_to_one_version() -> None:
    requirements = pinned()
    names = [canonicalize_name(r.name) for r in requirements]

    assert len(names) == len(set(names))
    for requirement in requirements:
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", requirement
        assert requirement.marker is None, requirement


def test_layer_pins_every_runtime_dependency_within_its_range() -> None:
    by_name = {canonicalize_name(r.name): r for r in pinned()}

    for dependency in declared():
        pin = by_name[canonicalize_name(dependency.name)]
        (exact,) = pin.specifier

        assert pin.extras == dependency.extras, dependency
        assert dependency.specifier.contains(exact.version), (dependency, pin)
