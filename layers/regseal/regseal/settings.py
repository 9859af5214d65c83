"""Runtime settings of the seal function, read from the environment.

The same variables configure the Lambda function (template.yaml), the local
stack's event pump and the CLI, so every part agrees on one bucket layout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from regseal.errors import RegsealError
from regseal.layerstream import StreamSettings

MiB = 1024 * 1024

WriteBackMode = Literal["storage", "api"]
WRITE_BACK_MODES: tuple[WriteBackMode, ...] = ("storage", "api")


class SettingsError(RegsealError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    """Where the registry lives and how the seal behaves.

    Attributes:
        bucket: the registry's bucket.
        registry_root: the registry S3 driver's ``rootdirectory``.
        state_prefix: regseal's own prefix (staging, indexes), outside the
            registry root.
        policy_location: where the policy lives (see regseal.policy).
        part_size: bytes per multipart part while streaming a layer.
        workers: parallel part transfers per layer (bounds memory at about
            ``(2 * workers + 2) * part_size``, the engine's buffer pool).
        verify_plaintext: hash each plaintext layer while sealing it and
            refuse one that does not match its descriptor's digest. False
            trusts the registry's own check at push time and saves a sha256
            pass per byte; decryption still enforces the digest
            (docs/decisions/0010).
        digest_push_grace: seconds a manifest pushed by digest (no tag) must
            have existed before it is sealed on its own, so that an index
            being pushed can still find its plaintext children.
        tuf_bucket: where TUF metadata lives; None turns TUF targets off.
        tuf_prefix: the metadata prefix in that bucket.
        tuf_queue_url: the TUF function's "targets changed" queue; None
            leaves snapshot and timestamp to its schedule.
        queue_url: the seal function's own event queue; with it, a message
            that failed on bad input is made visible again after
            ``bad_input_retry_seconds`` instead of the queue's visibility
            timeout, so it reaches the dead-letter queue within seconds
            (:mod:`regseal.redelivery`). 0 seconds or no URL turns that off.
        bad_input_retry_seconds: see ``queue_url``.
        max_receive_count: how often the event queue delivers a message
            before it moves it to the dead-letter queue (the redrive
            policy's ``maxReceiveCount``); 0 when unknown. The handler logs a
            failure as an error only on the last delivery.
        write_back: how sealed images get back into the registry:
            ``storage`` writes the registry's S3 objects (plain
            distribution), ``api`` pushes through the registry's HTTP API
            (Harbor, or any registry that must record what it serves).
        registry_url: the registry's API, ``http(s)://host[:port]`` (api
            mode).
        registry_credentials: ``secretsmanager:NAME`` or ``ssm:/NAME`` holding
            the account as JSON; empty for ``REGSEAL_REGISTRY_USERNAME`` and
            ``REGSEAL_REGISTRY_PASSWORD`` (or anonymous access).
        registry_ca_bundle: a PEM file to verify the registry's TLS
            certificate with, instead of the system's trust store.
    """

    bucket: str
    registry_root: str = "/"
    state_prefix: str = "regseal/"
    policy_location: str = ""
    part_size: int = 16 * MiB
    workers: int = 4
    verify_plaintext: bool = True
    digest_push_grace: float = 60.0
    tuf_bucket: str | None = None
    tuf_prefix: str = "tuf/"
    tuf_queue_url: str | None = None
    queue_url: str | None = None
    bad_input_retry_seconds: int = 10
    max_receive_count: int = 0
    write_back: WriteBackMode = "storage"
    registry_url: str = ""
    registry_credentials: str = ""
    registry_ca_bundle: str = ""

    @property
    def stream(self) -> StreamSettings:
        """How each layer streams: part size, parallelism, the plaintext check."""
        return StreamSettings(
            self.part_size, self.workers, verify_plaintext=self.verify_plaintext
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        bucket = env.get("REGSEAL_BUCKET", "")
        if not bucket:
            raise SettingsError("REGSEAL_BUCKET: expected the registry bucket name")
        prefix = env.get("REGSEAL_STATE_PREFIX", "regseal/")
        if not prefix.endswith("/") or prefix.startswith("/"):
            raise SettingsError(
                "REGSEAL_STATE_PREFIX: expected a relative prefix ending in '/', "
                f"got {prefix!r}"
            )
        mode = env.get("REGSEAL_WRITE_BACK", "storage") or "storage"
        if mode not in WRITE_BACK_MODES:
            raise SettingsError(
                f"REGSEAL_WRITE_BACK: expected one of {', '.join(WRITE_BACK_MODES)}, "
                f"got {mode!r}"
            )
        registry_url = env.get("REGSEAL_REGISTRY_URL", "")
        if mode == "api" or registry_url:
            parts = urlsplit(registry_url)
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                raise SettingsError(
                    "REGSEAL_REGISTRY_URL: expected http(s)://host[:port] of the "
                    f"registry's API (needed with REGSEAL_WRITE_BACK=api), got "
                    f"{registry_url!r}"
                )
        credentials = env.get("REGSEAL_REGISTRY_CREDENTIALS", "")
        if credentials and not credentials.startswith(("secretsmanager:", "ssm:")):
            raise SettingsError(
                "REGSEAL_REGISTRY_CREDENTIALS: expected 'secretsmanager:NAME' or "
                f"'ssm:/NAME', got {credentials!r}"
            )
        return cls(
            bucket=bucket,
            registry_root=env.get("REGSEAL_REGISTRY_ROOT", "/"),
            state_prefix=prefix,
            policy_location=env.get(
                "REGSEAL_POLICY", f"s3://{bucket}/{prefix}policy.json"
            ),
            part_size=_int(env, "REGSEAL_PART_SIZE_MIB", 16) * MiB,
            workers=_int(env, "REGSEAL_WORKERS", 4),
            verify_plaintext=_bool(env, "REGSEAL_VERIFY_PLAINTEXT", True),
            digest_push_grace=float(_int(env, "REGSEAL_DIGEST_PUSH_GRACE_SECONDS", 60)),
            tuf_bucket=env.get("REGSEAL_TUF_BUCKET") or None,
            tuf_prefix=env.get("REGSEAL_TUF_PREFIX", "tuf/"),
            tuf_queue_url=env.get("REGSEAL_TUF_QUEUE_URL") or None,
            queue_url=env.get("REGSEAL_QUEUE_URL") or None,
            bad_input_retry_seconds=_int(env, "REGSEAL_BAD_INPUT_RETRY_SECONDS", 10),
            max_receive_count=_int(env, "REGSEAL_MAX_RECEIVE_COUNT", 0),
            write_back="api" if mode == "api" else "storage",
            registry_url=registry_url,
            registry_credentials=credentials,
            registry_ca_bundle=env.get("REGSEAL_REGISTRY_CA_BUNDLE", ""),
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name}: expected a non-negative integer, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value not in {"true", "false"}:
        raise SettingsError(f"{name}: expected 'true' or 'false', got {raw!r}")
    return value == "true"
