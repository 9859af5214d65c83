"""moto's server: one loopback endpoint for every AWS service the stack uses.

S3, KMS, SQS and SSM (and any other service moto emulates) share the single
endpoint; clients select the service through their request signature. The
server starts through :mod:`regseal.local.motoserver_main`, which makes its KMS
sign DIGEST messages correctly (getmoto/moto#10202), so TUF metadata signed
with the stack's KMS keys verifies.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

from regseal.local.processes import LOOPBACK, ManagedProcess, start_on_free_port

logger = logging.getLogger(__name__)

MOTO_LAUNCHER = "regseal.local.motoserver_main"


def start_moto(*, workdir: Path, cancel: threading.Event) -> tuple[ManagedProcess, str]:
    """Start moto's server on a free port and wait until it answers.

    The server runs with this interpreter, so it is the moto installed next to
    regseal, through the launcher that applies the KMS DIGEST fix
    (:mod:`regseal.local.motoserver_main`). Its log goes to
    ``workdir/moto.log``.

    Returns:
        The process and its endpoint URL (``http://127.0.0.1:PORT``).
    """
    process, port = start_on_free_port(
        "moto server",
        lambda port: [
            sys.executable,
            "-m",
            MOTO_LAUNCHER,
            "-H",
            LOOPBACK,
            "-p",
            str(port),
        ],
        lambda port: f"http://{LOOPBACK}:{port}/moto-api/",
        env=os.environ,
        log_path=workdir / "moto.log",
        cancel=cancel,
    )
    endpoint = f"http://{LOOPBACK}:{port}"
    logger.debug("moto answers on %s", endpoint)
    return process, endpoint
