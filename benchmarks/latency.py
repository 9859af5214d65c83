"""Push-to-sealed latency on the local stack, against the plain push itself.

Starts ``regseal local up --state FILE`` (moto's server, the registry on
moto's S3, the event pump running the seal function), pushes a sample image
with ``skopeo copy oci:… docker://…`` and polls the registry's API until the
tag serves a manifest whose layers are all encrypted. The clock starts when
the push starts; "push" is when skopeo returns, "sealed" when the poll first
sees the sealed manifest.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from regseal.local.sample import write_sample_image

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
START_TIMEOUT = 120.0


@dataclass(frozen=True)
class Latency:
    image_bytes: int
    push_seconds: float
    sealed_seconds: float
    """From the start of the push until the tag served the sealed manifest."""


def _sealed(registry: str, repository: str, tag: str) -> bool:
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}", headers={"Accept": ACCEPT}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            manifest = json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    layers = manifest.get("layers", [])
    return bool(layers) and all(
        str(layer.get("mediaType", "")).endswith("+encrypted") for layer in layers
    )


def push_to_sealed(workdir: Path, big_layer_bytes: int, timeout: float) -> Latency:
    """Measure one push of a sample image with a ``big_layer_bytes`` layer."""
    workdir.mkdir(parents=True, exist_ok=True)
    image = write_sample_image(workdir / "image", big_layer_bytes=big_layer_bytes)
    image_bytes = sum(layer.size for layer in image.layers)
    state_file = workdir / "state.json"
    state_file.unlink(missing_ok=True)
    log = (workdir / "stack.log").open("wb")
    stack = subprocess.Popen(
        [sys.executable, "-m", "regseal", "local", "up", "--state", str(state_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not state_file.exists():
            if stack.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"regseal local up did not come up; see {workdir / 'stack.log'}"
                )
            time.sleep(0.2)
        registry = json.loads(state_file.read_text())["registry"]
        repository, tag = "bench/app", "1"

        start = time.perf_counter()
        subprocess.run(
            [
                SKOPEO,
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"oci:{image.directory}:{image.tag}",
                f"docker://{registry}/{repository}:{tag}",
            ],
            check=True,
            capture_output=True,
        )
        pushed = time.perf_counter()
        while not _sealed(registry, repository, tag):
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"not sealed within {timeout:.0f} s")
            time.sleep(0.05)
        sealed = time.perf_counter()
        return Latency(image_bytes, pushed - start, sealed - start)
    finally:
        if stack.poll() is None:
            stack.send_signal(signal.SIGTERM)
            try:
                stack.wait(60)
            except subprocess.TimeoutExpired:
                stack.kill()
                stack.wait()
        log.close()
