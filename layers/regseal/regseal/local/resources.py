"""The AWS resources of the local stack, created in moto.

They mirror what the deployed stack has: the registry bucket, the event queue
with its dead-letter queue, the bucket notification that feeds the queue, the
team's KMS key and the sealing policy object. This module is the stack's AWS
edge; the rest of regseal.local does not use AWS names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

logger = logging.getLogger(__name__)

BUCKET = "registry"
QUEUE = "regseal-events"
DEAD_LETTER_QUEUE = "regseal-events-dlq"
KMS_KEY_ALIAS = "alias/regseal-demo"
STATE_PREFIX = "regseal/"
POLICY_KEY = STATE_PREFIX + "policy.json"
# Every link the registry writes; the seal handler picks the ones it acts on.
EVENT_KEY_PREFIX = "docker/registry/v2/repositories/"
EVENT_KEY_SUFFIX = "/link"
# Short, so that a message the handler failed comes back within seconds.
VISIBILITY_TIMEOUT_SECONDS = 5
MAX_RECEIVE_COUNT = 3
# How old a manifest pushed by digest must be before it is sealed on its own
# (docs/decisions/0004). It must fit in the queue's retries, or the message
# runs out of deliveries first and the image is never sealed: the last
# delivery comes at least this long after the first, so the grace is shorter
# by a margin for the time each delivery takes.
# NOTE: an index push must also finish within it, which small local images do.
DIGEST_PUSH_GRACE_SECONDS = VISIBILITY_TIMEOUT_SECONDS * (MAX_RECEIVE_COUNT - 1) - 2

REGISTRY_CREDENTIALS_SECRET = "regseal/registry-credentials"  # noqa: S105 (a name)
# Dummies: moto accepts any credentials, and these can never reach a real account.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"  # noqa: S105


@dataclass(frozen=True)
class StackResources:
    """Names and addresses of what :func:`create_resources` made."""

    bucket: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    kms_key_id: str
    kms_key_alias: str
    policy_location: str


def moto_session(region: str) -> boto3.Session:
    """A session with dummy credentials, so no real account is ever used."""
    return boto3.Session(
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        region_name=region,
    )


def create_resources(
    session: boto3.Session, endpoint: str | None, *, policy_document: bytes
) -> StackResources:
    """Create the bucket, queues, notification, KMS key and policy object.

    Args:
        session: credentials and region to use.
        endpoint: moto's endpoint URL; ``None`` for the session's default
            (in-process ``mock_aws``).
        policy_document: the policy JSON to store at ``regseal/policy.json``.
    """
    s3 = session.client("s3", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    kms = session.client("kms", endpoint_url=endpoint)

    s3.create_bucket(Bucket=BUCKET)
    bucket_arn = f"arn:aws:s3:::{BUCKET}"

    dlq_url, dlq_arn = _create_queue(sqs, DEAD_LETTER_QUEUE, {})
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    queue_url, queue_arn = _create_queue(
        sqs,
        QUEUE,
        {
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
            "RedrivePolicy": json.dumps(redrive),
        },
    )
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={"Policy": json.dumps(_queue_policy(queue_arn, bucket_arn))},
    )
    _notify_queue(s3, queue_arn)

    key_id = kms.create_key(
        Description="regseal local stack: demo team layer keys",
        KeyUsage="ENCRYPT_DECRYPT",
        KeySpec="SYMMETRIC_DEFAULT",
    )["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=KMS_KEY_ALIAS, TargetKeyId=key_id)

    s3.put_object(
        Bucket=BUCKET,
        Key=POLICY_KEY,
        Body=policy_document,
        ContentType="application/json",
    )

    logger.debug("created bucket %s, queue %s, key %s", BUCKET, queue_url, key_id)
    return StackResources(
        bucket=BUCKET,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dead_letter_queue_url=dlq_url,
        kms_key_id=key_id,
        kms_key_alias=KMS_KEY_ALIAS,
        policy_location=f"s3://{BUCKET}/{POLICY_KEY}",
    )


def store_registry_credentials(
    session: boto3.Session, endpoint: str | None, *, username: str, password: str
) -> str:
    """Keep the registry account in Secrets Manager, as a deployment would.

    Returns:
        The ``REGSEAL_REGISTRY_CREDENTIALS`` value naming the secret.
    """
    secrets = session.client("secretsmanager", endpoint_url=endpoint)
    secrets.create_secret(
        Name=REGISTRY_CREDENTIALS_SECRET,
        SecretString=json.dumps({"username": username, "password": password}),
    )
    return f"secretsmanager:{REGISTRY_CREDENTIALS_SECRET}"


def _create_queue(
    sqs: SQSClient, name: str, attributes: Mapping[QueueAttributeNameType, str]
) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return url, arn


def _queue_policy(queue_arn: str, bucket_arn: str) -> dict[str, object]:
    # moto does not enforce it; it documents what S3 needs on real AWS.
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": bucket_arn}},
            }
        ],
    }


def _notify_queue(s3: S3Client, queue_arn: str) -> None:
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "regseal-registry-links",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "prefix", "Value": EVENT_KEY_PREFIX},
                                {"Name": "suffix", "Value": EVENT_KEY_SUFFIX},
                            ]
                        }
                    },
                }
            ]
        },
    )
