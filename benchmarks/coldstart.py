"""Cold-start import time of each Lambda handler, in fresh interpreters.

A Lambda cold start imports the handler module before the first invocation.
Each measurement runs a new ``python`` that times only the import (the
interpreter's own start-up is the same for every row), repeated and reduced
to the median. The reference is a bare ``import boto3, aws_lambda_powertools``.

A second variant imports with bytecode caching off and an empty cache
directory, as on Lambda when a layer ships without ``.pyc`` files: ``/opt``
is read-only, so every cold start compiles every module from source.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = {
    "seal": ROOT / "functions" / "seal" / "app.py",
    "tuf": ROOT / "functions" / "tuf" / "app.py",
}

_IMPORT_FILE = """
import importlib.util, sys, time
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
print(time.perf_counter() - start)
"""

_IMPORT_BARE = """
import time
start = time.perf_counter()
import boto3, aws_lambda_powertools
print(time.perf_counter() - start)
"""

# What the seal function's environment holds at import time on Lambda.
LAMBDA_ENVIRONMENT = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_LAMBDA_FUNCTION_NAME": "regseal-seal",
    "POWERTOOLS_SERVICE_NAME": "regseal",
    "REGSEAL_BUCKET": "registry",
}


def handlers() -> dict[str, Path]:
    """The handlers present in this checkout."""
    return {name: path for name, path in HANDLERS.items() if path.exists()}


def _once(code: str, arguments: list[str], *, compiled: bool) -> float:
    environment = {**os.environ, **LAMBDA_ENVIRONMENT}
    with tempfile.TemporaryDirectory(prefix="regseal-pycache-") as empty:
        flags: list[str] = []
        if not compiled:
            environment["PYTHONPYCACHEPREFIX"] = empty
            flags = ["-B"]
        reply = subprocess.run(
            [sys.executable, *flags, "-c", code, *arguments],
            check=True,
            capture_output=True,
            text=True,
            env=environment,
            cwd=ROOT,
        )
    return float(reply.stdout.strip().splitlines()[-1])


def import_seconds(
    handler: Path | None, repeat: int, *, compiled: bool = True
) -> float:
    """Median seconds to import ``handler`` (None: bare boto3 + Powertools)."""
    code, arguments = (
        (_IMPORT_BARE, []) if handler is None else (_IMPORT_FILE, [str(handler)])
    )
    _once(code, arguments, compiled=compiled)  # warm the page cache
    return statistics.median(
        _once(code, arguments, compiled=compiled) for _ in range(repeat)
    )
