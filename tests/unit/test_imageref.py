"""Source and destination references in skopeo's transport syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from regseal.digest import Digest
from regseal.errors import FormatError
from regseal.imageref import (
    LayoutReference,
    RegistryReference,
    parse_destination,
    parse_source,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "docker://127.0.0.1:5000/team-a/app:1.0",
            RegistryReference("127.0.0.1:5000", "team-a/app", "1.0"),
        ),
        ("docker://registry.example/app", RegistryReference("registry.example", "app")),
        (
            f"docker://localhost/a/b/c@{DIGEST}",
            RegistryReference("localhost", "a/b/c", None, Digest(DIGEST)),
        ),
        (
            "docker://[::1]:443/x:v_1.2-rc",
            RegistryReference("[::1]:443", "x", "v_1.2-rc"),
        ),
        ("oci:/tmp/dir:latest", LayoutReference(Path("/tmp/dir"), "latest")),
        ("oci:relative", LayoutReference(Path("relative"), None)),
    ],
)
def test_sources_parse_like_skopeo(text, expected):
    assert parse_source(text) == expected


def test_registry_reference_knows_loopback_and_its_api_reference():
    assert parse_source("docker://127.0.0.1:5000/a:1").is_loopback
    assert parse_source("docker://localhost/a").is_loopback
    assert parse_source("docker://[::1]:5000/a").is_loopback
    assert not parse_source("docker://127.0.0.2.example/a").is_loopback
    assert parse_source("docker://h/a").reference == "latest"
    assert parse_source(f"docker://h/a@{DIGEST}").reference == DIGEST
    assert str(parse_source("docker://h:1/a/b")) == "docker://h:1/a/b:latest"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("docker://noslash", "expected docker://HOST/REPOSITORY"),
        ("docker://host/Upper/Case:1", "expected a repository name"),
        ("docker://host/a:bad tag", "expected a tag"),
        ("docker://host/a@sha256:zz", "expected a sha256 digest"),
        ("oci:", "expected oci:DIR"),
        ("oci:dir:", "expected a tag after"),
        ("dir:/tmp/x", "expected a source docker://"),
    ],
)
def test_bad_sources_are_refused_with_the_expected_form(text, needle):
    with pytest.raises(FormatError, match=needle):
        parse_source(text)


def test_destinations_are_oci_layouts_only():
    assert parse_destination("oci:out:v1") == LayoutReference(Path("out"), "v1")
    with pytest.raises(FormatError, match="expected a destination oci:DIR"):
        parse_destination("docker://h/a:1")
