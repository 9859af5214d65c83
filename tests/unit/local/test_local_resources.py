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


def test_bucket_notifies_the_queue_of_every_registry_link(made):
    session, made = made
    config = session.client("s3").get_bucket_notification_configuration(
        Bucket="registry"
    )

    [rule] = config["QueueConfigurations"]
    assert rule["QueueArn"] == made.queue_arn
    assert rule["Events"] == ["s3:ObjectCreated:*"]
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
