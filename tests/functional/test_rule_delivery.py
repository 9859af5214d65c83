"""The template's EventBridge rule, run by moto: S3 writes in, SQS messages out.

The unit tests evaluate the rule's pattern with a small matcher; here moto's
own EventBridge (S3 EventBridge notifications, rule, SQS target) decides which
of a push's writes reach the seal queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from tests.support.cfn_model import load_stack

BUCKET = "example-registry"
HEX = "ef3a0b8e1cb2e64f17653d566237f2fc20cf04cece5062b7dd10a78f9def7ee0"
LINK = f"sha256:{HEX}".encode()

# Keys a push of team-a/app:1.0 writes (shared/reference/registry-on-s3.md §4),
# relative to docker/registry/v2/, and whether the seal queue should see them.
PUSH_WRITES = [
    ("repositories/team-a/app/_uploads/5f1e/startedat", False),
    ("repositories/team-a/app/_uploads/5f1e/hashstates/sha256/0", False),
    ("repositories/team-a/app/_uploads/5f1e/data", False),
    (f"blobs/sha256/ef/{HEX}/data", False),
    (f"repositories/team-a/app/_layers/sha256/{HEX}/link", False),
    (f"repositories/team-a/app/_manifests/revisions/sha256/{HEX}/link", True),
    (f"repositories/team-a/app/_manifests/tags/1.0/index/sha256/{HEX}/link", False),
    ("repositories/team-a/app/_manifests/tags/1.0/current/link", True),
]


@pytest.fixture(name="aws")
def _aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def wire_rule(root: str) -> str:
    """Bucket with EventBridge on, the template's rule, its queue; the queue URL."""
    stack = load_stack({"RegistryBucketName": BUCKET, "RegistryRootDirectory": root})
    rule = stack.resources["RegistryLinksRule"]
    s3 = boto3.client("s3")
    sqs = boto3.client("sqs")
    events = boto3.client("events")

    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    queue_url = sqs.create_queue(QueueName="seal")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    events.put_rule(
        Name="registry-links", EventPattern=json.dumps(rule.properties["EventPattern"])
    )
    events.put_targets(Rule="registry-links", Targets=[{"Id": "q", "Arn": queue_arn}])
    return queue_url


def delivered_keys(queue_url: str) -> list[str]:
    sqs = boto3.client("sqs")
    keys: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return sorted(keys)
        for message in messages:
            keys.append(json.loads(message["Body"])["detail"]["object"]["key"])
            sqs.delete_message(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
            )


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    ("root", "key_prefix"),
    [
        ("/", "docker/registry/v2/"),
        ("/registry/prod", "registry/prod/docker/registry/v2/"),
    ],
)
def test_a_push_delivers_only_its_revision_and_tag_links(
    root: str, key_prefix: str
) -> None:
    queue_url = wire_rule(root)
    s3 = boto3.client("s3")

    for key, _ in PUSH_WRITES:
        s3.put_object(Bucket=BUCKET, Key=key_prefix + key, Body=LINK)

    assert delivered_keys(queue_url) == sorted(
        key_prefix + key for key, expected in PUSH_WRITES if expected
    )


@pytest.mark.usefixtures("aws")
def test_links_under_another_root_deliver_nothing_and_deletions_arrive() -> None:
    queue_url = wire_rule("/registry/prod")
    s3 = boto3.client("s3")
    tag_link = (
        "docker/registry/v2/repositories/team-a/app/_manifests/tags/1/current/link"
    )

    s3.put_object(Bucket=BUCKET, Key=tag_link, Body=LINK)
    s3.put_object(Bucket=BUCKET, Key=f"registry/prod/{tag_link}", Body=LINK)
    delivered_after_put = delivered_keys(queue_url)
    s3.delete_object(Bucket=BUCKET, Key=f"registry/prod/{tag_link}")

    assert delivered_after_put == [f"registry/prod/{tag_link}"]
    # The deletion of the tag link under the root is delivered (its TUF
    # target is removed); the one outside the root never was a match.
    assert delivered_keys(queue_url) == [f"registry/prod/{tag_link}"]
