"""A distribution registry on moto that requires the account testing/testing.

``kind`` picks the auth scheme: ``htpasswd`` (basic auth) or ``token`` (the
local token service, ES256 JWTs the registry verifies against the service's
certificate). Every process is stopped by its handle afterwards.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3

from regseal.local.htpasswd import write_htpasswd
from regseal.local.motoserver import start_moto
from regseal.local.registry import (
    HtpasswdAuth,
    RegistrySettings,
    TokenAuth,
    start_registry,
)
from regseal.local.tokenserver import TokenIssuer, TokenServer

USERNAME = "testing"
PASSWORD = "testing"  # the dummy account of every local registry
KINDS = ("htpasswd", "token")


@dataclass(frozen=True)
class AuthRegistry:
    kind: str
    address: str
    """host:port on loopback."""
    tokens: TokenServer | None

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@contextlib.contextmanager
def running_auth_registry(kind: str, workdir: Path) -> Iterator[AuthRegistry]:
    """Start moto, the token service (for ``token``) and the registry."""
    cancel = threading.Event()
    processes = []
    tokens = None
    try:
        moto, endpoint = start_moto(workdir=workdir, cancel=cancel)
        processes.append(moto)
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket="registry")
        if kind == "htpasswd":
            auth: HtpasswdAuth | TokenAuth = HtpasswdAuth(
                write_htpasswd(workdir, USERNAME, PASSWORD)
            )
        else:
            issuer = TokenIssuer.generate()
            tokens = TokenServer(issuer, USERNAME, PASSWORD)
            tokens.start()
            auth = TokenAuth(
                tokens.realm,
                issuer.service,
                issuer.issuer,
                issuer.write_certificate(workdir),
            )
        process, address = start_registry(
            RegistrySettings(
                s3_endpoint=endpoint, bucket="registry", region="us-east-1", auth=auth
            ),
            workdir=workdir,
            cancel=cancel,
        )
        processes.append(process)
        yield AuthRegistry(kind, address, tokens)
    finally:
        for process in reversed(processes):
            process.stop()
        if tokens is not None:
            tokens.stop()
