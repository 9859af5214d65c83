"""Composition root: build the domain objects from settings and AWS clients.

Handlers and the local stack's event pump call :func:`build_sealer` once per
process and reuse the result, so clients, the policy cache and connection
pools survive between invocations of a warm Lambda container.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from regseal.apiwriteback import ApiWriteBack
from regseal.kms import KmsWrapper
from regseal.layout import RegistryLayout
from regseal.policy import PolicySource
from regseal.registryapi import RegistryClient
from regseal.registryauth import CredentialSource
from regseal.seal import Sealer
from regseal.settings import Settings
from regseal.storage import ObjectStore, ReadOnlyPrefixStore
from regseal.targetlog import TargetLog, TufTargetLog, sqs_notifier
from regseal.writeback import WriteBack


def s3_client(max_pool: int = 32) -> Any:
    """An S3 client sized for parallel part transfers.

    NOTE: botocore's default request checksums stay on (a CRC32 of every
    uploaded part, in an aws-chunked trailer over HTTPS). Turning them off
    makes botocore sign each part's payload with sha256 instead, which costs
    more CPU; turning off payload signing as well leaves no check of a part
    between this process and S3's storage (docs/performance.md, "Costs
    outside the engine").
    """
    config = Config(
        max_pool_connections=max_pool, retries={"max_attempts": 5, "mode": "standard"}
    )
    return boto3.client("s3", config=config)


def sqs_client() -> Any:
    """An SQS client (the handler keeps one per warm function)."""
    return boto3.client("sqs")


def registry_client(settings: Settings) -> RegistryClient:
    """The registry's API client with the configured account."""
    return RegistryClient(
        settings.registry_url,
        CredentialSource(settings.registry_credentials),
        ca_bundle=settings.registry_ca_bundle or None,
    )


def build_sealer(settings: Settings | None = None) -> Sealer:
    """The seal operation wired to the ambient AWS environment.

    In registry-API mode the seal's store refuses every write under the
    registry's root, so that only the registry writes its own storage.
    """
    settings = settings or Settings.from_env()
    client = s3_client(max_pool=4 * settings.workers + 4)
    writer: WriteBack | None = None
    if settings.write_back == "api":
        layout = RegistryLayout(settings.registry_root)
        store: ObjectStore = ReadOnlyPrefixStore(
            client, settings.bucket, (layout.base,)
        )
        writer = ApiWriteBack(
            store,
            registry_client(settings),
            settings.stream,
            layout=layout,
        )
    else:
        store = ObjectStore(client, settings.bucket)
    return Sealer(
        store,
        settings,
        PolicySource(settings.policy_location),
        KmsWrapper(boto3.client("kms")),
        targets=build_target_log(settings, client),
        writer=writer,
    )


def build_target_log(settings: Settings, client: Any) -> TargetLog | None:
    """The TUF target log the settings ask for, or None when TUF is off."""
    if settings.tuf_bucket is None:
        return None
    from regseal.tuf import MetadataLocation, MetadataStore, TargetsWriter

    store = MetadataStore(
        client, MetadataLocation(settings.tuf_bucket, settings.tuf_prefix)
    )
    notify = (
        sqs_notifier(boto3.client("sqs"), settings.tuf_queue_url)
        if settings.tuf_queue_url
        else None
    )
    return TufTargetLog(TargetsWriter(store), notify)
