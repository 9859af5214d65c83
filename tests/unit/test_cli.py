import json

import pytest

from regseal.cli import main


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])

    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_local_up_requires_a_state_file(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["local", "up"])

    assert exit_info.value.code == 2
    assert "--state" in capsys.readouterr().err


def test_sample_image_command_prints_the_layout_it_wrote(tmp_path, capsys):
    status = main(
        ["local", "sample-image", str(tmp_path / "img"), "--big-layer-mib", "1"]
    )

    printed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert printed["tag"] == "latest"
    assert len(printed["layers"]) == 3
    assert (tmp_path / "img" / "index.json").is_file()


def test_regseal_errors_become_a_message_and_status_1(tmp_path, capsys):
    policy = tmp_path / "policy.json"
    policy.write_text("[]")

    status = main(
        [
            "local",
            "up",
            "--state",
            str(tmp_path / "state.json"),
            "--policy",
            str(policy),
        ]
    )

    assert status == 1
    assert "regseal: error: expected a JSON object in policy file" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "state.json").exists()


def test_most_verbose_logging_keeps_botocore_bodies_out():
    import logging

    from regseal.cli import _configure_logging

    _configure_logging(2)

    assert logging.getLogger("regseal").getEffectiveLevel() == logging.DEBUG
    # botocore's DEBUG lines carry KMS plaintext: they must never be emitted.
    for name in ("botocore", "botocore.endpoint", "botocore.parsers", "urllib3"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name


def test_decrypt_src_creds_without_a_password_is_refused_without_echoing_it(
    tmp_path, capsys
):
    status = main(
        [
            "decrypt",
            "--src-creds",
            "user-without-colon-4d2e",
            "docker://registry.example/team-a/app:1",
            f"oci:{tmp_path / 'out'}:1",
        ]
    )

    error = capsys.readouterr().err
    assert status == 1
    assert "--src-creds: expected USERNAME:PASSWORD, both non-empty" in error
    assert "user-without-colon-4d2e" not in error
    assert not (tmp_path / "out").exists()
