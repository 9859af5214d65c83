"""regseal's TUF repository: team-delegated targets, online snapshot and timestamp.

Roles (see docs/tuf.md): root and top-level targets with offline keys; one
delegated targets role per team (``team-a``), signed by the team's KMS key and
split into hash bins when it grows; snapshot and timestamp signed by online KMS
keys. Metadata lives in S3 as consistent snapshots, written with conditional
writes so that concurrent writers never overwrite each other.

Entry points:

- the seal function: :class:`TargetsWriter` (``add_target``, ``remove_target``);
- the TUF function: :class:`Publisher` (``refresh_snapshot_and_timestamp``);
- operators: :mod:`regseal.tuf.admin` and :mod:`regseal.tuf.cli`;
- consumers: :mod:`regseal.verify`.
"""

from regseal.tuf.messages import TargetsChanged
from regseal.tuf.publish import Publisher, RefreshResult
from regseal.tuf.settings import TufSettings
from regseal.tuf.store import MetadataLocation, MetadataStore
from regseal.tuf.targets import (
    TargetCustom,
    TargetRecord,
    parse_target_path,
    target_path,
)
from regseal.tuf.updates import TargetsWriter, TargetUpdate, TeamUpdate

__all__ = [
    "MetadataLocation",
    "MetadataStore",
    "Publisher",
    "RefreshResult",
    "TargetCustom",
    "TargetRecord",
    "TargetUpdate",
    "TargetsChanged",
    "TargetsWriter",
    "TeamUpdate",
    "TufSettings",
    "parse_target_path",
    "target_path",
]
