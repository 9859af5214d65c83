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


def closed_loopback_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_endpoint_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    port = closed_loopback_port()
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(MINIMAL_POLICY))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("REGSEAL_BUCKET", "registry-c1e7")
    monkeypatch.setenv("REGSEAL_POLICY", f"file:{policy}")

    status = main(["status"])

    error = capsys.readouterr().err
    assert status == 1
    assert error.splitlines() == [
        f"regseal: error: cannot connect to http://127.0.0.1:{port} (bucket "
        "registry-c1e7); check AWS_ENDPOINT_URL and that the service (or the "
        "local stack) is running"
    ]
    assert "Traceback" not in error


MINIMAL_POLICY = {
    "version": "1",
    "teams": {
        "team-a": {
            "repositories": ["team-a/*"],
            "kms_key": "alias/team-a",
            "recipients": [],
        }
    },
}


def test_missing_region_is_one_line(monkeypatch, capsys):
    from botocore.exceptions import NoRegionError

    from regseal import cli

    def no_region(args):
        raise NoRegionError()

    monkeypatch.setenv("REGSEAL_BUCKET", "registry-9a1f")
    parser = cli.build_parser()
    args = parser.parse_args(["status"])
    args.run = no_region
    monkeypatch.setattr(cli, "build_parser", lambda: _FixedParser(args))

    assert cli.main(["status"]) == 1
    assert capsys.readouterr().err == (
        "regseal: error: no AWS region configured (bucket registry-9a1f); "
        "set AWS_DEFAULT_REGION\n"
    )


def test_access_denied_names_the_operation(monkeypatch, capsys):
    from botocore.exceptions import ClientError

    from regseal import cli

    def denied(args):
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2"
        )

    monkeypatch.delenv("REGSEAL_BUCKET", raising=False)
    args = cli.build_parser().parse_args(["status", "--bucket", "registry-77b2"])
    args.run = denied
    monkeypatch.setattr(cli, "build_parser", lambda: _FixedParser(args))

    assert cli.main(["status"]) == 1
    assert capsys.readouterr().err == (
        "regseal: error: AWS refused ListObjectsV2 (bucket registry-77b2) with "
        "AccessDenied; check the credentials in use and the IAM and bucket "
        "policies they fall under\n"
    )


class _FixedParser:
    """Stands in for the parser: returns parsed arguments whose run is replaced."""

    def __init__(self, args):
        self.args = args

    def parse_known_args(self, argv):
        return self.args, []


def test_unwritable_path_anywhere_is_named_without_a_traceback(
    tmp_path, monkeypatch, capsys
):
    from regseal import cli

    target = tmp_path / "no-such-dir" / "out.json"

    def writes(args):
        target.write_text("{}")
        return 0

    args = cli.build_parser().parse_args(["policy", "schema"])
    args.run = writes
    monkeypatch.setattr(cli, "build_parser", lambda: _FixedParser(args))

    assert cli.main(["policy", "schema"]) == 1
    assert capsys.readouterr().err == (
        f"regseal: error: {target}: no such file or directory; check the path given\n"
    )


def test_tuf_keygen_into_a_missing_directory_names_the_argument(tmp_path, capsys):
    missing = tmp_path / "no-such-dir" / "root.key"

    with pytest.raises(SystemExit) as exit_info:
        main(["tuf", "keygen", str(missing)])

    assert exit_info.value.code == 2
    assert (
        "argument path: expected a file in an existing directory, no directory "
        f"'{tmp_path / 'no-such-dir'}'"
    ) in capsys.readouterr().err


def test_decrypt_unknown_option_shows_decrypts_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["decrypt", "oci:a:1", f"oci:{tmp_path}:1", "--bogus"])

    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert error.startswith("usage: regseal decrypt ")
    assert error.rstrip().endswith("error: unrecognized arguments: --bogus")


def test_nested_command_unknown_option_shows_its_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["policy", "schema", "--bogus"])

    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("usage: regseal policy schema ")


def test_decrypt_missing_key_file_names_the_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "decrypt",
                "oci:a:1",
                f"oci:{tmp_path}:1",
                "--key",
                str(tmp_path / "nonexistent.pem"),
            ]
        )

    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert error.startswith("usage: regseal decrypt ")
    assert (
        f"argument --key: expected a readable file, no such "
        f"'{tmp_path / 'nonexistent.pem'}'" in error
    )


def test_missing_credentials_are_one_line(monkeypatch, capsys):
    from botocore.exceptions import NoCredentialsError

    from regseal import cli

    def no_credentials(args):
        raise NoCredentialsError()

    monkeypatch.delenv("REGSEAL_BUCKET", raising=False)
    args = cli.build_parser().parse_args(["seal", "--all"])
    args.run = no_credentials
    monkeypatch.setattr(cli, "build_parser", lambda: _FixedParser(args))

    assert cli.main(["seal", "--all"]) == 1
    assert capsys.readouterr().err == (
        "regseal: error: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE\n"
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "AccessDenied",
            "s3://registry-5e/k: GetObject refused with AccessDenied; check the AWS "
            "credentials in use and the IAM and bucket policies they fall under",
        ),
        (
            "NoSuchBucket",
            "s3://registry-5e/k: GetObject failed, no bucket 'registry-5e'; check "
            "--bucket or REGSEAL_BUCKET (and AWS_ENDPOINT_URL)",
        ),
    ],
)
def test_storage_names_what_to_check_when_s3_refuses(code, expected):
    from botocore.exceptions import ClientError

    from regseal.storage import _translate

    error = ClientError({"Error": {"Code": code, "Message": "x"}}, "GetObject")

    assert str(_translate(error, "GetObject", "registry-5e", "k")) == expected
