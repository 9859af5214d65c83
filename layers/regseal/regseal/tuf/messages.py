"""The "targets changed" message the seal function sends to the TUF function.

Body (JSON)::

    {"type": "regseal.tuf.targets-changed", "roles": {"team-a": 7}}

``roles`` maps each targets role written to the version written. The TUF
function uses the names as hints of where to look (it still reads every version
from storage and verifies it), so a lost or duplicated message costs at most a
delay until the next scheduled run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regseal.errors import EventError

MESSAGE_TYPE = "regseal.tuf.targets-changed"


@dataclass(frozen=True)
class TargetsChanged:
    """Roles that got new versions.

    Attributes:
        roles: role name -> version written.
    """

    roles: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """The message body."""
        return json.dumps(
            {"type": MESSAGE_TYPE, "roles": dict(sorted(self.roles.items()))},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, body: str | bytes) -> TargetsChanged:
        """Parse a message body.

        Raises:
            EventError: not a targets-changed message.
        """
        try:
            data: Any = json.loads(body)
        except ValueError as exc:
            raise EventError(
                f"expected a JSON targets-changed message, got {body[:80]!r}"
            ) from exc
        if not isinstance(data, dict) or data.get("type") != MESSAGE_TYPE:
            raise EventError(
                f"expected a message of type {MESSAGE_TYPE!r}, got {str(body)[:80]!r}"
            )
        roles = data.get("roles")
        if not isinstance(roles, dict) or not all(
            isinstance(name, str)
            and isinstance(version, int)
            and not isinstance(version, bool)
            and version > 0
            for name, version in roles.items()
        ):
            raise EventError(
                f"expected 'roles' to map role names to versions > 0, got {roles!r}"
            )
        return cls(dict(roles))

    def merge(self, other: TargetsChanged) -> TargetsChanged:
        """Both messages' roles, keeping the higher version of each."""
        roles = dict(self.roles)
        for name, version in other.roles.items():
            roles[name] = max(version, roles.get(name, 0))
        return TargetsChanged(roles)
