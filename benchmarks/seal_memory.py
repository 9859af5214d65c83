"""How much memory the seal takes for one large layer, on the local stack.

Starts its own ``regseal local up``, pushes an image with one large random
layer (256 MiB by default) with skopeo, waits until the registry serves it
sealed, decrypts it with skopeo to check the result, and prints the resident
memory of the stack's process (the event pump and the seal handler run in
it): RSS before the push, its peak during push and seal (``VmHWM`` after
resetting it through ``/proc/PID/clear_refs``), and a sampled profile. It
makes no assertions on time; it prints numbers.

Run from the checkout: ``.venv/bin/python benchmarks/seal_memory.py``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import skopeo  # noqa: E402
from tests.support.ocilayout import read_image_layout  # noqa: E402
from tests.support.stackclient import StackClient, wait_for  # noqa: E402

from regseal.local.sample import MIB, write_sample_image  # noqa: E402
from regseal.local.state import StackState  # noqa: E402


def status_kib(pid: int, field: str) -> int:
    """A ``VmRSS``-style field of ``/proc/PID/status``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux 4.0+); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Sampler(threading.Thread):
    """Samples a process's RSS every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._stopping.wait(self.interval):
            try:
                self.samples.append(
                    (time.monotonic() - start, status_kib(self.pid, "VmRSS"))
                )
            except (OSError, KeyError):
                return

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def mib(kib: int) -> str:
    return f"{kib / 1024:7.1f} MiB"


def sealed(reference: str) -> bool:
    try:
        layers = skopeo.inspect_json(reference).get("layers") or []
    except skopeo.SkopeoError:
        return False
    return bool(layers) and all(x["mediaType"].endswith("+encrypted") for x in layers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-mib", type=int, default=256)
    parser.add_argument(
        "--part-size-mib", type=int, help="REGSEAL_PART_SIZE_MIB for the stack"
    )
    parser.add_argument("--workers", type=int, help="REGSEAL_WORKERS for the stack")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    environment = dict(os.environ)
    if args.part_size_mib is not None:
        environment["REGSEAL_PART_SIZE_MIB"] = str(args.part_size_mib)
    if args.workers is not None:
        environment["REGSEAL_WORKERS"] = str(args.workers)

    with tempfile.TemporaryDirectory(prefix="regseal-bench-") as tmp:
        work = Path(tmp)
        state_file = work / "state.json"
        output = work / "stack.out"
        with output.open("wb") as out:
            stack = subprocess.Popen(
                [sys.executable, "-m", "regseal", "local", "up", "--state", state_file],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            return run(args, stack, state_file, output, work)
        finally:
            stack.send_signal(signal.SIGTERM)
            try:
                stack.wait(30)
            except subprocess.TimeoutExpired:
                stack.kill()
                stack.wait()


def run(
    args: argparse.Namespace,
    stack: subprocess.Popen[bytes],
    state_file: Path,
    output: Path,
    work: Path,
) -> int:
    wait_for(
        lambda: state_file.exists() or stack.poll() is not None,
        timeout=60,
        what="the local stack's state file",
    )
    if stack.poll() is not None:
        print(output.read_text(), file=sys.stderr)
        return 1
    state = StackState.load(state_file)
    client = StackClient(state, output)
    pid = state.pids["stack"]
    assert pid == stack.pid

    started = time.monotonic()
    image = write_sample_image(work / "image", big_layer_bytes=args.layer_mib * MIB)
    built = time.monotonic() - started
    big = max(image.layers, key=lambda layer: layer.size)
    reference = f"{state.registry}/bench/big:1"

    rss_idle = status_kib(pid, "VmRSS")
    hwm_startup = status_kib(pid, "VmHWM")
    peak_reset = reset_peak(pid)
    sampler = Sampler(pid)
    sampler.start()

    started = time.monotonic()
    digest = skopeo.push(
        f"oci:{work / 'image'}:latest", reference, digest_file=work / "pushed"
    )
    pushed = time.monotonic() - started
    wait_for(lambda: sealed(reference), timeout=args.timeout, what="sealed")
    sealed_after = time.monotonic() - started - pushed
    client.wait_drained(timeout=args.timeout)
    sampler.stop()
    hwm = status_kib(pid, "VmHWM")
    rss_after = status_kib(pid, "VmRSS")
    moto_rss = status_kib(state.pids["moto"], "VmRSS")

    started = time.monotonic()
    plaintext = client.stored_manifest(str(digest))
    skopeo.pull(
        reference,
        f"oci:{work / 'decrypted'}:pulled",
        "--decryption-key",
        state.jwe_private_key,
    )
    pulled = read_image_layout(work / "decrypted", "pulled")
    decrypted = time.monotonic() - started
    if pulled.manifest.layer_digests != plaintext.layer_digests:
        print("FAIL: decrypted layer digests differ from the pushed ones")
        return 1
    seal_line = next(
        r.fields
        for r in client.log_records()
        if r.message == "seal finished" and r.fields.get("outcome") == "sealed"
    )

    sampled_peak = max((kib for _, kib in sampler.samples), default=0)
    print(f"image: {len(image.layers)} layers, largest {big.size / MIB:.1f} MiB")
    print(
        "stack settings: part size "
        f"{os.environ.get('REGSEAL_PART_SIZE_MIB', args.part_size_mib or 16)} MiB, "
        f"workers {os.environ.get('REGSEAL_WORKERS', args.workers or 4)}"
    )
    print(f"seal: {seal_line.get('bytes_sealed', 0) / MIB:.1f} MiB sealed")
    print(f"time: build {built:.1f} s, push {pushed:.1f} s, ", end="")
    print(f"sealed {sealed_after:.1f} s after the push, decrypt {decrypted:.1f} s")
    print(f"regseal local up (pid {pid}) memory:")
    print(f"  RSS before the push           {mib(rss_idle)}")
    print(f"  peak RSS at startup (VmHWM)   {mib(hwm_startup)}")
    if peak_reset:
        print(f"  peak RSS push+seal (VmHWM)    {mib(hwm)}")
        print(f"  peak growth over idle         {mib(hwm - rss_idle)}")
    else:
        print(f"  VmHWM (not reset: startup included) {mib(hwm)}")
    print(f"  peak RSS sampled every 0.1 s  {mib(sampled_peak)}")
    print(f"  RSS after the seal            {mib(rss_after)}")
    print(f"moto server RSS after the seal  {mib(moto_rss)}")
    print("decrypted layer digests equal the pushed ones: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
