"""The sealing policy the local stack stores unless an operator brings one.

It puts every repository in one team, "demo", whose layers get keys from the
stack's KMS key and whose only JWE recipient is the stack's demo key pair, so
any push is sealed and the private key in the state file opens it.
"""

from __future__ import annotations

import json
from pathlib import Path

from regseal.errors import PolicyError
from regseal.local.resources import KMS_KEY_ALIAS

POLICY_VERSION = "demo-1"
DEMO_TEAM = "demo"


def demo_policy(public_key_pem: str) -> dict[str, object]:
    """The demo policy with ``public_key_pem`` as the team's JWE recipient."""
    return {
        "version": POLICY_VERSION,
        "unmatched": "skip",
        "teams": {
            DEMO_TEAM: {
                "repositories": ["*"],
                "kms_key": KMS_KEY_ALIAS,
                "recipients": [{"name": DEMO_TEAM, "public_key": public_key_pem}],
            }
        },
    }


def policy_document(policy_file: Path | None, public_key_pem: str) -> bytes:
    """The bytes to store as the stack's policy.

    Args:
        policy_file: an operator's policy, stored unchanged; ``None`` for the
            demo policy.
        public_key_pem: the demo recipient's public key.

    Raises:
        PolicyError: ``policy_file`` cannot be read or is not a JSON object.
            Its content is checked in depth by the seal handler, not here.
    """
    if policy_file is None:
        return json.dumps(demo_policy(public_key_pem), indent=2).encode()
    try:
        data = policy_file.read_bytes()
        parsed = json.loads(data)
    except (OSError, ValueError) as exc:
        raise PolicyError(
            f"expected a readable JSON policy file at {policy_file}: {exc}"
        ) from exc
    if not isinstance(parsed, dict):
        raise PolicyError(
            f"expected a JSON object in policy file {policy_file}, "
            f"got {type(parsed).__name__}"
        )
    return data
