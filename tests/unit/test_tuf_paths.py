import pytest
from tuf.api.metadata import DelegatedRole

from regseal.errors import PolicyError
from regseal.tuf.paths import (
    globs_overlap,
    path_patterns,
    repository_matches,
)
from regseal.tuf.targets import target_path


def _role(globs, max_depth=8):
    return DelegatedRole("team", ["k"], 1, True, paths=path_patterns(globs, max_depth))


def test_one_level_glob_becomes_one_pattern():
    assert path_patterns(["team-a/*"]) == ["team-a/*/tags/*"]


def test_recursive_glob_becomes_one_pattern_per_depth():
    assert path_patterns(["team-a/**"], max_depth=4) == [
        "team-a/*/tags/*",
        "team-a/*/*/tags/*",
        "team-a/*/*/*/tags/*",
    ]


def test_star_does_not_cross_slash_in_tuf_patterns():
    role = _role(["team-a/*"])
    assert role.is_delegated_path(target_path("team-a/app", "v1"))
    assert not role.is_delegated_path(target_path("team-a/app/sub", "v1"))
    assert not role.is_delegated_path(target_path("team-a", "v1"))
    assert not role.is_delegated_path(target_path("team-b/app", "v1"))


def test_recursive_glob_covers_every_depth_up_to_the_limit():
    role = _role(["team-a/**"], max_depth=4)
    for repository in ("team-a/x", "team-a/x/y", "team-a/x/y/z"):
        assert role.is_delegated_path(target_path(repository, "v1"))
    assert not role.is_delegated_path(target_path("team-a/x/y/z/w", "v1"))
    assert not role.is_delegated_path(target_path("team-a", "v1"))


def test_patterns_agree_with_repository_matches():
    globs = ["team-a/app-*", "shared/team-a/**", "exact/name"]
    role = _role(globs, max_depth=5)
    for repository in [
        "team-a/app-1",
        "team-a/app",
        "team-a/app-1/x",
        "shared/team-a/x/y",
        "shared/team-a",
        "exact/name",
        "exact/names",
    ]:
        by_glob = any(repository_matches(g, repository, 5) for g in globs)
        assert role.is_delegated_path(target_path(repository, "t")) == by_glob


@pytest.mark.parametrize(
    "glob", ["", "team-a/**/x", "**", "Team/*", "team-a/[ab]", "a//b", "a/-b"]
)
def test_bad_globs_are_refused(glob):
    with pytest.raises(PolicyError):
        path_patterns([glob])


def test_no_globs_is_refused():
    with pytest.raises(PolicyError, match="at least one"):
        path_patterns([])


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("team-a/*", "team-b/*", False),
        ("team-a/*", "team-a/app", True),
        ("team-a/*", "team-*/app", True),
        ("team-a/**", "team-a/x/y", True),
        ("team-a/*", "team-a/x/y", False),
        ("team-a/app-?", "team-a/app-10", False),
        ("team-a/app-?", "team-a/app-1", True),
        ("team-a/*-prod", "team-a/web-*", True),
        ("team-a/a*", "team-a/b*", False),
        ("*/app", "team-a/*", True),
    ],
)
def test_glob_overlap(first, second, overlap):
    assert bool(globs_overlap([first], [second])) is overlap
    assert bool(globs_overlap([second], [first])) is overlap
