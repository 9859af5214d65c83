import hashlib

import pytest
from tuf.api.metadata import TargetFile

from regseal.errors import DigestError, FormatError, TargetRollbackError
from regseal.tuf.targets import (
    TargetCustom,
    TargetRecord,
    canonical_value,
    parse_target_path,
    target_path,
)
from regseal.tuf.updates import check_newer


def test_target_path_names_repository_and_tag():
    assert target_path("team-a/app", "v1.2") == "team-a/app/tags/v1.2"
    assert parse_target_path("team-a/app/tags/v1.2") == ("team-a/app", "v1.2")


@pytest.mark.parametrize(
    ("repository", "tag"),
    [
        ("a", "tags"),
        ("a/tags", "b"),
        ("a/tags/b", "tags"),
        ("tags/tags", "tags"),
        ("team-a/x__y/z.w", "_latest-1.0"),
    ],
)
def test_target_path_round_trips_even_with_a_tags_component(repository, tag):
    assert parse_target_path(target_path(repository, tag)) == (repository, tag)


def test_target_paths_of_different_tags_never_collide():
    pairs = [
        (r, t)
        for r in ("a", "a/tags", "a/tags/b", "a/b", "tags", "tags/a")
        for t in ("b", "tags", "a", "v1")
    ]
    paths = {target_path(r, t) for r, t in pairs}
    assert len(paths) == len(pairs)


@pytest.mark.parametrize(
    "repository",
    ["", "Team/app", "a//b", "/a", "a/", "../a", "a/../b", "a/-b", "a b", "a/b:c"],
)
def test_bad_repository_names_are_refused(repository):
    with pytest.raises(FormatError, match="expected an OCI repository name"):
        target_path(repository, "v1")


@pytest.mark.parametrize(
    "tag", ["", "-v1", ".v1", "a/b", "a:b", "x" * 129, "sha256:ab"]
)
def test_bad_tags_are_refused(tag):
    with pytest.raises(FormatError, match="expected an OCI tag"):
        target_path("team-a/app", tag)


@pytest.mark.parametrize(
    "path", ["team-a/app/v1", "team-a/app/tags/", "tags/v1", "team-a/app/tags/a/b"]
)
def test_parse_target_path_refuses_other_shapes(path):
    with pytest.raises(FormatError):
        parse_target_path(path)


def test_canonical_value_refuses_floats_naming_the_field():
    with pytest.raises(FormatError, match=r"custom\.sizes\[1\]: .*no floats"):
        canonical_value({"sizes": [1, 2.5]})


@pytest.mark.parametrize("value", [b"x", {1: "a"}, {"a": {1, 2}}, float("nan")])
def test_canonical_value_refuses_what_canonical_json_cannot_encode(value):
    with pytest.raises(FormatError):
        canonical_value(value)


def test_canonical_value_copies_tuples_as_lists():
    assert canonical_value({"a": (1, "b", None, True)}) == {"a": [1, "b", None, True]}


def test_target_custom_round_trips_through_json():
    custom = TargetCustom(
        media_type="application/vnd.oci.image.manifest.v1+json",
        plaintext_digest="sha256:" + "12" * 32,
        platforms=("linux/amd64", "linux/arm64/v8"),
        kms_key="arn:aws:kms:eu-west-1:111122223333:key/k",
        recipients=("jwe:a", "jwe:b"),
        extra={"sealedBy": "regseal", "layers": 3},
    )
    data = custom.to_json()
    assert data == {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "plaintextDigest": "sha256:" + "12" * 32,
        "platforms": ["linux/amd64", "linux/arm64/v8"],
        "kmsKey": "arn:aws:kms:eu-west-1:111122223333:key/k",
        "recipients": ["jwe:a", "jwe:b"],
        "sealedBy": "regseal",
        "layers": 3,
    }
    assert TargetCustom.from_json(data) == custom


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"media_type": "json"}, FormatError, "custom.mediaType"),
        ({"plaintext_digest": "sha256:zz"}, DigestError, "expected a sha256"),
        ({"platforms": ("linux",)}, FormatError, "custom.platforms"),
        ({"recipients": ("",)}, FormatError, "custom.recipients"),
        ({"extra": {"ratio": 0.5}}, FormatError, "no floats"),
        ({"extra": {"mediaType": "x/y"}}, FormatError, "clash"),
    ],
)
def test_target_custom_validates_fields(kwargs, error, match):
    fields = {"media_type": "application/vnd.oci.image.manifest.v1+json", **kwargs}
    with pytest.raises(error, match=match):
        TargetCustom(**fields)


def test_target_record_describes_the_manifest_bytes():
    data = b'{"schemaVersion":2}'
    record = TargetRecord.for_manifest(
        "team-a/app", "v1", data, {"mediaType": "application/json"}
    )
    target = record.to_target_file()
    assert target.path == "team-a/app/tags/v1"
    assert target.length == len(data)
    assert target.hashes == {"sha256": hashlib.sha256(data).hexdigest()}
    assert target.custom == {"mediaType": "application/json"}
    assert TargetRecord.from_target_file(target) == record


def test_target_record_refuses_empty_manifest():
    with pytest.raises(FormatError, match="expected the sealed manifest's bytes"):
        TargetRecord.for_manifest("team-a/app", "v1", b"", {})


def test_target_custom_carries_sealed_at_as_integer_milliseconds():
    custom = TargetCustom(
        media_type="application/x.a+json", sealed_at=1_796_000_000_123
    )

    stored = custom.to_json()

    assert stored["sealedAt"] == 1_796_000_000_123
    assert TargetCustom.from_json(stored) == custom
    assert "sealedAt" not in TargetCustom(media_type="application/x.a+json").to_json()


@pytest.mark.parametrize("value", [1.5, -1, True, "1796000000123"])
def test_target_custom_refuses_a_sealed_at_that_is_not_milliseconds(value):
    with pytest.raises(FormatError, match=r"custom.sealedAt: expected milliseconds"):
        TargetCustom(media_type="application/x.a+json", sealed_at=value)


def _target(content: bytes, sealed_at: int | None) -> TargetFile:
    custom = TargetCustom(media_type="application/x.a+json", sealed_at=sealed_at)
    return TargetRecord.for_manifest(
        "team-a/app", "1", content, custom
    ).to_target_file()


@pytest.mark.parametrize(
    ("current", "new"),
    [(None, 5), (None, None), (5, 6)],
    ids=["current-predates-the-field", "neither-has-it", "new-is-later"],
)
def test_check_newer_lets_a_target_move_forward(current, new):
    check_newer(_target(b"old", current), _target(b"new", new))


@pytest.mark.parametrize(
    ("current", "new", "why"),
    [
        (6, 5, "it was sealed at 5 ms, the current target at 6 ms"),
        (6, 6, "it was sealed at 6 ms, the current target at 6 ms"),
        (6, None, "it has no seal time, the current target was sealed at 6 ms"),
    ],
    ids=["earlier", "same-time", "no-time"],
)
def test_check_newer_refuses_a_target_not_sealed_later(current, new, why):
    old, older = _target(b"old", current), _target(b"older", new)

    with pytest.raises(TargetRollbackError) as caught:
        check_newer(old, older)

    assert caught.value.path == "team-a/app/tags/1"
    assert caught.value.current == "sha256:" + hashlib.sha256(b"old").hexdigest()
    assert caught.value.refused == "sha256:" + hashlib.sha256(b"older").hexdigest()
    assert caught.value.why == f"{why} (sealedAt)"
