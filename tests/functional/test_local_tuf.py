"""The local stack's TUF set-up (regseal.local.tufrepo) on in-process moto."""

import json
import stat

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from moto import mock_aws
from tuf.ngclient import Updater

from regseal.errors import PolicyError
from regseal.local import resources
from regseal.local.demo_policy import demo_policy
from regseal.local.tufrepo import set_up_repository, team_globs, tuf_globs
from regseal.policy import parse_policy
from regseal.tuf.fetcher import S3Fetcher
from regseal.tuf.publish import Publisher
from regseal.tuf.settings import TufSettings
from regseal.tuf.store import MetadataLocation, MetadataStore
from regseal.tuf.updates import TargetsWriter
from tests.support.moto_kms import kms_digest_signing
from tests.support.tuf_world import custom, manifest

ENDPOINT = "http://127.0.0.1:1"


@pytest.fixture(scope="module")
def pem():
    private = ec.generate_private_key(ec.SECP256R1())
    return (
        private.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )


@pytest.fixture
def local_tuf(tmp_path, monkeypatch, pem):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws(), kms_digest_signing():
        session = boto3.Session(region_name="us-east-1")
        resources.create_resources(session, None, policy_document=b"{}")
        teams = team_globs(parse_policy(demo_policy(pem)))
        made = resources.create_tuf_resources(
            session, None, metadata_prefix="tuf/", teams=list(teams)
        )
        s3 = session.client("s3")
        store = MetadataStore(s3, MetadataLocation("registry", "tuf/"))
        tuf = set_up_repository(
            store,
            workdir=tmp_path,
            endpoint=ENDPOINT,
            snapshot_key=made.snapshot_key,
            timestamp_key=made.timestamp_key,
            team_keys=made.team_keys,
            teams=teams,
        )
        yield tuf, store, s3, tmp_path


def updater(tuf, s3, cache):
    cache.mkdir()
    return Updater(
        metadata_dir=str(cache),
        metadata_base_url=tuf.location.url,
        fetcher=S3Fetcher(s3),
        bootstrap=tuf.root_file.read_bytes(),
    )


def test_repository_is_published_with_the_demo_team_delegated(local_tuf):
    tuf, _, s3, tmp_path = local_tuf

    client = updater(tuf, s3, tmp_path / "client")
    client.refresh()
    targets = json.loads(
        s3.get_object(Bucket="registry", Key="tuf/2.targets.json")["Body"].read()
    )

    [role] = targets["signed"]["delegations"]["roles"]
    assert tuf.metadata_url == f"{ENDPOINT}/registry/tuf/"
    assert tuf.teams == {"demo": ("*", "*/**")}
    assert role["name"] == "demo"
    assert role["terminating"] is True
    assert role["paths"] == [
        "/".join(["*"] * depth + ["tags", "*"]) for depth in range(1, 9)
    ]
    assert client.get_targetinfo("demo/app/tags/1.0") is None


def test_offline_keys_are_fresh_private_files_and_root_is_written(local_tuf):
    tuf, store, _, tmp_path = local_tuf

    root = json.loads(tuf.root_file.read_bytes())

    assert tuf.root_file == tmp_path / "tuf" / "root.json"
    for path in (tuf.root_key_file, tuf.targets_key_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    keys = root["signed"]["keys"]
    roles = root["signed"]["roles"]
    assert {keys[k]["keytype"] for k in roles["root"]["keyids"]} == {"ed25519"}
    assert {keys[k]["keytype"] for k in roles["targets"]["keyids"]} == {"ed25519"}
    assert {keys[k]["scheme"] for k in roles["snapshot"]["keyids"]} == {
        "ecdsa-sha2-nistp256"
    }
    assert root["signed"]["consistent_snapshot"] is True
    assert tuf.root_file.read_bytes() == store.get("1.root.json").data


@pytest.mark.parametrize("repository", ["app", "demo/app", "a/b/c", "a/b/c/d/e/f/g/h"])
def test_any_repository_up_to_eight_components_is_the_demo_teams(local_tuf, repository):
    tuf, store, s3, tmp_path = local_tuf

    TargetsWriter(store).add_target("demo", repository, "1.0", manifest(1), custom())
    Publisher(
        store, TufSettings(location=store.location)
    ).refresh_snapshot_and_timestamp()
    target = updater(tuf, s3, tmp_path / "client").get_targetinfo(
        f"{repository}/tags/1.0"
    )

    assert target is not None
    assert target.length == len(manifest(1))


def test_a_repository_deeper_than_eight_components_is_refused(local_tuf):
    _, store, _, _ = local_tuf

    with pytest.raises(PolicyError):
        TargetsWriter(store).add_target(
            "demo", "a/b/c/d/e/f/g/h/i", "1.0", manifest(1), custom()
        )


@pytest.mark.parametrize(
    ("pattern", "globs"),
    [
        ("*", ("*", "*/**")),
        ("team-a/*", ("team-a/**",)),
        ("team-a/app", ("team-a/app",)),
        ("team-a/sub/*", ("team-a/sub/**",)),
    ],
)
def test_policy_patterns_become_tuf_globs_that_cover_the_same_names(pattern, globs):
    assert tuf_globs(pattern) == globs


@pytest.mark.parametrize("pattern", ["team-*", "a/*/b", "team-a/app-*", "a?/b"])
def test_policy_patterns_tuf_cannot_express_are_refused(pattern):
    with pytest.raises(PolicyError, match="--no-tuf"):
        tuf_globs(pattern)


def test_policy_giving_unmatched_repositories_to_a_team_is_refused(pem):
    policy = demo_policy(pem)
    policy["unmatched"] = "demo"

    with pytest.raises(PolicyError, match="'unmatched' gives repositories"):
        team_globs(parse_policy(policy))
