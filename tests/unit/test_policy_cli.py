"""``regseal policy show|validate|set|schema`` on files, S3 and SSM (moto)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from regseal.cli import main
from regseal.policy import schema_json


def policy_doc(version="v1", pattern="team-a/*", pem=None):
    team = {"repositories": [pattern], "kms_key": "alias/regseal-team-a"}
    if pem:
        team["recipients"] = [{"name": "ops", "public_key": pem}]
    return {"version": version, "teams": {"team-a": team}}


def write(path, doc):
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("REGSEAL_POLICY", raising=False)
    with mock_aws():
        yield


# --------------------------------------------------------------------------
# validate


def test_validate_accepts_a_good_policy_and_summarizes_it(tmp_path, capsys):
    path = write(tmp_path / "p.json", policy_doc())

    status = main(["policy", "validate", str(path)])

    assert status == 0
    out = capsys.readouterr().out
    assert f"{path}: valid policy 'v1'" in out
    assert "team-a (1 patterns, alias/regseal-team-a, 0 recipients)" in out


def test_validate_names_the_bad_field_of_each_bad_file(tmp_path, capsys):
    good = write(tmp_path / "good.json", policy_doc())
    bad = write(tmp_path / "bad.json", policy_doc(pattern="team-[ab]/*"))
    broken = tmp_path / "broken.json"
    broken.write_text("{")

    status = main(["policy", "validate", str(good), str(bad), str(broken)])

    assert status == 1
    captured = capsys.readouterr()
    assert "good.json: valid policy" in captured.out
    assert (
        f"regseal: error: {bad}: policy.teams.team-a.repositories[0]: expected a glob"
        in captured.err
    )
    assert f"regseal: error: {broken}: expected policy JSON" in captured.err


def test_validate_reads_a_missing_file_as_an_error(tmp_path, capsys):
    status = main(["policy", "validate", str(tmp_path / "none.json")])

    assert status == 1
    assert "cannot read policy file" in capsys.readouterr().err


# --------------------------------------------------------------------------
# show and set on a file location


def test_set_then_show_round_trips_through_a_file(tmp_path, capsys, monkeypatch):
    location = tmp_path / "stored.json"
    monkeypatch.setenv("REGSEAL_POLICY", f"file:{location}")
    source = write(tmp_path / "p.json", policy_doc())

    assert main(["policy", "set", str(source)]) == 0
    assert location.read_bytes() == source.read_bytes()
    assert main(["policy", "show"]) == 0

    captured = capsys.readouterr()
    assert f"file:{location}: stored policy 'v1'" in captured.out
    assert json.loads(captured.out.split("\n", 1)[1]) == policy_doc()
    assert "valid policy 'v1'" in captured.err


def test_set_refuses_new_content_under_the_stored_version(tmp_path, capsys):
    location = write(tmp_path / "stored.json", policy_doc("v1"))
    before = location.read_bytes()
    edited = write(tmp_path / "p.json", policy_doc("v1", pattern="team-a/app-*"))

    status = main(["policy", "set", str(edited), "--location", str(location)])

    assert status == 1
    assert "under the same version 'v1'" in capsys.readouterr().err
    assert location.read_bytes() == before


def test_set_of_the_stored_content_changes_nothing(tmp_path, capsys):
    location = write(tmp_path / "stored.json", policy_doc("v1"))
    mtime = location.stat().st_mtime_ns

    status = main(["policy", "set", str(location), "--location", str(location)])

    assert status == 0
    assert "already holds policy 'v1'" in capsys.readouterr().out
    assert location.stat().st_mtime_ns == mtime


def test_set_refuses_an_invalid_policy_and_keeps_the_stored_one(tmp_path, capsys):
    location = write(tmp_path / "stored.json", policy_doc("v1"))
    before = location.read_bytes()
    bad = write(tmp_path / "p.json", {"version": "v2", "teams": {}})

    status = main(["policy", "set", str(bad), "--location", str(location)])

    assert status == 1
    assert "policy.teams: expected an object with at least one team" in (
        capsys.readouterr().err
    )
    assert location.read_bytes() == before


def test_show_of_an_invalid_stored_policy_prints_it_and_fails(tmp_path, capsys):
    location = write(tmp_path / "stored.json", {"version": "v1", "teams": {}})

    status = main(["policy", "show", "--location", str(location)])

    assert status == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"version": "v1", "teams": {}}
    assert "policy.teams" in captured.err


def test_commands_without_a_location_say_where_to_give_it(
    tmp_path, capsys, aws, monkeypatch
):
    monkeypatch.delenv("REGSEAL_BUCKET", raising=False)
    status = main(["policy", "show"])

    assert status == 1
    assert capsys.readouterr().err == (
        "regseal: error: expected --location, $REGSEAL_POLICY or $REGSEAL_BUCKET "
        "naming where the policy lives\n"
    )


def test_show_defaults_to_the_bucket_commands_location(capsys, aws, monkeypatch):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="registry")
    s3.put_object(
        Bucket="registry",
        Key="regseal/policy.json",
        Body=json.dumps(policy_doc("v7")).encode(),
    )
    monkeypatch.setenv("REGSEAL_BUCKET", "registry")

    assert main(["policy", "show"]) == 0

    captured = capsys.readouterr()
    assert json.loads(captured.out) == policy_doc("v7")
    assert captured.err.startswith(
        "s3://registry/regseal/policy.json: valid policy 'v7'"
    )


def test_show_output_set_back_is_a_no_op(tmp_path, capsys):
    location = tmp_path / "stored.json"
    location.write_text(json.dumps(policy_doc("v1"), separators=(",", ":")))
    before = location.read_bytes()
    assert main(["policy", "show", "--location", str(location)]) == 0
    shown = tmp_path / "shown.json"
    shown.write_text(capsys.readouterr().out)
    assert shown.read_bytes() != before  # show indents, the stored file does not

    status = main(["policy", "set", str(shown), "--location", str(location)])

    assert status == 0
    assert capsys.readouterr().out == f"{location}: already holds policy 'v1'\n"
    assert location.read_bytes() == before


def test_show_of_an_unsupported_scheme_names_the_accepted_ones(capsys):
    status = main(["policy", "show", "--location", "ftp://x/policy.json"])

    assert status == 1
    assert capsys.readouterr().err == (
        "regseal: error: ftp://x/policy.json: unsupported location scheme 'ftp'; "
        "expected s3://BUCKET/KEY, ssm:/NAME, file:PATH or a plain path\n"
    )


def test_set_to_an_unsupported_scheme_writes_nothing(tmp_path, capsys):
    source = write(tmp_path / "p.json", policy_doc())

    status = main(["policy", "set", str(source), "--location", "ftp://x/p.json"])

    assert status == 1
    assert "unsupported location scheme 'ftp'" in capsys.readouterr().err
    assert not (tmp_path / "ftp:").exists()


def test_duplicate_keys_in_a_policy_file_are_refused_by_name(tmp_path, capsys):
    path = tmp_path / "dup.json"
    path.write_text(
        '{"version": "v1", "teams": {"team-a": {"repositories": ["team-a/*"], '
        '"kms_key": "alias/a"}, "team-a": {"repositories": ["x/*"], '
        '"kms_key": "alias/x"}}}'
    )

    status = main(["policy", "validate", str(path)])

    assert status == 1
    assert capsys.readouterr().err == (
        f"regseal: error: {path}: duplicate key 'team-a': expected each key once "
        "per JSON object\n"
    )


def test_schema_command_prints_the_shipped_schema(capsys):
    assert main(["policy", "schema"]) == 0

    assert capsys.readouterr().out.encode() == schema_json()


# --------------------------------------------------------------------------
# S3 and SSM


def test_set_and_show_an_s3_policy(tmp_path, capsys, aws):
    boto3.client("s3").create_bucket(Bucket="registry")
    location = "s3://registry/regseal/policy.json"
    first = write(tmp_path / "v1.json", policy_doc("v1"))
    second = write(tmp_path / "v2.json", policy_doc("v2", pattern="team-a/app-*"))

    assert main(["policy", "set", str(first), "--location", location]) == 0
    assert main(["policy", "set", str(second), "--location", location]) == 0
    assert main(["policy", "show", "--location", location]) == 0

    stored = boto3.client("s3").get_object(Bucket="registry", Key="regseal/policy.json")
    assert stored["ContentType"] == "application/json"
    assert stored["Body"].read() == second.read_bytes()
    assert "valid policy 'v2'" in capsys.readouterr().err


def test_s3_set_loses_to_a_concurrent_writer(tmp_path, capsys, aws, monkeypatch):
    from regseal import policy, policy_cli

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="registry")
    location = "s3://registry/p.json"
    s3.put_object(Bucket="registry", Key="p.json", Body=json.dumps(policy_doc("v1")))
    read = policy.read_location_versioned

    def read_then_someone_writes(where):
        data, etag = read(where)
        s3.put_object(Bucket="registry", Key="p.json", Body=b'{"other": "writer"}')
        return data, etag

    monkeypatch.setattr(policy_cli, "read_location_versioned", read_then_someone_writes)
    mine = write(tmp_path / "v2.json", policy_doc("v2"))

    status = main(["policy", "set", str(mine), "--location", location])

    assert status == 1
    assert "changed while the policy was being set" in capsys.readouterr().err
    body = s3.get_object(Bucket="registry", Key="p.json")["Body"].read()
    assert body == b'{"other": "writer"}'


def test_set_creates_an_ssm_parameter_and_keeps_a_secure_strings_type(
    tmp_path, capsys, aws, rsa_keypair
):
    ssm = boto3.client("ssm")
    ssm.put_parameter(
        Name="/regseal/secure",
        Value=json.dumps(policy_doc("v0")),
        Type="SecureString",
    )
    large = policy_doc("v1", pem=rsa_keypair.public_pem.decode())
    for index in range(8):
        large["teams"][f"team-{index}"] = {
            **large["teams"]["team-a"],
            "repositories": [f"team-{index}/*"],
        }
    source = write(tmp_path / "p.json", large)
    assert source.stat().st_size > 4096

    assert main(["policy", "set", str(source), "--location", "ssm:/regseal/new"]) == 0
    assert (
        main(["policy", "set", str(source), "--location", "ssm:/regseal/secure"]) == 0
    )
    assert main(["policy", "show", "--location", "ssm:/regseal/secure"]) == 0

    new = ssm.get_parameter(Name="/regseal/new")["Parameter"]
    secure = ssm.get_parameter(Name="/regseal/secure", WithDecryption=True)["Parameter"]
    assert new["Type"] == "String"
    assert json.loads(new["Value"]) == large
    assert secure["Type"] == "SecureString"
    assert json.loads(secure["Value"]) == large
    assert "valid policy 'v1'" in capsys.readouterr().err


def test_show_of_a_missing_ssm_parameter_says_nothing_is_stored(capsys, aws):
    status = main(["policy", "show", "--location", "ssm:/regseal/none"])

    assert status == 1
    assert "ssm:/regseal/none: no policy is stored there" in capsys.readouterr().err
