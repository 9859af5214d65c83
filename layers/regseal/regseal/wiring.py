"""Composition root: build the domain objects from settings and AWS clients.

Handlers and the local stack's event pump call :func:`build_sealer` once per
process and reuse the result, so clients, the policy cache and connection
pools survive between invocations of a warm Lambda container.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from regseal.kms import KmsWrapper
from regseal.policy import PolicySource
from regseal.seal import Sealer
from regseal.settings import Settings
from regseal.storage import ObjectStore


def s3_client(max_pool: int = 32) -> Any:
    """An S3 client sized for parallel part transfers."""
    config = Config(
        max_pool_connections=max_pool, retries={"max_attempts": 5, "mode": "standard"}
    )
    return boto3.client("s3", config=config)


def build_sealer(settings: Settings | None = None) -> Sealer:
    """The seal operation wired to the ambient AWS environment."""
    settings = settings or Settings.from_env()
    store = ObjectStore(s3_client(max_pool=4 * settings.workers + 4), settings.bucket)
    return Sealer(
        store,
        settings,
        PolicySource(settings.policy_location),
        KmsWrapper(boto3.client("kms")),
    )
