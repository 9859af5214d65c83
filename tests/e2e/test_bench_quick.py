"""``python -m benchmarks --quick`` runs every section and prints every row.

A smoke test of the benchmark harness, not of performance: it checks no
timing. The counts it checks (KMS calls, bytes through the cipher on a
re-push) are exact properties of a seal, not measurements.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ROWS = [
    "engine-one-lane-cpu",
    "engine-trusting-cpu",
    "engine-trusting-vs-hashing-bound",
    "engine-vs-hashing-bound",
    "engine-vs-own-work",
    "engine-moto-server",
    "engine-vs-skopeo-encrypt",
    "engine-vs-skopeo-encrypt-cpu",
    "engine-trusting-vs-skopeo-encrypt",
    "engine-trusting-vs-skopeo-encrypt-cpu",
    "decrypt-vs-skopeo",
    "decrypt-vs-skopeo-cpu",
    "decrypt-layers-key-cache",
    "memory-large-vs-small",
    "s3-requests-per-image",
    "kms-calls-per-layer",
    "repush-s3-requests",
    "repush-kms-calls",
    "repush-crypto-bytes",
    "push-to-sealed",
    "coldstart-seal",
    "coldstart-seal-no-pyc",
]


def expected_rows() -> list[str]:
    rows = list(ROWS)
    if (ROOT / "functions" / "tuf" / "app.py").exists():
        rows += ["coldstart-tuf", "coldstart-tuf-no-pyc"]
    return rows


@pytest.mark.e2e
def test_quick_bench_prints_every_row(tmp_path):
    results = tmp_path / "bench.json"
    workdir = tmp_path / "work"

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--workdir",
            str(workdir),
            "--json",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    table = [line for line in run.stdout.splitlines() if line.startswith("| `")]
    printed = [line.split("`")[1] for line in table]
    assert printed == expected_rows()
    rows = {row["key"]: row for row in json.loads(results.read_text())["rows"]}
    for key, row in rows.items():
        assert row["value"]["value"] > 0, key
        if row["reference"] is not None:
            assert row["reference"]["value"] > 0, key
    # One KMS Encrypt per sealed layer, and none for reused ones; a re-push
    # encrypts exactly the bytes of the one layer that changed.
    assert rows["kms-calls-per-layer"]["ratio"] == 1.0
    assert rows["repush-kms-calls"]["value"]["value"] == 1
    assert rows["repush-crypto-bytes"]["ratio"] == 1.0
    # The rows that hold the engine to its targets name them.
    for key in (
        "engine-trusting-vs-hashing-bound",
        "engine-trusting-vs-skopeo-encrypt",
        "engine-trusting-vs-skopeo-encrypt-cpu",
    ):
        assert rows[key]["target"] is not None, key
    assert not workdir.exists()
