"""`regseal seal`, `regseal status` and `regseal rewrap` against moto."""

from __future__ import annotations

import json

import pytest

from regseal.cli import main
from tests.functional.conftest import BUCKET
from tests.support.registry import random_layer


@pytest.fixture
def cli_env(stack, tmp_path, monkeypatch):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(stack.policy))
    monkeypatch.setenv("REGSEAL_BUCKET", BUCKET)
    monkeypatch.setenv("REGSEAL_POLICY", f"file:{policy}")
    return policy


def test_seal_then_status_then_rewrap(stack, cli_env, capsys):
    plain = stack.registry.push_image("team-a/app", "1", [random_layer()])
    stack.registry.push_image("other/app", "1", [random_layer()])

    assert main(["seal", "--all", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["outcomes"]["sealed"] == 1
    assert summary["skipped"] == {
        # other/app's tag and its revision; team-a/app's revision was hidden.
        "no team claims the repository": 2,
        "revision no longer exists": 1,
    }

    assert main(["status", "--json"]) == 0
    rows = {
        (r["repository"], r["tag"]): r
        for r in map(json.loads, capsys.readouterr().out.splitlines())
    }
    assert rows[("team-a/app", "1")]["state"] == "sealed"
    assert rows[("team-a/app", "1")]["plaintext_digest"] == plain.digest.value
    assert rows[("team-a/app", "1")]["plaintext_reachable"] is False
    assert rows[("other/app", "1")]["state"] == "plaintext"

    assert main(["rewrap", "team-a/app:1", "--dry-run"]) == 0
    assert "already wrapped for the current keys" in capsys.readouterr().out

    before = stack.registry.tag_digest("team-a/app", "1")
    assert main(["seal", "team-a/app:1", "--rekey"]) == 0
    assert "team-a/app:1: sealed: re-keyed" in capsys.readouterr().out
    assert stack.registry.tag_digest("team-a/app", "1") != before


def test_seal_needs_a_selection(cli_env, capsys):
    assert main(["seal"]) == 2
    assert "give REPO[:TAG]" in capsys.readouterr().err


def test_bad_selection_is_a_clear_error(cli_env, capsys):
    assert main(["status", "Team-A/App"]) == 1
    assert "expected a repository name" in capsys.readouterr().err


def test_status_of_a_missing_tag_says_so(cli_env, capsys):
    assert main(["status", "team-a/app:nope"]) == 1
    assert "no tag matches 'team-a/app:nope'" in capsys.readouterr().err


def test_commands_name_the_missing_bucket(stack, monkeypatch, capsys):
    monkeypatch.delenv("REGSEAL_BUCKET", raising=False)
    assert main(["status"]) == 1
    assert "give --bucket NAME or set REGSEAL_BUCKET" in capsys.readouterr().err


def test_status_says_why_a_tag_is_broken(stack, cli_env, capsys):
    layout = stack.sealer.layout
    no_blob = stack.registry.push_image("team-a/broken", "no-blob", [random_layer()])
    no_revision = stack.registry.push_image("team-a/broken", "no-rev", [random_layer()])
    garbage = stack.registry.push_image("team-a/broken", "garbage", [random_layer()])
    stack.registry.push_image("team-a/broken", "bad-link", [random_layer()])
    stack.registry.push_image("team-a/broken", "fine", [random_layer()])
    stack.store.delete(layout.blob_data(no_blob.digest))
    stack.store.delete(layout.revision_link("team-a/broken", no_revision.digest))
    stack.s3.put_object(
        Bucket=BUCKET, Key=layout.blob_data(garbage.digest), Body=b"{not json"
    )
    bad_link = layout.tag_link("team-a/broken", "bad-link")
    stack.s3.put_object(Bucket=BUCKET, Key=bad_link, Body=b"sha256:zz\n")

    assert main(["status", "team-a/broken"]) == 0
    shown = {}
    for line in capsys.readouterr().out.splitlines()[1:]:
        name, rest = line.split(None, 1)
        shown[name.removeprefix("team-a/broken:")] = rest
    assert main(["status", "team-a/broken", "--json"]) == 0
    rows = {r["tag"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}

    blob = layout.blob_data(no_blob.digest)
    revision = layout.revision_link("team-a/broken", no_revision.digest)
    assert shown["no-blob"] == f"broken: manifest {no_blob.digest} missing (no {blob})"
    assert shown["no-rev"] == (
        f"broken: manifest {no_revision.digest} not in the repository (no {revision})"
    )
    assert shown["garbage"].startswith(
        f"broken: manifest {garbage.digest} unreadable: "
        f"{layout.blob_data(garbage.digest)}: content does not match its digest"
    )
    assert shown["bad-link"].startswith(
        f"broken: tag link unreadable: link {bad_link!r}: expected exactly "
    )
    assert shown["fine"].split()[0] == "plaintext"
    assert rows["no-blob"]["state"] == "broken"
    assert rows["no-blob"]["digest"] == no_blob.digest.value
    assert rows["no-blob"]["detail"] == (
        f"manifest {no_blob.digest} missing (no {layout.blob_data(no_blob.digest)})"
    )
    assert rows["fine"]["state"] == "plaintext"


def test_status_of_a_tag_whose_link_vanished_names_the_link(stack):
    from regseal import status

    row = status.tag_status(
        stack.sealer, "team-a/app", "gone", stack.sealer.policies.get()
    )

    key = stack.sealer.layout.tag_link("team-a/app", "gone")
    assert (row.state, row.digest, row.detail) == (
        "broken",
        None,
        f"tag link {key} missing",
    )


def test_rewrap_with_a_missing_key_file_names_the_option(cli_env, tmp_path, capsys):
    missing = tmp_path / "nonexistent.pem"
    with pytest.raises(SystemExit) as exit_info:
        main(["rewrap", "team-a/app:1", "--key", str(missing)])

    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert error.startswith("usage: regseal rewrap ")
    assert f"argument --key: expected a readable file, no such '{missing}'" in error


def test_rekey_with_a_missing_key_file_names_the_option(cli_env, tmp_path, capsys):
    missing = tmp_path / "nonexistent.pem"
    with pytest.raises(SystemExit) as exit_info:
        main(["seal", "--rekey", "team-a/app:1", "--key", str(missing)])

    assert exit_info.value.code == 2
    assert f"argument --key: expected a readable file, no such '{missing}'" in (
        capsys.readouterr().err
    )


def test_checkpoint_in_a_missing_directory_names_the_option(cli_env, tmp_path, capsys):
    checkpoint = tmp_path / "nonexistent-dir" / "cp"
    with pytest.raises(SystemExit) as exit_info:
        main(["seal", "--all", "--dry-run", "--checkpoint", str(checkpoint)])

    assert exit_info.value.code == 2
    assert (
        "argument --checkpoint: expected a file in an existing directory, no "
        f"directory '{tmp_path / 'nonexistent-dir'}'"
    ) in capsys.readouterr().err


def test_garbage_checkpoint_is_refused_and_left_alone(stack, cli_env, tmp_path, capsys):
    stack.registry.push_image("team-a/app", "1", [random_layer()])
    checkpoint = tmp_path / "notes.txt"
    checkpoint.write_text("shopping list\nmilk\n")

    assert main(["seal", "--all", "--checkpoint", str(checkpoint)]) == 1

    assert capsys.readouterr().err == (
        f"regseal: error: checkpoint {checkpoint}: expected JSON lines of "
        '{"key": ..., "outcome": ..., "reason": ...} as regseal seal writes them, '
        "but line 1 is not a record: 'shopping list'\n"
    )
    assert checkpoint.read_text() == "shopping list\nmilk\n"
    assert stack.registry.tag_digest("team-a/app", "1") is not None
    assert "encrypted" not in json.dumps(
        stack.registry.manifest(stack.registry.tag_digest("team-a/app", "1"))
    )


def test_checkpoint_cut_short_is_resumed(stack, cli_env, tmp_path, capsys):
    stack.registry.push_image("team-a/app", "1", [random_layer()])
    checkpoint = tmp_path / "cp.jsonl"
    checkpoint.write_text('{"key": "docker/registry/v2/repositories/team-a/ap')

    assert main(["seal", "--all", "--json", "--checkpoint", str(checkpoint)]) == 0

    assert json.loads(capsys.readouterr().out)["outcomes"]["sealed"] == 1
    lines = checkpoint.read_text().splitlines()
    assert lines[0] == '{"key": "docker/registry/v2/repositories/team-a/ap'
    assert all(json.loads(line)["key"] for line in lines[1:])


@pytest.mark.parametrize("command", ["seal", "rewrap"])
def test_a_selection_that_matches_nothing_is_an_error(stack, cli_env, command, capsys):
    stack.registry.push_image("team-a/app", "1", [random_layer()])

    assert main([command, "no/such:v1"]) == 1
    assert capsys.readouterr().err == (
        "regseal: error: no repository or tag in the bucket matches 'no/such:v1'\n"
    )
    assert main([command, "team-a/app:v2"]) == 1
    assert "matches 'team-a/app:v2'" in capsys.readouterr().err
    assert main([command, "nobody/*"]) == 1
    assert "matches 'nobody/*'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["seal", "rewrap", "status"])
def test_an_empty_tag_is_refused_by_name(stack, cli_env, command, capsys):
    stack.registry.push_image("team-a/app", "1", [random_layer()])

    assert main([command, "team-a/app:"]) == 1
    assert capsys.readouterr().err == (
        "regseal: error: 'team-a/app:': expected a tag of 1-128 characters "
        "[A-Za-z0-9_.-] after ':', got ''\n"
    )


def test_rewrap_with_a_wrong_key_says_it_cannot_open_the_layers(
    stack, cli_env, tmp_path, capsys
):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    stack.registry.push_image("team-a/app", "1", [random_layer()])
    assert main(["seal", "team-a/app:1"]) == 0
    capsys.readouterr()
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    right = tmp_path / "right.pem"
    right.write_bytes(
        stack.private_keys[0].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    assert main(["rewrap", "team-a/app:1", "--key", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(
        "team-a/app:1: failed: the --key private keys cannot open the layer keys: "
    )
    assert " of team-a/app: no key could unwrap it: JWE: " in out
    assert "already wrapped" not in out

    assert main(["rewrap", "team-a/app:1", "--key", str(right)]) == 0
    assert capsys.readouterr().out == (
        "team-a/app:1: skipped: already wrapped for the current keys\n"
    )
