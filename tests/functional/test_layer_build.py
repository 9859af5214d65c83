"""The Lambda layer as `make layer` builds it, imported the way Lambda does.

Lambda puts the layer's ``python/`` directory and the function's own directory
on the path (PYTHONPATH) and nothing else. This test builds the layer with the
real Makefile recipe and imports from it in a fresh interpreter started with
``-S``: no site module, so no site-packages of the development environment
and no ``.pth`` files (Lambda does not process a layer's ``.pth`` files either).

The machine runs Python 3.11 and Lambda runs 3.12, so the test builds for the
local interpreter (``LAYER_PLATFORM=local``) rather than for Lambda's platform:
it checks that the pins are complete and the package imports from the layer,
not that Lambda's wheels load (`make layer` builds those; see docs/deploy.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "layers" / "regseal" / "requirements.txt"


@dataclass(frozen=True)
class ImportCheck:
    """Modules to import from the layer plus ``code_dirs`` (relative to ROOT)."""

    code_dirs: tuple[str, ...]
    modules: tuple[str, ...]


# One fresh interpreter per entry. A function's handler joins as its own entry,
# for example ImportCheck(("functions/seal",), ("app",)).
IMPORT_CHECKS = [
    ImportCheck(
        code_dirs=(),
        modules=(
            "regseal",
            "regseal.digest",
            "regseal.errors",
            "boto3",
            "cryptography.hazmat.primitives.ciphers",
            "cryptography.hazmat.bindings._rust",
            "jwcrypto.jwe",
            "aws_lambda_powertools.logging",
            "aws_lambda_powertools.metrics",
            "aws_lambda_powertools.tracing",
            "aws_xray_sdk.core",
            "tuf.api.metadata",
            "securesystemslib.signer",
        ),
    ),
    # Each function's handler, importing its whole domain from the layer. Both
    # handlers are named app.py, so each gets its own interpreter and code dir
    # (Lambda too puts only the function's own directory on the path).
    ImportCheck(code_dirs=("functions/seal",), modules=("app", "regseal.seal")),
    ImportCheck(
        code_dirs=("functions/tuf",),
        modules=("app", "regseal.tuf.publish", "regseal.tuf.signers"),
    ),
]

PROBE = """
import importlib, json, sys
found = {name: importlib.import_module(name).__file__ for name in sys.argv[1:]}
print(json.dumps({"path": sys.path, "files": found}))
"""


@pytest.fixture(scope="module", name="layer")
def _layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("layer")
    subprocess.run(
        ["make", "-s", "layer", "LAYER_PLATFORM=local", f"LAYER_DIR={out}"],
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    return out / "python"


def import_from_layer(layer: Path, check: ImportCheck) -> dict[str, object]:
    code = [str(ROOT / d) for d in check.code_dirs]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(layer), *code]),
        "PYTHONNOUSERSITE": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    completed = subprocess.run(
        [sys.executable, "-S", "-B", "-c", PROBE, *check.modules],
        env=env,
        cwd=layer,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    loaded: dict[str, object] = json.loads(completed.stdout)
    return loaded


@pytest.mark.parametrize("check", IMPORT_CHECKS)
def test_modules_import_from_the_layer_alone(layer: Path, check: ImportCheck) -> None:
    result = import_from_layer(layer, check)
    roots = [layer, *(ROOT / d for d in check.code_dirs)]
    path = result["path"]
    files = result["files"]
    assert isinstance(path, list)
    assert isinstance(files, dict)

    assert not [p for p in path if "site-packages" in p]
    for module, file in files.items():
        assert any(Path(file).is_relative_to(r) for r in roots), (module, file)
    if "app" in files:
        (code_dir,) = check.code_dirs
        assert Path(str(files["app"])) == ROOT / code_dir / "app.py"


def test_layer_holds_exactly_the_pinned_distributions(layer: Path) -> None:
    pinned = {
        canonicalize_name(Requirement(line).name): str(Requirement(line).specifier)
        for line in REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    installed = {}
    for dist_info in layer.glob("*.dist-info"):
        name, version = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[canonicalize_name(name)] = f"=={version}"

    assert installed == pinned
    assert (layer / "regseal" / "__init__.py").is_file()
    assert not list(layer.rglob("__pycache__"))
