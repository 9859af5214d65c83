"""The local registry's htpasswd file: basic auth for one dummy account.

distribution's ``auth.htpasswd`` access controller reads an Apache htpasswd
file and accepts only bcrypt entries (``user:$2y$...``, ``$2a$`` or ``$2b$``).
The ``bcrypt`` package (a development dependency) makes the hash.
"""

from __future__ import annotations

import logging
from pathlib import Path

from regseal.errors import LocalStackError

logger = logging.getLogger(__name__)

HTPASSWD_FILE = "htpasswd"
# The cheapest cost bcrypt allows: the file guards a dummy account on loopback,
# and the registry checks the hash on every request.
BCRYPT_ROUNDS = 4


def write_htpasswd(directory: Path, username: str, password: str) -> Path:
    """Write an htpasswd file with one bcrypt entry and return its path.

    Raises:
        LocalStackError: the ``bcrypt`` package is not installed.
    """
    try:
        import bcrypt
    except ImportError:
        raise LocalStackError(
            "expected the 'bcrypt' package for the registry's htpasswd file; "
            "run ./scripts/bootstrap.sh (it installs regseal[dev])"
        ) from None
    if ":" in username:
        raise LocalStackError(f"expected a username without ':', got {username!r}")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS))
    path = (directory / HTPASSWD_FILE).resolve()
    path.write_text(f"{username}:{hashed.decode('ascii')}\n")
    path.chmod(0o600)
    logger.debug("wrote htpasswd for %s to %s", username, path)
    return path
