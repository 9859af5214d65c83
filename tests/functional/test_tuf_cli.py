import json

import boto3
import pytest
from moto import mock_aws
from tuf.api.metadata import Metadata

from regseal.tuf.cli import main
from regseal.tuf.signers import generate_key_file
from regseal.tuf.store import MetadataLocation, MetadataStore
from regseal.tuf.updates import TargetsWriter
from tests.support.moto_kms import kms_digest_signing
from tests.support.tuf_world import custom, manifest


@pytest.fixture
def aws(monkeypatch, tmp_path):
    for name in ("AWS_ENDPOINT_URL", "REGSEAL_BUCKET", "REGSEAL_TUF_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws(), kms_digest_signing():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="registry")
        yield s3, boto3.client("kms")


def _kms_uri(kms):
    key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")
    return f"awskms:{key['KeyMetadata']['KeyId']}"


def test_operator_flow_init_add_team_rotate_refresh(aws, tmp_path, capsys):
    s3, kms = aws
    keys = {name: str(tmp_path / f"{name}.pem") for name in ("root", "targets", "r2")}
    for path in keys.values():
        assert main(["tuf", "keygen", path]) == 0
    metadata = ["--metadata", "s3://registry/tuf/"]
    root_file = tmp_path / "root.json"

    argv = ["tuf", "init", *metadata, "--root-key", keys["root"]]
    argv += ["--targets-key", keys["targets"], "--out", str(root_file)]
    argv += ["--snapshot-key", _kms_uri(kms), "--timestamp-key", _kms_uri(kms)]
    assert main(argv) == 0
    assert Metadata.from_bytes(root_file.read_bytes()).signed.version == 1

    team_key = _kms_uri(kms)
    argv = ["tuf", "add-team", "team-a", *metadata, "--key", team_key]
    argv += ["--repositories", "team-a/*", "team-a/tools/**"]
    argv += ["--targets-key", keys["targets"]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "wrote 1.team-a.json" in out
    assert "wrote 2.targets.json" in out
    assert "snapshot v2, timestamp v2" in out

    store = MetadataStore(s3, MetadataLocation("registry", "tuf/"))
    TargetsWriter(store).add_target(
        "team-a", "team-a/tools/x/y", "v1", manifest(1), custom()
    )
    assert main(["tuf", "refresh", *metadata]) == 0
    assert "snapshot v3, timestamp v3" in capsys.readouterr().out

    argv = ["tuf", "rotate", "root", *metadata, "--root-key", keys["root"]]
    argv += ["--new-key", keys["r2"], "--out", str(tmp_path / "root2.json")]
    assert main(argv) == 0
    assert "wrote 2.root.json" in capsys.readouterr().out
    argv = ["tuf", "rotate", "team-a", *metadata, "--new-key", _kms_uri(kms)]
    argv += ["--targets-key", keys["targets"]]
    assert main(argv) == 0

    targets = json.loads(
        s3.get_object(Bucket="registry", Key="tuf/4.targets.json")["Body"].read()
    )
    paths = targets["signed"]["delegations"]["roles"][0]["paths"]
    assert "team-a/*/tags/*" in paths
    assert "team-a/tools/*/*/tags/*" in paths


def test_commands_report_errors_with_status_one(aws, tmp_path, capsys):
    key = str(tmp_path / "k.pem")
    generate_key_file(key)
    argv = ["tuf", "add-team", "team-a", "--metadata", "s3://registry/tuf/"]
    argv += ["--key", "awskms:nope", "--repositories", "team-a/*"]
    argv += ["--targets-key", key]
    assert main(argv) == 1
    assert "regseal tuf add-team: awskms:nope" in capsys.readouterr().err

    assert main(["tuf", "refresh", "--metadata", "s3://registry/tuf/"]) == 1
    assert "no TUF repository" in capsys.readouterr().err


def test_rotate_requires_the_signing_keys(aws, capsys):
    argv = ["tuf", "rotate", "root", "--metadata", "s3://registry/tuf/"]
    assert main([*argv, "--new-key", "x.pem"]) == 1
    assert "--root-key is required" in capsys.readouterr().err
