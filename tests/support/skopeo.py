"""Run Debian's unmodified skopeo against the local stack's plain-http registry.

Every call goes to a registry on the loopback address without TLS, so the
``--*tls-verify=false`` flags are set here once. Failures raise with skopeo's
own output, which names the reference and what went wrong.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SKOPEO = "skopeo"
COMMAND_TIMEOUT = 300.0


class SkopeoError(AssertionError):
    """skopeo exited non-zero; the message carries its command and output."""


def run(arguments: Sequence[str | Path], *, timeout: float = COMMAND_TIMEOUT) -> bytes:
    """Run ``skopeo ARGUMENTS`` and return its standard output, byte for byte.

    Raises:
        SkopeoError: skopeo exited non-zero.
    """
    command = [SKOPEO, *(str(a) for a in arguments)]
    result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    if result.returncode != 0:
        output = (result.stderr + result.stdout).decode(errors="replace").strip()
        raise SkopeoError(f"{' '.join(command)} exited {result.returncode}:\n{output}")
    return result.stdout


def push(
    source: str, reference: str, *extra: str | Path, digest_file: Path | None = None
) -> str | None:
    """``skopeo copy SOURCE docker://REFERENCE`` into the plain-http registry.

    Args:
        source: a skopeo source, such as ``oci:DIR:TAG``.
        reference: ``host:port/repository:tag``.
        extra: more ``skopeo copy`` flags (``--format v2s2``, ``--all``).
        digest_file: where skopeo writes the pushed manifest digest.

    Returns:
        The pushed manifest digest when ``digest_file`` is given.
    """
    flags: list[str | Path] = ["--quiet", "--dest-tls-verify=false", *extra]
    if digest_file is not None:
        flags += ["--digestfile", digest_file]
    run(["copy", *flags, source, f"docker://{reference}"])
    return digest_file.read_text().strip() if digest_file is not None else None


def pull(reference: str, destination: str, *extra: str | Path) -> None:
    """``skopeo copy docker://REFERENCE DESTINATION`` from the plain-http registry.

    Args:
        reference: ``host:port/repository:tag`` or ``...@sha256:...``.
        destination: a skopeo destination, such as ``oci:DIR:TAG``.
        extra: more flags (``--decryption-key FILE``, ``--all``,
            ``--override-arch ARCH``).
    """
    run(
        [
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            *extra,
            f"docker://{reference}",
            destination,
        ]
    )


def inspect_raw(reference: str) -> bytes:
    """The manifest bytes the registry serves for ``reference``."""
    return run(["inspect", "--raw", "--tls-verify=false", f"docker://{reference}"])


def inspect_json(reference: str) -> dict[str, Any]:
    """The manifest the registry serves for ``reference``, parsed."""
    document: dict[str, Any] = json.loads(inspect_raw(reference))
    return document
