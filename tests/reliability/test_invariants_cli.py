"""``regseal check`` runs the invariant checker for operators."""

from __future__ import annotations

import json

from regseal.cli import main
from tests.support.registry import random_layer


def test_check_under_unmatched_fail_reports_the_unclaimed_repository_and_goes_on(
    rig, tmp_path, monkeypatch, capsys
):
    reg = rig.registry()
    reg.registry.push_image("team-a/app", "1", [random_layer()])
    rig.sealer(reg.store).handle(reg.tag_event("team-a/app", "1"))
    reg.registry.push_image("team-a/new", "1", [random_layer()])  # not sealed yet
    reg.registry.push_image("zzz/app", "1", [random_layer()])
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({**rig.policy, "unmatched": "fail"}))
    monkeypatch.setenv("REGSEAL_BUCKET", reg.bucket)
    monkeypatch.setenv("REGSEAL_POLICY", f"file:{policy}")

    status = main(["check", "--finished"])
    out = capsys.readouterr()

    assert status == 1
    assert sorted(out.out.splitlines()) == [
        "[repository-claimed] zzz/app: repository 'zzz/app' matches no team of "
        "policy 'rel-1' and 'unmatched' is 'fail'",
        "[tag-sealed] team-a/new:1: points at "
        f"{reg.registry.tag_digest('team-a/new', '1')}, which leads to plaintext "
        "layers",
    ]
    assert "3 repositories, 3 tags" in out.err


def test_check_of_a_sealed_bucket_passes_and_of_a_broken_one_lists_it(
    rig, rsa_keypair, tmp_path, monkeypatch, capsys
):
    reg = rig.registry()
    reg.registry.push_image("team-a/app", "1", [random_layer()])
    rig.sealer(reg.store).handle(reg.tag_event("team-a/app", "1"))
    reg.registry.push_image("team-a/new", "1", [random_layer()])  # not sealed yet
    key = tmp_path / "key.pem"
    key.write_bytes(rsa_keypair.private_pem)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(rig.policy))
    monkeypatch.setenv("REGSEAL_BUCKET", reg.bucket)
    monkeypatch.setenv("REGSEAL_POLICY", f"file:{policy}")

    mid_way = main(["check", "--jwe-key", str(key), "--kms"])
    mid_way_out = capsys.readouterr()
    finished = main(["check", "--jwe-key", str(key), "--finished"])
    finished_out = capsys.readouterr()
    only_app = main(["check", "--finished", "--repository", "team-a/app"])

    assert mid_way == 0
    assert mid_way_out.out == ""
    assert "2 repositories, 2 tags, 2 revisions, 1 sealed layers opened" in (
        mid_way_out.err
    )
    assert finished == 1
    assert finished_out.out.splitlines() == [
        "[tag-sealed] team-a/new:1: points at "
        f"{reg.registry.tag_digest('team-a/new', '1')}, which leads to plaintext layers"
    ]
    assert only_app == 0


def test_check_takes_bucket_and_policy_options_like_the_other_commands(
    rig, tmp_path, monkeypatch, capsys
):
    reg = rig.registry()
    reg.registry.push_image("team-a/new", "1", [random_layer()])
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(rig.policy))
    monkeypatch.delenv("REGSEAL_BUCKET", raising=False)
    monkeypatch.delenv("REGSEAL_POLICY", raising=False)

    status = main(
        ["check", "--finished", "--bucket", reg.bucket, "--policy", f"file:{policy}"]
    )

    out = capsys.readouterr()
    assert status == 1
    assert out.out.startswith("[tag-sealed] team-a/new:1: points at ")
    assert "1 repositories, 1 tags" in out.err
    assert main(["check"]) == 1
    assert capsys.readouterr().err == (
        "regseal: error: which registry bucket? give --bucket NAME or set "
        "REGSEAL_BUCKET\n"
    )
