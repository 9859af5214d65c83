"""``python -m benchmarks [--quick]``: run every measurement, print one table.

Sections, in the order they run:

1. engine: the seal engine on a file store, the hashing bound in memory,
   and the engine through boto3 against moto's server;
2. skopeo: ``skopeo copy --encryption-key`` / ``--decryption-key`` of the
   same layer, and regseal's ``decrypt_layer`` of skopeo's output;
3. memory: peak RSS of sealing a small and a large layer, fresh processes;
4. requests: S3 requests and KMS calls per image, and for a re-push;
5. latency: push-to-sealed on the local stack against the plain push;
6. coldstart: import time of each handler against boto3 + Powertools.

Data is generated once into the work directory and deleted at the end
(``--keep`` keeps it for the next run).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cryptography
from cryptography.hazmat.backends.openssl.backend import backend

from benchmarks import coldstart, engine, latency, memory, requests, skopeo
from benchmarks.data import GiB, LayerFile, MiB, gzip_layer, random_layers
from benchmarks.results import Quantity, Row, compare, count, dump, markdown
from benchmarks.skopeo import KeyFiles
from regseal import jwe
from regseal.layerstream import StreamSettings

logger = logging.getLogger(__name__)

SECTIONS = ("engine", "skopeo", "memory", "requests", "latency", "coldstart")


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run."""

    engine_bytes: int
    moto_bytes: int
    repeat: int
    memory_small: int
    memory_large: int
    memory_settings: StreamSettings
    image_layers: tuple[int, ...]
    decrypt_layers: tuple[int, ...]
    latency_big_layer: int
    coldstart_repeat: int


FULL = Plan(
    engine_bytes=1 * GiB,
    moto_bytes=256 * MiB,
    repeat=3,
    memory_small=256 * MiB,
    memory_large=2 * GiB,
    memory_settings=StreamSettings(),
    image_layers=(256 * 1024, 256 * 1024, 256 * 1024, 256 * 1024, 12 * MiB),
    decrypt_layers=(2 * MiB,) * 8,
    latency_big_layer=200 * MiB,
    coldstart_repeat=5,
)

QUICK = Plan(
    engine_bytes=48 * MiB,
    moto_bytes=24 * MiB,
    repeat=1,
    memory_small=32 * MiB,
    memory_large=128 * MiB,
    memory_settings=StreamSettings(5 * MiB, 2),
    image_layers=(64 * 1024, 64 * 1024, 12 * MiB),
    decrypt_layers=(64 * 1024,) * 3,
    latency_big_layer=8 * MiB,
    coldstart_repeat=1,
)


def _size(n: int) -> str:
    return f"{n // GiB} GiB" if n % GiB == 0 else f"{n // MiB} MiB"


