"""moto's server in a subprocess, for tests that run regseal's executables.

In-process ``mock_aws`` cannot reach a child process, so tests that drive
``regseal-keyprovider`` or ``regseal decrypt`` as programs start moto's server
on a free loopback port and hand the child ``AWS_ENDPOINT_URL``. The server
can also enforce IAM: after :meth:`MotoServer.enforce_iam`, only access keys
of users made with :meth:`MotoServer.user` work, and each may call only the
actions its policy allows (moto checks actions, not resources or conditions).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from regseal.local.motoserver import start_moto
from regseal.local.processes import ManagedProcess

REGION = "us-east-1"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Variables that would point a child at other credentials or endpoints.
_AWS_OVERRIDES = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL_KMS",
)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


ROOT = Credentials("testing", "testing")


@dataclass
class MotoServer:
    endpoint: str
    process: ManagedProcess
    admin: Credentials = ROOT

    def client(self, service: str, credentials: Credentials | None = None) -> Any:
        credentials = credentials or self.admin
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
        )

    def env(self, credentials: Credentials | None = None) -> dict[str, str]:
        """An environment for a child process that talks to this server."""
        credentials = credentials or self.admin
        environment = {k: v for k, v in os.environ.items() if k not in _AWS_OVERRIDES}
        environment.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID=credentials.access_key_id,
            AWS_SECRET_ACCESS_KEY=credentials.secret_access_key,
            AWS_REGION=REGION,
            AWS_DEFAULT_REGION=REGION,
        )
        return environment

    def user(self, name: str, actions: Sequence[str]) -> Credentials:
        """An IAM user allowed ``actions`` on every resource; its access key."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(
            UserName=name,
            PolicyName="test",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": list(actions), "Resource": "*"}
                    ],
                }
            ),
        )
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def enforce_iam(self, admin: Credentials) -> None:
        """From now on, check every request against IAM; ``admin`` stays usable."""
        request = urllib.request.Request(  # noqa: S310 (our loopback server)
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with _DIRECT.open(request, timeout=10) as response:
            assert response.status == 200
        self.admin = admin


@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[MotoServer]:
    """Run moto's server until the block ends; stop it by its PID."""
    workdir.mkdir(parents=True, exist_ok=True)
    process, endpoint = start_moto(workdir=workdir, cancel=threading.Event())
    try:
        yield MotoServer(endpoint, process)
    finally:
        process.stop()
