"""Peak memory of one seal, each in a fresh interpreter.

:func:`peak_rss` starts ``python -m benchmarks.memory`` for one layer size;
that child imports regseal, notes its resident set, seals the layer from a
:class:`FileStore` and prints its peak resident set (``VmHWM``) as JSON. The
store's files live in the page cache, not in the process, so the peak is the
interpreter plus the engine's buffers.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import LayerFile

KiB = 1024


@dataclass(frozen=True)
class Peak:
    """Resident set sizes of one child, in bytes."""

    before: int
    """After imports, before the seal."""
    peak: int
    """The highest resident set of the whole process (VmHWM)."""


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KiB


def peak_rss(layer: LayerFile, root: Path, part_size: int, workers: int) -> Peak:
    """Seal ``layer`` in a fresh interpreter and return its resident sets."""
    reply = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.memory",
            "--layer",
            str(layer.path),
            "--size",
            str(layer.size),
            "--digest",
            str(layer.digest),
            "--root",
            str(root),
            "--part-size",
            str(part_size),
            "--workers",
            str(workers),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(reply.stdout)
    return Peak(int(result["before"]), int(result["peak"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layer", type=Path, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--digest", required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--part-size", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    arguments = parser.parse_args()

    from tests.support.filestore import FileStore

    from regseal.digest import Digest
    from regseal.layerstream import StreamSettings, encrypt_blob
    from regseal.ocicrypt import PrivateOptions

    store = FileStore(arguments.root)
    store.add_file("plain", arguments.layer, arguments.size)
    options = PrivateOptions.generate(Digest.parse(arguments.digest))
    settings = StreamSettings(arguments.part_size, arguments.workers)
    before = _status("VmRSS")
    encrypt_blob(
        store,
        "plain",
        arguments.size,
        options,
        lambda digest: f"blobs/{digest.hex}",
        "staging/",
        settings,
    )
    peak = _status("VmHWM")
    store.close()
    print(json.dumps({"before": before, "peak": peak}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