class Bench:
    """One run: collects rows and details while the sections run."""

    def __init__(
        self, plan: Plan, workdir: Path, scratch: Path, sections: list[str]
    ) -> None:
        self.plan = plan
        self.workdir = workdir
        self.scratch = scratch
        self.rows: list[Row] = []
        self.details: list[str] = []
        self.settings = StreamSettings()
        self.trusting = replace(self.settings, verify_plaintext=False)
        data = workdir / "data"
        self.layers: dict[int, LayerFile] = {}
        if {"engine", "skopeo"} & set(sections):
            for size in {plan.engine_bytes, plan.moto_bytes}:
                self.layers[size] = gzip_layer(data / f"layer-{size}.gz", size)
        self.decrypt_image: list[LayerFile] = []
        if "skopeo" in sections:
            self.decrypt_image = [
                gzip_layer(data / f"image-layer-{index}.gz", payload)
                for index, payload in enumerate(plan.decrypt_layers)
            ]
        if "memory" in sections:
            sizes = (plan.memory_small, plan.memory_large)
            self.memory_layers = random_layers(data / "layer.bin", sizes)

    def note(self, text: str) -> None:
        self.details.append(text)
        logger.info("%s", text)

    # -- 1. engine -----------------------------------------------------------

    def _engine_once(
        self, best: engine.Run | None, settings: StreamSettings | None = None
    ) -> engine.Run:
        """One more seal of the engine layer; the faster of it and ``best``.

        Each section keeps its own best engine run, from the runs that took
        turns with its reference, so that both saw the same machine.
        """
        layer = self.layers[self.plan.engine_bytes]
        run = engine.engine_throughput(
            layer, self.scratch / "filestore", settings or self.settings, 1
        )
        return engine.faster(best, run)

    def engine(self) -> None:
        plan, layer = self.plan, self.layers[self.plan.engine_bytes]
        size = _size(plan.engine_bytes)
        # Engine and bounds take turns, so that both see the same machine
        # (it is shared); each keeps its fastest run.
        bounds: dict[bool, dict[str, engine.Run]] = {False: {}, True: {}}
        best_engine: engine.Run | None = None
        trusting: engine.Run | None = None
        single: engine.Run | None = None
        one_lane = replace(self.settings, lanes=1)
        for _ in range(plan.repeat):
            best_engine = self._engine_once(best_engine)
            trusting = self._engine_once(trusting, self.trusting)
            single = self._engine_once(single, one_lane)
            for plaintext_hash in (False, True):
                measured = engine.hashing_bounds(
                    layer, layer.size, 1, plaintext_hash=plaintext_hash
                )
                for name, result in measured.items():
                    kept = bounds[plaintext_hash].get(name)
                    bounds[plaintext_hash][name] = engine.faster(kept, result)
        assert single is not None
        assert trusting is not None
        run = best_engine
        assert run is not None
        value = Quantity(run.mib_per_s, "MiB/s")
        gib = layer.size / GiB
        lanes = self.settings.hash_lanes
        self.note(
            f"engine on the file store, {size}, part {_size(self.settings.part_size)}"
            f", {self.settings.workers} workers, {lanes} lanes: "
            f"{run.mib_per_s:.0f} MiB/s, {run.cores:.2f} cores busy, "
            f"{run.cpu_seconds / gib:.2f} CPU-s/GiB (best of {run.runs})"
        )
        self.note(
            f"the same without the plaintext check (verify_plaintext=False): "
            f"{trusting.mib_per_s:.0f} MiB/s, {trusting.cores:.2f} cores busy, "
            f"{trusting.cpu_seconds / gib:.2f} CPU-s/GiB"
        )
        self.note(
            f"the same with 1 lane: {single.mib_per_s:.0f} MiB/s, "
            f"{single.cores:.2f} cores busy, {single.cpu_seconds / gib:.2f} CPU-s/GiB"
        )
        self.rows.append(
            compare(
                "engine-one-lane-cpu",
                "CPU per GiB sealed, engine with 1 lane (all hashing on one thread)",
                Quantity(single.cpu_seconds / gib, "CPU-s/GiB"),
                f"CPU per GiB, engine with {lanes} lanes",
                Quantity(run.cpu_seconds / gib, "CPU-s/GiB"),
                note=f"1 lane: {single.mib_per_s:.0f} MiB/s; what 1 vCPU buys",
            )
        )
        self.rows.append(
            compare(
                "engine-trusting-cpu",
                "CPU per GiB sealed, engine without the plaintext check",
                Quantity(trusting.cpu_seconds / gib, "CPU-s/GiB"),
                "CPU per GiB, engine with it (the default)",
                Quantity(run.cpu_seconds / gib, "CPU-s/GiB"),
                note=f"verify_plaintext=False: {trusting.mib_per_s:.0f} MiB/s; "
                "lower is better",
            )
        )

        for plaintext_hash, what in (
            (False, "AES + HMAC + sha256"),
            (True, "AES + HMAC + sha256 + plaintext sha256"),
        ):
            for name, bound in bounds[plaintext_hash].items():
                self.note(
                    f"in memory, {what}, {name}: {bound.mib_per_s:.0f} MiB/s, "
                    f"{bound.cores:.2f} cores busy, "
                    f"{bound.cpu_seconds / gib:.2f} CPU-s/GiB"
                )
        rows = (
            (
                "engine-trusting-vs-hashing-bound",
                trusting,
                False,
                "seal engine without the plaintext check",
                "the passes the format needs",
            ),
            (
                "engine-vs-hashing-bound",
                run,
                False,
                "seal engine",
                "with the plaintext check, which the bound leaves out",
            ),
            (
                "engine-vs-own-work",
                run,
                True,
                "seal engine",
                "the four passes the engine makes",
            ),
        )
        for key, measured_run, plaintext_hash, who, remark in rows:
            name, best = max(
                bounds[plaintext_hash].items(), key=lambda item: item[1].mib_per_s
            )
            what = "AES + HMAC + sha256" + (
                " + plaintext sha256" if plaintext_hash else ""
            )
            self.rows.append(
                compare(
                    key,
                    f"{who}, {size}, file store",
                    Quantity(measured_run.mib_per_s, "MiB/s"),
                    f"{what} in memory, best arrangement ({name})",
                    Quantity(best.mib_per_s, "MiB/s"),
                    target=(">=", 0.8) if not plaintext_hash else None,
                    note=f"{remark}; cores busy {measured_run.cores:.2f} vs "
                    f"{best.cores:.2f}",
                )
            )

        moto_layer = self.layers[plan.moto_bytes]
        moto_run, moto_requests = engine.engine_on_moto_server(
            moto_layer, self.workdir / "moto", self.settings
        )
        self.note(f"seal through moto's server made S3 requests {moto_requests}")
        self.rows.append(
            compare(
                "engine-moto-server",
                f"seal engine, {_size(plan.moto_bytes)}, boto3 → moto server "
                "(loopback HTTP)",
                Quantity(moto_run.mib_per_s, "MiB/s"),
                "the same engine on the file store",
                value,
                note="moto reads the whole object for every ranged GET",
            )
        )

    # -- 2. skopeo -----------------------------------------------------------

    def skopeo(self) -> None:
        plan, layer = self.plan, self.layers[self.plan.engine_bytes]
        base = self.workdir / "skopeo"
        keys = skopeo.write_keys(base / "keys")
        source = skopeo.write_layout(base / "src", [layer])
        encrypted = base / "dst"
        plain = skopeo.plain_copy(source, base / "plain", layer.size, 1)
        shutil.rmtree(base / "plain", ignore_errors=True)
        # skopeo and the engine take turns, as in the engine section.
        encrypt: engine.Run | None = None
        ours_encrypt: engine.Run | None = None
        ours_trusting: engine.Run | None = None
        for _ in range(plan.repeat):
            encrypt = engine.faster(
                encrypt, skopeo.skopeo_encrypt(source, encrypted, keys, layer.size, 1)
            )
            ours_encrypt = self._engine_once(ours_encrypt)
            ours_trusting = self._engine_once(ours_trusting, self.trusting)
        assert encrypt is not None
        assert ours_encrypt is not None
        assert ours_trusting is not None
        self.note(
            f"skopeo copy without crypto: {plain.mib_per_s:.0f} MiB/s; with "
            f"--encryption-key: {encrypt.mib_per_s:.0f} MiB/s, "
            f"{encrypt.cores:.2f} cores busy, "
            f"{encrypt.cpu_seconds / (layer.size / GiB):.2f} CPU-s/GiB"
        )
        size = _size(plan.engine_bytes)
        gib = layer.size / GiB
        for suffix, ours, who in (
            ("", ours_encrypt, "seal engine"),
            ("-trusting", ours_trusting, "seal engine without the plaintext check"),
        ):
            self.rows.append(
                compare(
                    f"engine{suffix}-vs-skopeo-encrypt",
                    f"{who}, {size}, file store",
                    Quantity(ours.mib_per_s, "MiB/s"),
                    "skopeo copy --encryption-key jwe:pub.pem, oci → oci",
                    Quantity(encrypt.mib_per_s, "MiB/s"),
                    target=(">=", 3.0),
                    note=f"cores busy {ours.cores:.2f} vs {encrypt.cores:.2f}",
                )
            )
            self.rows.append(
                compare(
                    f"engine{suffix}-vs-skopeo-encrypt-cpu",
                    f"CPU per GiB sealed, {who}, {size}",
                    Quantity(ours.cpu_seconds / gib, "CPU-s/GiB"),
                    "CPU per GiB, skopeo copy --encryption-key",
                    Quantity(encrypt.cpu_seconds / gib, "CPU-s/GiB"),
                    target=("<=", 1 / 3),
                    note="lower is better; does not depend on the machine's load",
                )
            )

        decrypted = base / "dec"
        theirs: engine.Run | None = None
        ours_decrypt: engine.Run | None = None
        for _ in range(plan.repeat):
            theirs = engine.faster(
                theirs, skopeo.skopeo_decrypt(encrypted, decrypted, keys, layer.size, 1)
            )
            shutil.rmtree(decrypted, ignore_errors=True)
            ours_decrypt = engine.faster(
                ours_decrypt,
                skopeo.regseal_decrypt(encrypted, keys, base / "plain.out", 1),
            )
        assert theirs is not None
        assert ours_decrypt is not None
        self.rows.append(
            compare(
                "decrypt-vs-skopeo",
                f"decrypt_layer of skopeo's {size} layer (authenticates, then "
                "releases), to a file",
                Quantity(ours_decrypt.mib_per_s, "MiB/s"),
                "skopeo copy --decryption-key, oci → oci",
                Quantity(theirs.mib_per_s, "MiB/s"),
                note="two passes over the blob, one thread; cores busy "
                f"{ours_decrypt.cores:.2f} vs {theirs.cores:.2f}",
            )
        )
        self.rows.append(
            compare(
                "decrypt-vs-skopeo-cpu",
                f"CPU per GiB, decrypt_layer, {size}",
                Quantity(ours_decrypt.cpu_seconds / gib, "CPU-s/GiB"),
                "CPU per GiB, skopeo copy --decryption-key",
                Quantity(theirs.cpu_seconds / gib, "CPU-s/GiB"),
                note="lower is better",
            )
        )
        self._decrypt_layers(base, keys)
        shutil.rmtree(base, ignore_errors=True)

    def _decrypt_layers(self, base: Path, keys: KeyFiles) -> None:
        """``regseal decrypt`` of a many-layer image, with and without the
        key cache: the JWE unwrap per layer is what the cache saves."""
        layers = self.decrypt_image
        source = skopeo.write_layout(base / "image-src", layers)
        encrypted = base / "image-enc"
        total = sum(layer.size for layer in layers)
        skopeo.skopeo_encrypt(source, encrypted, keys, total, 1)
        cold: engine.Run | None = None
        cached: engine.Run | None = None
        output = base / "image-dec"
        try:
            for _ in range(self.plan.repeat):
                jwe.set_key_cache_size(0)
                cold = engine.faster(
                    cold, skopeo.regseal_decrypt_image(encrypted, keys, output, total)
                )
                jwe.set_key_cache_size(jwe.KEY_CACHE_SIZE)
                cached = engine.faster(
                    cached, skopeo.regseal_decrypt_image(encrypted, keys, output, total)
                )
        finally:
            jwe.set_key_cache_size(jwe.KEY_CACHE_SIZE)
        assert cold is not None
        assert cached is not None
        n = len(layers)
        self.note(
            f"regseal decrypt of {n} layers ({total / MiB:.1f} MiB in all, JWE "
            "RSA-2048): "
            f"{cached.seconds * 1000:.0f} ms with the key cache, "
            f"{cold.seconds * 1000:.0f} ms with the key rebuilt for every layer "
            f"({(cold.seconds - cached.seconds) / n * 1000:.0f} ms per layer)"
        )
        self.rows.append(
            compare(
                "decrypt-layers-key-cache",
                f"regseal decrypt of an image of {n} layers, JWE RSA-2048 key "
                "(loaded once, cached)",
                Quantity(cached.seconds, "s"),
                "the same with the key rebuilt for every layer (the cache off)",
                Quantity(cold.seconds, "s"),
                note=f"oci → oci, {total / MiB:.1f} MiB in all; lower is better",
            )
        )

    # -- 3. memory -----------------------------------------------------------

    def memory(self) -> None:
        plan = self.plan
        settings = plan.memory_settings
        peaks = {}
        for size in (plan.memory_small, plan.memory_large):
            layer = self.memory_layers[size]
            root = self.scratch / f"memory-{size}"
            peaks[size] = memory.peak_rss(
                layer, root, settings.part_size, settings.workers
            )
            shutil.rmtree(root, ignore_errors=True)
            self.note(
                f"seal of {_size(size)} in a fresh process: "
                f"{peaks[size].before / MiB:.0f} MiB resident before, "
                f"{peaks[size].peak / MiB:.0f} MiB peak; the engine's bound is "
                f"{settings.memory_bound(size) / MiB:.0f} MiB of parts"
            )
        small, large = peaks[plan.memory_small], peaks[plan.memory_large]
        self.rows.append(
            compare(
                "memory-large-vs-small",
                f"peak RSS, seal of {_size(plan.memory_large)}",
                Quantity(large.peak / MiB, "MiB"),
                f"peak RSS, seal of {_size(plan.memory_small)}",
                Quantity(small.peak / MiB, "MiB"),
                target=("<=", 1.2),
                note=f"part {_size(settings.part_size)}, {settings.workers} "
                "workers, fresh processes",
            )
        )

    # -- 4. requests ---------------------------------------------------------

    def requests(self) -> None:
        costs = requests.image_costs(self.plan.image_layers)
        n = costs.layers
        first, again = costs.first, costs.repush
        sizes = ", ".join(f"{s / MiB:.2f} MiB" for s in costs.layer_sizes)
        self.note(
            f"image of {n} layers ({sizes}), part 5 MiB: S3 {first.s3}; KMS {first.kms}"
        )
        self.note(
            f"re-push with the last layer changed: S3 {again.s3}; KMS {again.kms}"
        )
        self.rows.append(
            count(
                "s3-requests-per-image",
                f"S3 requests to seal an image of {n} layers",
                Quantity(first.s3_total, "requests"),
                "layers in the image",
                per=n,
                note="ratio: requests per layer; breakdown below",
            )
        )
        self.rows.append(
            count(
                "kms-calls-per-layer",
                f"KMS calls to seal an image of {n} layers",
                Quantity(first.kms_total, "calls"),
                "layers in the image",
                per=n,
                target=("<=", 1.0),
            )
        )
        self.rows.append(
            compare(
                "repush-s3-requests",
                f"S3 requests to seal a re-push, 1 of {n} layers changed",
                Quantity(again.s3_total, "requests"),
                "S3 requests of the first seal",
                Quantity(first.s3_total, "requests"),
            )
        )
        self.rows.append(
            count(
                "repush-kms-calls",
                f"KMS calls to seal a re-push, 1 of {n} layers changed",
                Quantity(again.kms_total, "calls"),
                "changed layers",
                per=1,
                target=("<=", 1.0),
            )
        )
        self.rows.append(
            compare(
                "repush-crypto-bytes",
                "bytes through the cipher on the re-push "
                f"({again.crypto.layers} layer{'' if again.crypto.layers == 1 else 's'}"
                " encrypted)",
                Quantity(again.crypto.bytes, "bytes"),
                "bytes of the changed layer",
                Quantity(costs.changed_bytes, "bytes"),
                target=("<=", 1.0),
                note=f"{again.result.layers_reused} layers reused from records",
            )
        )

    # -- 5. latency ----------------------------------------------------------

    def latency(self) -> None:
        result = latency.push_to_sealed(
            self.workdir / "stack", self.plan.latency_big_layer, timeout=600
        )
        shutil.rmtree(self.workdir / "stack", ignore_errors=True)
        self.rows.append(
            compare(
                "push-to-sealed",
                f"push start to sealed tag, {result.image_bytes / MiB:.0f} MiB image, "
                "local stack",
                Quantity(result.sealed_seconds, "s"),
                "the plain skopeo push itself",
                Quantity(result.push_seconds, "s"),
                note=f"sealed {result.sealed_seconds - result.push_seconds:.2f} s "
                "after the push returned",
            )
        )

    # -- 6. coldstart --------------------------------------------------------

    def coldstart(self) -> None:
        repeat = self.plan.coldstart_repeat
        bare = coldstart.import_seconds(None, repeat)
        for name, path in coldstart.handlers().items():
            seconds = coldstart.import_seconds(path, repeat)
            self.rows.append(
                compare(
                    f"coldstart-{name}",
                    f"import functions/{name}/app.py, fresh interpreter",
                    Quantity(seconds * 1000, "ms"),
                    "import boto3, aws_lambda_powertools",
                    Quantity(bare * 1000, "ms"),
                    note=f"median of {repeat}",
                )
            )
            source_only = coldstart.import_seconds(path, repeat, compiled=False)
            self.rows.append(
                compare(
                    f"coldstart-{name}-no-pyc",
                    f"import functions/{name}/app.py without .pyc files",
                    Quantity(source_only * 1000, "ms"),
                    "the same import with .pyc files",
                    Quantity(seconds * 1000, "ms"),
                    note="a layer built with --no-compile on read-only /opt",
                )
            )


