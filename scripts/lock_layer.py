"""Pin the Lambda layer's dependencies: rewrite layers/regseal/requirements.txt.

Resolves pyproject.toml's runtime dependencies with pip for the Lambda runtime
(CPython 3.12, manylinux2014 wheels only) on both architectures the template
offers, checks both resolve to the same versions, and writes them pinned: the
direct dependencies first (with their extras), then what they pull in.

Run through `make layer-lock`. Needs network access to the package index.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "layers" / "regseal" / "requirements.txt"
PLATFORMS = ("manylinux2014_aarch64", "manylinux2014_x86_64")
PYTHON_VERSION = "3.12"

HEADER = """\
# Runtime dependencies of the Lambda layer, pinned. The first block is
# pyproject.toml's [project] dependencies; the second is everything they pull in.
# Resolved with pip for CPython 3.12 on manylinux2014_aarch64 and
# manylinux2014_x86_64 (the same set on both): `make layer-lock` redoes it.
# tests/unit/test_layer_requirements.py keeps this file in step with pyproject.
"""


def resolve(requirements: list[str], platform: str) -> dict[str, str]:
    """Versions pip would install for ``platform``, by canonical name."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--dry-run",
                "--ignore-installed", "--report", str(report),
                "--target", str(Path(scratch) / "target"),
                "--platform", platform, "--python-version", PYTHON_VERSION,
                "--implementation", "cp", "--only-binary=:all:",
                *requirements,
            ],
            check=True,
        )  # fmt: skip
        installed = json.loads(report.read_text())["install"]
    return {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in installed
    }


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = [Requirement(text) for text in project["dependencies"]]
    texts = [str(r) for r in direct]

    resolutions = {platform: resolve(texts, platform) for platform in PLATFORMS}
    first = resolutions[PLATFORMS[0]]
    for platform, versions in resolutions.items():
        if versions != first:
            sys.exit(f"{platform} resolves differently: {versions} != {first}")

    direct_names = {canonicalize_name(r.name) for r in direct}
    lines = [HEADER.rstrip("\n")]
    for requirement in sorted(direct, key=lambda r: canonicalize_name(r.name)):
        name = canonicalize_name(requirement.name)
        extras = ",".join(sorted(requirement.extras))
        extras = f"[{extras}]" if extras else ""
        lines.append(f"{name}{extras}=={first[name]}")
    lines += ["", "# transitive"]
    lines += [f"{n}=={v}" for n, v in sorted(first.items()) if n not in direct_names]
    REQUIREMENTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {REQUIREMENTS.relative_to(ROOT)}: {len(first)} packages")


if __name__ == "__main__":
    main()
