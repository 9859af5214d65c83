"""The distribution registry of the local stack, storing its data in moto's S3.

The configuration follows what works with Debian's docker-registry 2.8.2: the
S3 driver pointed at the moto endpoint (which implies path-style addressing),
blob redirects disabled so the registry serves blobs itself, and no blob
descriptor cache, because regseal changes links in storage and a cache would
answer from stale entries. For registry-API mode the registry can require an
account: htpasswd basic auth, or token auth against the stack's token
service (:mod:`regseal.local.tokenserver`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from regseal.errors import LocalStackError
from regseal.local.processes import (
    LOOPBACK,
    ManagedProcess,
    responds,
    start_on_free_port,
)
from regseal.local.resources import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY

logger = logging.getLogger(__name__)

REGISTRY_COMMAND = "docker-registry"
CONFIG_TEMPLATE = "registry-config.yml"

# The registry's Go AWS SDK panics at startup when this is set
# (LoadCustomCABundleError), even though it talks plain http to moto.
_ENVIRONMENT_TRAPS = ("AWS_CA_BUNDLE",)


@dataclass(frozen=True)
class HtpasswdAuth:
    """Basic auth against an htpasswd file (bcrypt entries only)."""

    path: Path
    realm: str = "regseal-local"


@dataclass(frozen=True)
class TokenAuth:
    """Token auth: the registry trusts tokens signed under ``root_certificate``."""

    realm: str
    service: str
    issuer: str
    root_certificate: Path


RegistryAuth = HtpasswdAuth | TokenAuth


@dataclass(frozen=True)
class RegistrySettings:
    """What the registry configuration needs to know about its storage and
    who may use it (``auth`` None: anyone)."""

    s3_endpoint: str
    bucket: str
    region: str
    root_directory: str = "/"
    access_key: str = DUMMY_ACCESS_KEY_ID
    secret_key: str = DUMMY_SECRET_ACCESS_KEY
    log_level: str = "info"
    auth: RegistryAuth | None = None


def render_auth(auth: RegistryAuth | None) -> str:
    """The configuration's ``auth`` section (empty for an open registry)."""
    if auth is None:
        return ""
    if isinstance(auth, HtpasswdAuth):
        return (
            "auth:\n"
            "  htpasswd:\n"
            f"    realm: {json.dumps(auth.realm)}\n"
            f"    path: {json.dumps(str(auth.path))}\n"
        )
    return (
        "auth:\n"
        "  token:\n"
        f"    realm: {json.dumps(auth.realm)}\n"
        f"    service: {json.dumps(auth.service)}\n"
        f"    issuer: {json.dumps(auth.issuer)}\n"
        f"    rootcertbundle: {json.dumps(str(auth.root_certificate))}\n"
    )


def render_registry_config(
    settings: RegistrySettings, *, listen: str, http_secret: str
) -> str:
    """The registry's YAML configuration for ``settings``.

    Args:
        settings: storage and logging settings.
        listen: the ``host:port`` the registry listens on.
        http_secret: the secret the registry signs upload state with.
    """
    template = string.Template(
        resources.files(__package__).joinpath(CONFIG_TEMPLATE).read_text()
    )
    return template.substitute(
        log_level=settings.log_level,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        region=settings.region,
        s3_endpoint=settings.s3_endpoint,
        bucket=settings.bucket,
        root_directory=settings.root_directory,
        listen=listen,
        http_secret=http_secret,
        auth=render_auth(settings.auth),
    )


def registry_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables that break the registry."""
    return {k: v for k, v in environ.items() if k not in _ENVIRONMENT_TRAPS}


def start_registry(
    settings: RegistrySettings, *, workdir: Path, cancel: threading.Event
) -> tuple[ManagedProcess, str]:
    """Start the registry on a free loopback port and wait for ``/v2/``.

    The configuration is written to ``workdir/registry-config.yml`` and the log
    to ``workdir/registry.log``.

    Returns:
        The process and the ``host:port`` it serves on.

    Raises:
        LocalStackError: the registry is not installed or does not come up.
    """
    command = shutil.which(REGISTRY_COMMAND)
    if command is None:
        raise LocalStackError(
            f"expected {REGISTRY_COMMAND!r} on PATH (Debian package docker-registry);"
            " run ./scripts/bootstrap.sh"
        )
    config_path = workdir / CONFIG_TEMPLATE
    http_secret = secrets.token_hex(16)

    def argv_for_port(port: int) -> list[str]:
        config = render_registry_config(
            settings, listen=f"{LOOPBACK}:{port}", http_secret=http_secret
        )
        config_path.write_text(config)
        return [command, "serve", str(config_path)]

    process, port = start_on_free_port(
        "docker-registry",
        argv_for_port,
        lambda port: f"http://{LOOPBACK}:{port}/v2/",
        env=registry_environment(os.environ),
        # With auth on, an unauthenticated /v2/ answers 401: up, but closed.
        probe=responds if settings.auth is not None else None,
        log_path=workdir / "registry.log",
        cancel=cancel,
    )
    logger.debug("registry answers on %s:%d", LOOPBACK, port)
    return process, f"{LOOPBACK}:{port}"
