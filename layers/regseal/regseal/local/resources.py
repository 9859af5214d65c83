"""The AWS resources of the local stack, created in moto.

They mirror what the deployed stack has: the registry bucket, the event queue
with its dead-letter queue, the bucket notification that feeds the queue, the
team's KMS key and the sealing policy object; and for TUF (:func:`create_tuf_resources`)
the TUF function's "targets changed" queue with its dead-letter queue and the
online signing keys (snapshot, timestamp, one per team). This module is the
stack's AWS edge; the rest of regseal.local does not use AWS names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import boto3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import EventType
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

logger = logging.getLogger(__name__)

BUCKET = "registry"
QUEUE = "regseal-events"
DEAD_LETTER_QUEUE = "regseal-events-dlq"
TUF_QUEUE = "regseal-tuf"
TUF_DEAD_LETTER_QUEUE = "regseal-tuf-dlq"
KMS_KEY_ALIAS = "alias/regseal-demo"
TUF_KEY_ALIAS_PREFIX = "alias/regseal-tuf-"
# The key spec regseal's TUF signers recommend (docs/tuf.md).
TUF_KEY_SPEC: Final = "ECC_NIST_P256"
STATE_PREFIX = "regseal/"
POLICY_KEY = STATE_PREFIX + "policy.json"
# Every link the registry writes or removes; the seal handler picks the ones
# it acts on (a removed tag link drops the tag's TUF target).
LINK_EVENTS: tuple[EventType, ...] = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
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


@dataclass(frozen=True)
class TufResources:
    """The TUF function's queues and the online TUF keys, as ``awskms:`` URIs.

    Attributes:
        queue_url: the "targets changed" queue the seal function sends to.
        queue_arn: its ARN (for the Lambda-shaped events of the pump).
        dead_letter_queue_url: where poison messages end.
        snapshot_key: the snapshot role's key.
        timestamp_key: the timestamp role's key.
        team_keys: team -> the key of the team's delegated targets role.
    """

    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    snapshot_key: str
    timestamp_key: str
    team_keys: Mapping[str, str]


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

    The bucket notifies the queue of every registry link created or removed.

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

    queue_url, queue_arn, dlq_url = _create_queue_pair(sqs, QUEUE, DEAD_LETTER_QUEUE)
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


def create_tuf_resources(
    session: boto3.Session,
    endpoint: str | None,
    *,
    metadata_prefix: str,
    teams: Sequence[str],
) -> TufResources:
    """Create the TUF function's queues and the online TUF signing keys, and
    let anyone read the TUF metadata.

    Each key is an asymmetric ``SIGN_VERIFY`` key of spec ECC_NIST_P256 with
    an alias (``alias/regseal-tuf-snapshot``, ``-timestamp``,
    ``-team-<team>``); the URIs name the aliases. The bucket policy allows
    anonymous ``s3:GetObject`` under ``metadata_prefix`` only, as a public
    metadata bucket would: TUF clients fetch over plain HTTP without
    credentials, and moto answers 403 to anonymous reads of anything else.

    Args:
        session: credentials and region to use.
        endpoint: moto's endpoint URL; ``None`` for in-process ``mock_aws``.
        metadata_prefix: the metadata's key prefix in the registry bucket.
        teams: the teams that get a key for their delegated role.
    """
    s3 = session.client("s3", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    kms = session.client("kms", endpoint_url=endpoint)
    s3.put_bucket_policy(
        Bucket=BUCKET,
        Policy=json.dumps(
            _public_read_policy(f"arn:aws:s3:::{BUCKET}", metadata_prefix)
        ),
    )
    queue_url, queue_arn, dlq_url = _create_queue_pair(
        sqs, TUF_QUEUE, TUF_DEAD_LETTER_QUEUE
    )

    def signing_key(name: str, description: str) -> str:
        key_id = kms.create_key(
            Description=f"regseal local stack: {description}",
            KeyUsage="SIGN_VERIFY",
            KeySpec=TUF_KEY_SPEC,
        )["KeyMetadata"]["KeyId"]
        alias = TUF_KEY_ALIAS_PREFIX + name
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        return f"awskms:{alias}"

    resources = TufResources(
        queue_url=queue_url,
        queue_arn=queue_arn,
        dead_letter_queue_url=dlq_url,
        snapshot_key=signing_key("snapshot", "TUF snapshot signing key"),
        timestamp_key=signing_key("timestamp", "TUF timestamp signing key"),
        team_keys={
            team: signing_key(f"team-{team}", f"TUF targets key of team {team}")
            for team in teams
        },
    )
    logger.debug("created TUF queue %s and %d keys", queue_url, 2 + len(teams))
    return resources


def _create_queue_pair(
    sqs: SQSClient, name: str, dead_letter_name: str
) -> tuple[str, str, str]:
    """A queue that retries quickly and then moves messages to its DLQ.

    Returns:
        The queue's URL and ARN, and the dead-letter queue's URL.
    """
    dlq_url, dlq_arn = _create_queue(sqs, dead_letter_name, {})
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    queue_url, queue_arn = _create_queue(
        sqs,
        name,
        {
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
            "RedrivePolicy": json.dumps(redrive),
        },
    )
    return queue_url, queue_arn, dlq_url


def _create_queue(
    sqs: SQSClient, name: str, attributes: Mapping[QueueAttributeNameType, str]
) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return url, arn


def _public_read_policy(bucket_arn: str, prefix: str) -> dict[str, object]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicTufMetadata",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"{bucket_arn}/{prefix}*",
            }
        ],
    }


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
                    "Events": list(LINK_EVENTS),
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
