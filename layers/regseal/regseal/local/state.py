"""The state file of a running local stack: how scripts and tests find it.

``regseal local up --state FILE`` writes FILE once every part answers and
removes it when the stack stops. It is one JSON object; the keys of
:meth:`StackState.to_json` are the contract and only ever gain members. The
``tuf_*`` members are null for a stack started with ``--no-tuf``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regseal.errors import LocalStackError


@dataclass(frozen=True)
class StackState:
    """Addresses, names and key paths of one running stack."""

    registry: str
    """``host:port`` of the registry (plain http)."""
    s3_endpoint: str
    """moto's endpoint URL, serving S3, KMS, SQS, SSM and the rest."""
    bucket: str
    region: str
    queue_url: str
    dlq_url: str
    kms_key_id: str
    kms_key_alias: str
    policy: str
    """Where the policy lives, as the seal function's REGSEAL_POLICY names it."""
    jwe_private_key: Path
    jwe_public_key: Path
    workdir: Path
    pids: dict[str, int]
    """Process ids by role: ``stack`` (regseal itself), ``moto``, ``registry``."""
    write_back: str = "storage"
    """How the seal writes: ``storage`` (S3 objects) or ``api`` (registry API)."""
    tags_in_database: bool = False
    """True when ``registry`` is a front that keeps tags out of storage, as
    Harbor 2.15 and later do."""
    registry_auth: str = "none"
    """What the registry requires: ``none``, ``htpasswd`` (basic) or ``token``."""
    registry_username: str = ""
    registry_password: str = ""
    """The registry account (dummies) when ``registry_auth`` is not ``none``."""
    tuf_metadata_url: str | None = None
    """TUF metadata over plain HTTP (moto's S3, anonymous); None without TUF."""
    tuf_root: Path | None = None
    """The trusted root.json to bootstrap TUF clients from; None without TUF."""
    tuf_queue_url: str | None = None
    """The TUF function's "targets changed" queue; None without TUF."""
    tuf_dlq_url: str | None = None
    """Its dead-letter queue; None without TUF."""

    def to_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "s3_endpoint": self.s3_endpoint,
            "bucket": self.bucket,
            "region": self.region,
            "queue_url": self.queue_url,
            "dlq_url": self.dlq_url,
            "kms_key_id": self.kms_key_id,
            "kms_key_alias": self.kms_key_alias,
            "policy": self.policy,
            "jwe_private_key": str(self.jwe_private_key),
            "jwe_public_key": str(self.jwe_public_key),
            "workdir": str(self.workdir),
            "pids": dict(self.pids),
            "write_back": self.write_back,
            "tags_in_database": self.tags_in_database,
            "registry_auth": self.registry_auth,
            "registry_username": self.registry_username,
            "registry_password": self.registry_password,
            "tuf_metadata_url": self.tuf_metadata_url,
            "tuf_root": None if self.tuf_root is None else str(self.tuf_root),
            "tuf_queue_url": self.tuf_queue_url,
            "tuf_dlq_url": self.tuf_dlq_url,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackState:
        try:
            return cls(
                registry=str(data["registry"]),
                s3_endpoint=str(data["s3_endpoint"]),
                bucket=str(data["bucket"]),
                region=str(data["region"]),
                queue_url=str(data["queue_url"]),
                dlq_url=str(data["dlq_url"]),
                kms_key_id=str(data["kms_key_id"]),
                kms_key_alias=str(data["kms_key_alias"]),
                policy=str(data["policy"]),
                jwe_private_key=Path(data["jwe_private_key"]),
                jwe_public_key=Path(data["jwe_public_key"]),
                workdir=Path(data["workdir"]),
                pids={str(k): int(v) for k, v in dict(data["pids"]).items()},
                write_back=str(data.get("write_back", "storage")),
                tags_in_database=bool(data.get("tags_in_database", False)),
                registry_auth=str(data.get("registry_auth", "none")),
                registry_username=str(data.get("registry_username", "")),
                registry_password=str(data.get("registry_password", "")),
                tuf_metadata_url=_optional(data, "tuf_metadata_url"),
                tuf_root=_optional_path(data, "tuf_root"),
                tuf_queue_url=_optional(data, "tuf_queue_url"),
                tuf_dlq_url=_optional(data, "tuf_dlq_url"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LocalStackError(
                f"expected a local stack state object, missing or bad field: {exc}"
            ) from exc

    @classmethod
    def load(cls, path: Path) -> StackState:
        """Read a state file.

        Raises:
            LocalStackError: the file is missing or is not a state file.
        """
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LocalStackError(
                f"expected a JSON state file at {path}: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise LocalStackError(f"expected a JSON object in state file {path}")
        return cls.from_json(data)

    def write(self, path: Path) -> None:
        """Write the file in one step, so readers never see half of it."""
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(partial, path)


def _optional(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return None if value is None else str(value)


def _optional_path(data: dict[str, Any], name: str) -> Path | None:
    value = _optional(data, name)
    return None if value is None else Path(value)
