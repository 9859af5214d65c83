"""Benchmark the TUF repository: target updates, refreshes and the client.

For each size (default 10,000 and 100,000 targets in one team) it builds a
repository in moto's in-process S3, then measures:

- split: the update that takes a team role over its bin threshold (2048) and
  splits it into 256 hash bins;
- update: one ``add_target`` by a warm writer (a warm Lambda), and by a cold
  one (new process state: it re-reads root, timestamp and snapshot);
- publish: the TUF function's refresh after that update (hinted, and a full
  scheduled run);
- client: a fresh ngclient refresh + lookup, and a returning client's refresh
  after one more update;
- flat (``--flat``): the same update if the team role were never split.

Time is wall clock on this machine; bytes are what crossed the S3 API.

NOTE: online keys here are local ECDSA P-256 key files (``file2:`` URIs), not
KMS: moto's KMS signatures only verify with the test-only DIGEST fix in
tests/support, and a real KMS ``Sign`` adds a network round trip (about
5-20 ms) per signed file. Needs the dev dependencies (moto).

Usage: ``python -m regseal.tuf.bench [--sizes 10000 100000] [--flat]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from regseal.tuf import admin
from regseal.tuf.fetcher import S3Fetcher
from regseal.tuf.publish import Publisher
from regseal.tuf.settings import TufSettings
from regseal.tuf.signers import generate_key_file, load_signer
from regseal.tuf.store import MetadataLocation, MetadataStore
from regseal.tuf.targets import TargetCustom, TargetRecord
from regseal.tuf.updates import TargetsWriter

T = TypeVar("T")
BUCKET = "regseal-bench"
TEAM = "bench"
CUSTOM = TargetCustom(
    media_type="application/vnd.oci.image.manifest.v1+json",
    plaintext_digest="sha256:" + "ab" * 32,
    platforms=("linux/amd64",),
    kms_key="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    recipients=("jwe:team-recipient",),
)


@dataclass(frozen=True)
class Measure:
    """One measured operation."""

    name: str
    seconds: float
    requests: int
    bytes_read: int
    bytes_written: int
    note: str = ""


def _manifest(n: int) -> bytes:
    return (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"digest":"sha256:' + f"{n:064x}".encode() + b'"}}'
    )


def _record(n: int) -> TargetRecord:
    repository = f"{TEAM}/service-{n % 500:03d}/component"
    return TargetRecord.for_manifest(
        repository, f"1.{n}.0-build{n}", _manifest(n), CUSTOM
    )


def _timed(
    name: str, store: MetadataStore, action: Callable[[], T], note: str = ""
) -> tuple[T, Measure]:
    store.reset_stats()
    start = time.perf_counter()
    value = action()
    seconds = time.perf_counter() - start
    stats = store.stats()
    return value, Measure(
        name,
        seconds,
        sum(stats.requests.values()),
        stats.bytes_read,
        stats.bytes_written,
        note,
    )


@contextmanager
def _aws() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def _repository(
    s3: Any, keys: Path, prefix: str, bin_threshold: int
) -> tuple[MetadataStore, TufSettings, str]:
    location = MetadataLocation(BUCKET, prefix)
    store = MetadataStore(s3, location)
    settings = TufSettings(location=location)
    files = {}
    for name, algorithm in (
        ("root", "ed25519"),
        ("targets", "ed25519"),
        ("snapshot", "ecdsa"),
        ("timestamp", "ecdsa"),
        ("team", "ecdsa"),
    ):
        path = keys / f"{prefix.strip('/')}-{name}.pem"
        generate_key_file(path, algorithm)
        files[name] = str(path)
    admin.init_repository(
        store,
        settings,
        root_signers=[load_signer(files["root"])],
        targets_signers=[load_signer(files["targets"])],
        snapshot_key=f"file2:{files['snapshot']}",
        timestamp_key=f"file2:{files['timestamp']}",
    )
    admin.add_team(
        store,
        settings,
        TEAM,
        f"file2:{files['team']}",
        [f"{TEAM}/**"],
        targets_signers=[load_signer(files["targets"])],
        bin_threshold=bin_threshold,
    )
    root = store.get("1.root.json").data
    return store, settings, root.decode()


def _client(store: MetadataStore, root: str, cache: Path, path: str) -> tuple[int, int]:
    from tuf.ngclient import Updater

    fetcher = S3Fetcher(store.client)
    updater = Updater(
        metadata_dir=str(cache),
        metadata_base_url=store.location.url,
        fetcher=fetcher,
        bootstrap=root.encode(),
    )
    if updater.get_targetinfo(path) is None:
        raise SystemExit(f"bench: the client did not find {path}")
    return fetcher.requests, fetcher.bytes_fetched


def run_size(s3: Any, keys: Path, size: int, flat: bool = False) -> list[Measure]:
    """Measure one repository of ``size`` targets (see the module docstring)."""
    label = f"{size:,}" + (" flat" if flat else "")
    prefix = f"tuf-{size}{'-flat' if flat else ''}/"
    store, settings, root = _repository(
        s3, keys, prefix, bin_threshold=size * 2 if flat else 2048
    )
    writer = TargetsWriter(store)
    publisher = Publisher(store, settings)
    results = []

    if not flat:
        first = [_record(n) for n in range(2048)]
        writer.add_targets(TEAM, first)
        _, split = _timed(
            f"{label}: split 2048 -> 256 bins",
            store,
            lambda: writer.add_target(
                TEAM, *_path_parts(2048), _manifest(2048), CUSTOM
            ),
        )
        results.append(split)
        rest = [_record(n) for n in range(2049, size)]
        for first_index in range(0, len(rest), 20000):
            writer.add_targets(TEAM, rest[first_index : first_index + 20000])
    else:
        writer.add_targets(TEAM, [_record(n) for n in range(size)])
    publisher.refresh_snapshot_and_timestamp()

    update, measure = _timed(
        f"{label}: add_target (warm writer)",
        store,
        lambda: writer.add_target(TEAM, *_path_parts(size), _manifest(size), CUSTOM),
    )
    results.append(measure)
    cold_store = MetadataStore(s3, store.location)
    _, measure = _timed(
        f"{label}: add_target (cold writer)",
        cold_store,
        lambda: TargetsWriter(cold_store).add_target(
            TEAM, *_path_parts(size + 1), _manifest(size + 1), CUSTOM
        ),
    )
    results.append(measure)

    hints = {update.role: update.version}
    _, measure = _timed(
        f"{label}: refresh (hinted)",
        store,
        lambda: publisher.refresh_snapshot_and_timestamp(hints=hints),
    )
    results.append(measure)
    cold_publisher = Publisher(MetadataStore(s3, store.location), settings)
    _, measure = _timed(
        f"{label}: refresh (scheduled, cold)",
        cold_publisher.store,
        lambda: cold_publisher.refresh_snapshot_and_timestamp(force=True),
    )
    results.append(measure)

    with tempfile.TemporaryDirectory() as cache:
        path = f"{_path_parts(size)[0]}/tags/{_path_parts(size)[1]}"
        start = time.perf_counter()
        requests, fetched = _client(store, root, Path(cache), path)
        results.append(
            Measure(
                f"{label}: client refresh + lookup (fresh)",
                time.perf_counter() - start,
                requests,
                fetched,
                0,
            )
        )
        writer.add_target(TEAM, *_path_parts(size + 2), _manifest(size + 2), CUSTOM)
        publisher.refresh_snapshot_and_timestamp()
        start = time.perf_counter()
        requests, fetched = _client(store, root, Path(cache), path)
        results.append(
            Measure(
                f"{label}: client refresh + lookup (returning)",
                time.perf_counter() - start,
                requests,
                fetched,
                0,
            )
        )
    return results


def _path_parts(n: int) -> tuple[str, str]:
    record = _record(n)
    return record.repository, record.tag


def _print(results: Sequence[Measure]) -> None:
    print(f"{'operation':52} {'time':>9} {'S3 req':>7} {'read':>11} {'written':>11}")
    for m in results:
        print(
            f"{m.name:52} {m.seconds * 1000:7.0f}ms {m.requests:7d} "
            f"{m.bytes_read:11,d} {m.bytes_written:11,d}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(prog="python -m regseal.tuf.bench")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--flat", action="store_true", help="also measure unsplit team roles"
    )
    args = parser.parse_args(argv)
    results: list[Measure] = []
    with tempfile.TemporaryDirectory() as keys, _aws() as s3:
        for size in args.sizes:
            results.extend(run_size(s3, Path(keys), size))
            if args.flat:
                results.extend(run_size(s3, Path(keys), size, flat=True))
    _print(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
