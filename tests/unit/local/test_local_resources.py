import json

import boto3
import pytest
from moto import mock_aws

from regseal.local import resources


@pytest.fixture
def made():
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        yield (
            session,
            resources.create_resources(
                session, None, policy_document=b'{"version": "x"}'
            ),
        )


def test_bucket_notifies_the_queue_of_every_registry_link_written_or_removed(made):
    session, made = made
    config = session.client("s3").get_bucket_notification_configuration(
        Bucket="registry"
    )

    [rule] = config["QueueConfigurations"]
    assert rule["QueueArn"] == made.queue_arn
    assert rule["Events"] == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    filters = {
        r["Name"].lower(): r["Value"] for r in rule["Filter"]["Key"]["FilterRules"]
    }
    assert filters == {
        "prefix": "docker/registry/v2/repositories/",
        "suffix": "/link",
    }


def test_queue_retries_quickly_and_then_dead_letters(made):
    session, made = made
    sqs = session.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=made.queue_url, AttributeNames=["All"]
    )["Attributes"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=made.dead_letter_queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]

    assert made.queue_url.endswith("/regseal-events")
    assert made.dead_letter_queue_url.endswith("/regseal-events-dlq")
    assert attributes["VisibilityTimeout"] == "5"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == 3


def test_kms_alias_names_a_symmetric_key(made):
    session, made = made
    kms = session.client("kms")

    metadata = kms.describe_key(KeyId="alias/regseal-demo")["KeyMetadata"]

    assert metadata["KeyId"] == made.kms_key_id
    assert metadata["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert metadata["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert made.kms_key_alias == "alias/regseal-demo"


def test_policy_document_is_stored_where_the_handler_looks(made):
    session, made = made

    body = session.client("s3").get_object(
        Bucket="registry", Key="regseal/policy.json"
    )["Body"]

    assert body.read() == b'{"version": "x"}'
    assert made.policy_location == "s3://registry/regseal/policy.json"


def test_digest_push_grace_fits_in_the_queue_retries(made):
    session, made = made
    attributes = session.client("sqs").get_queue_attributes(
        QueueUrl=made.queue_url,
        AttributeNames=["VisibilityTimeout", "RedrivePolicy"],
    )["Attributes"]
    receives = json.loads(attributes["RedrivePolicy"])["maxReceiveCount"]
    # The last delivery comes at least this long after the first one.
    window = int(attributes["VisibilityTimeout"]) * (int(receives) - 1)

    assert 0 < resources.DIGEST_PUSH_GRACE_SECONDS <= window


@pytest.fixture
def made_tuf(made):
    session, _ = made
    return session, resources.create_tuf_resources(
        session, None, metadata_prefix="tuf/", teams=["demo", "team-b"]
    )


def test_tuf_keys_are_p256_signing_keys_named_by_alias(made_tuf):
    session, tuf = made_tuf
    kms = session.client("kms")

    uris = [tuf.snapshot_key, tuf.timestamp_key, *tuf.team_keys.values()]
    specs = {
        uri: kms.describe_key(KeyId=uri.removeprefix("awskms:"))["KeyMetadata"]
        for uri in uris
    }

    assert tuf.snapshot_key == "awskms:alias/regseal-tuf-snapshot"
    assert tuf.timestamp_key == "awskms:alias/regseal-tuf-timestamp"
    assert tuf.team_keys == {
        "demo": "awskms:alias/regseal-tuf-team-demo",
        "team-b": "awskms:alias/regseal-tuf-team-team-b",
    }
    assert {(m["KeySpec"], m["KeyUsage"]) for m in specs.values()} == {
        ("ECC_NIST_P256", "SIGN_VERIFY")
    }
    assert len({m["KeyId"] for m in specs.values()}) == 4


def test_tuf_queue_retries_quickly_and_then_dead_letters(made_tuf):
    session, tuf = made_tuf
    sqs = session.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=tuf.queue_url, AttributeNames=["All"]
    )["Attributes"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=tuf.dead_letter_queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]

    assert tuf.queue_url.endswith("/regseal-tuf")
    assert tuf.queue_arn == attributes["QueueArn"]
    assert tuf.dead_letter_queue_url.endswith("/regseal-tuf-dlq")
    assert attributes["VisibilityTimeout"] == "5"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == 3


def test_bucket_policy_lets_anyone_read_the_tuf_metadata_only(made_tuf):
    session, _ = made_tuf

    policy = json.loads(
        session.client("s3").get_bucket_policy(Bucket="registry")["Policy"]
    )

    [statement] = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:GetObject"
    assert statement["Resource"] == "arn:aws:s3:::registry/tuf/*"