def _memory_backed() -> str | None:
    """A tmpfs directory for the file store's objects, if the machine has one.

    Written parts then cost what handing them to a socket costs (a copy into
    kernel memory), not a disk file system's block allocation and writeback.
    """
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _context(plan: Plan, quick: bool) -> dict[str, object]:
    try:
        skopeo_version = subprocess.run(
            [skopeo.SKOPEO, "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        skopeo_version = "not found"
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "cpu": f"{model}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "cryptography": (
            f"{cryptography.__version__} ({backend.openssl_version_text()})"
        ),
        "skopeo": skopeo_version,
        "load_average_start": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="regseal's benchmarks, side by side with their references.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one repetition (smoke test)"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where data and scratch files go (default: a new temporary directory)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory and its data"
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if arguments.verbose else logging.WARNING,
        format="%(asctime)s %(message)s",
        stream=sys.stderr,
    )
    sections = [s for s in arguments.only.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; expected some of {list(SECTIONS)}")

    plan = QUICK if arguments.quick else FULL
    context = _context(plan, arguments.quick)
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="regseal-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="regseal-bench-", dir=_memory_backed()))
    context["file_store"] = str(scratch)
    try:
        bench = Bench(plan, workdir, scratch, sections)
        for section in SECTIONS:
            if section in sections:
                logger.info("section %s", section)
                run: Callable[[], None] = getattr(bench, section)
                run()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not arguments.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    context["load_average_end"] = os.getloadavg()[0]

    print("# regseal benchmarks")
    print()
    for key, value in context.items():
        print(f"- {key}: {value}")
    print()
    print(markdown(bench.rows))
    print()
    print("Details:")
    print()
    for line in bench.details:
        print(f"- {line}")
    if arguments.json is not None:
        arguments.json.write_text(dump(bench.rows, context))
    return 0
