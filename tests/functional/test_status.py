"""`regseal status` says what each tag is, also for what the seal leaves alone."""

from __future__ import annotations

import json

import pytest

from regseal import ocicrypt
from regseal.cli import main
from regseal.manifest import ANNOTATION_PLAINTEXT, OCI_CONFIG, OCI_MANIFEST, dumps
from regseal.status import tag_status
from tests.functional.conftest import BUCKET
from tests.support.registry import OCI_GZIP, random_layer

ENCRYPTED = OCI_GZIP + "+encrypted"


@pytest.fixture
def cli_env(stack, tmp_path, monkeypatch):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(stack.policy))
    monkeypatch.setenv("REGSEAL_BUCKET", BUCKET)
    monkeypatch.setenv("REGSEAL_POLICY", f"file:{policy}")
    return policy


def status_of(stack, repository, tag):
    return tag_status(stack.sealer, repository, tag, stack.sealer.policies.get())


def shown(capsys, repository):
    """The text rows of ``regseal status REPO``, by tag."""
    assert main(["status", repository]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines()[1:]:
        name, rest = line.split(None, 1)
        rows[name.removeprefix(repository + ":")] = rest
    return rows


def push_annotated(stack, repository, tag, annotations):
    """An image whose one layer is typed +encrypted, with ``annotations``."""
    data, _, layers = stack.registry.image_manifest(
        repository, [random_layer()], layer_types=[ENCRYPTED]
    )
    doc = json.loads(data)
    doc["layers"][0]["annotations"] = annotations
    digest = stack.registry.put_manifest(repository, dumps(doc), tag)
    return digest, layers[0]


def test_layer_typed_encrypted_without_annotations_is_refused_not_sealed(
    stack, cli_env, capsys
):
    pushed = stack.registry.push_image(
        "team-a/app", "fake", [random_layer()], layer_types=[ENCRYPTED]
    )

    row = status_of(stack, "team-a/app", "fake")

    assert (row.state, row.team, row.digest) == (
        "refused",
        "team-a",
        pushed.digest.value,
    )
    assert f"layer 0 ({pushed.layers[0]})" in row.detail
    assert "no ocicrypt layer" in row.detail
    assert ocicrypt.ANNOTATION_PUBOPTS in row.detail
    assert shown(capsys, "team-a/app")["fake"] == f"refused: {row.detail}"


def test_fake_encrypted_layer_beside_a_plaintext_one_is_refused(stack):
    pushed = stack.registry.push_image(
        "team-a/app",
        "mixed",
        [random_layer(), random_layer()],
        layer_types=[OCI_GZIP, ENCRYPTED],
    )

    row = status_of(stack, "team-a/app", "mixed")

    assert row.state == "refused"
    assert f"layer 1 ({pushed.layers[1]})" in row.detail


def test_layer_encrypted_by_another_tool_stays_encrypted(stack):
    push_annotated(
        stack,
        "team-a/app",
        "skopeo",
        {ocicrypt.ANNOTATION_PUBOPTS: "e30=", ocicrypt.ANNOTATION_JWE: "eA=="},
    )

    row = status_of(stack, "team-a/app", "skopeo")

    assert (row.state, row.detail) == ("encrypted", "keys: jwe")


def test_zero_layer_image_shows_no_layers(stack, cli_env, capsys):
    stack.registry.push_image("team-a/app", "empty", [])

    row = status_of(stack, "team-a/app", "empty")

    assert (row.state, row.detail) == ("no-layers", "image manifest with no layers")
    assert shown(capsys, "team-a/app")["empty"].split(None, 3) == [
        "no-layers",
        "-",
        "-",
        "image manifest with no layers",
    ]


def test_plaintext_tag_shows_the_team_the_policy_gives_it(stack, cli_env, capsys):
    stack.registry.push_image("team-a/app", "1", [random_layer()])
    stack.registry.push_image("other/app", "1", [random_layer()])

    assert status_of(stack, "team-a/app", "1").team == "team-a"
    assert status_of(stack, "other/app", "1").team is None
    assert shown(capsys, "team-a/app")["1"].split() == [
        "plaintext",
        "team-a",
        "-",
        "reachable",
    ]


def test_plaintext_tag_under_an_unmatched_fail_policy_has_no_team(stack):
    stack.set_policy({**stack.policy, "unmatched": "fail"})
    stack.registry.push_image("zzz/app", "1", [random_layer()])

    row = status_of(stack, "zzz/app", "1")

    assert (row.state, row.team) == ("plaintext", None)


def test_artifacts_say_what_they_are(stack, cli_env, capsys):
    config = stack.registry.put_blob("team-a/app", b"{}")
    payload = stack.registry.put_blob("team-a/app", b"sbom")
    octet = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.value, "size": 2},
        "layers": [
            {
                "mediaType": "application/octet-stream",
                "digest": payload.value,
                "size": 4,
            }
        ],
    }
    typed = {**octet, "artifactType": "application/vnd.example.sbom.v1+json"}
    stack.registry.put_manifest("team-a/app", dumps(octet), "octet")
    stack.registry.put_manifest("team-a/app", dumps(typed), "sbom")

    octet_row = status_of(stack, "team-a/app", "octet")
    typed_row = status_of(stack, "team-a/app", "sbom")

    assert (octet_row.state, octet_row.detail) == (
        "not-image",
        f"artifact: config {OCI_CONFIG}, layers application/octet-stream",
    )
    assert (typed_row.state, typed_row.detail) == (
        "not-image",
        "artifact application/vnd.example.sbom.v1+json",
    )
    assert shown(capsys, "team-a/app")["sbom"].split(None, 3) == [
        "not-image",
        "-",
        "-",
        "artifact application/vnd.example.sbom.v1+json",
    ]


def test_image_sealed_around_a_fake_encrypted_layer_is_refused_not_sealed(stack):
    # What earlier versions wrote for an image mixing a plaintext layer with
    # a fake encrypted one: the sealed manifest kept the fake layer.
    pushed = stack.registry.push_image(
        "team-a/app", "old", [random_layer()], layer_types=[ENCRYPTED]
    )
    doc = stack.registry.manifest(pushed.digest)
    doc["annotations"] = {ANNOTATION_PLAINTEXT: pushed.digest.value}
    stack.registry.put_manifest("team-a/app", dumps(doc), "old")

    row = status_of(stack, "team-a/app", "old")

    assert (row.state, row.team) == ("refused", "team-a")
    assert f"layer 0 ({pushed.layers[0]})" in row.detail
