"""``regseal seal`` (backfill), ``regseal rewrap`` and ``regseal status``.

Both act on the bucket named by ``--bucket`` or ``REGSEAL_BUCKET`` and take
the rest of their settings from the same environment as the seal function
(``REGSEAL_REGISTRY_ROOT``, ``REGSEAL_STATE_PREFIX``, ``REGSEAL_POLICY``).
"""

from __future__ import annotations

import argparse
import json
import sys

from regseal import backfill, jwe, status
from regseal.cliargs import (
    add_bucket_options,
    bucket_settings,
    readable_file,
    writable_file,
)
from regseal.errors import RegsealError
from regseal.inventory import Selection, require_match, scan
from regseal.layerkeys import LayerKeys
from regseal.progress import ProgressBar
from regseal.rewrap import Rewrapper
from regseal.seal import Sealer
from regseal.wiring import build_sealer


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``seal`` and ``status`` commands."""
    seal = commands.add_parser(
        "seal",
        help="seal existing images (backfill)",
        description=(
            "Seal every tag and untagged manifest of the selected repositories "
            "that is still plaintext, as the seal function would. The bucket is "
            "listed once; progress goes to a checkpoint file so that an "
            "interrupted run can be resumed."
        ),
    )
    seal.add_argument(
        "selection",
        nargs="?",
        metavar="REPO[:TAG]",
        help="a repository, REPO:TAG, or a glob such as 'team-a/*'",
    )
    seal.add_argument("--all", action="store_true", help="the whole bucket")
    seal.add_argument("--dry-run", action="store_true", help="report, write nothing")
    seal.add_argument(
        "--checkpoint",
        type=writable_file,
        help="JSON-lines progress file; an existing one resumes the run",
    )
    seal.add_argument("--json", action="store_true", help="print the summary as JSON")
    seal.add_argument(
        "--rekey",
        action="store_true",
        help="re-encrypt already sealed images with fresh layer keys (the remedy "
        "after removing a recipient); opens the old keys with KMS or --key",
    )
    seal.add_argument(
        "--key",
        type=readable_file,
        action="append",
        default=[],
        help="with --rekey: a JWE private key (PEM) to open layer keys with",
    )
    add_bucket_options(seal)
    seal.set_defaults(run=run_seal)

    rewrap = commands.add_parser(
        "rewrap",
        help="re-wrap sealed images for the policy's current keys",
        description=(
            "Re-wrap the layer keys of sealed images whose team's recipients or "
            "KMS key changed in the policy. Layer blobs are not touched; the tag "
            "moves to a manifest with new key annotations and the old sealed "
            "manifest is unlinked. Opening the old keys needs KMS Decrypt on the "
            "old key (the caller's AWS credentials) or a JWE private key (--key). "
            "A recipient that already read a layer key keeps it: re-seal with "
            "fresh keys to cut it off."
        ),
    )
    rewrap.add_argument("selection", nargs="?", metavar="REPO[:TAG]")
    rewrap.add_argument("--all", action="store_true", help="the whole bucket")
    rewrap.add_argument(
        "--key",
        type=readable_file,
        action="append",
        default=[],
        help="JWE private key (PEM) to open layer keys with; repeatable",
    )
    rewrap.add_argument(
        "--no-kms", action="store_true", help="do not try KMS Decrypt, only --key"
    )
    rewrap.add_argument("--force", action="store_true", help="even if current")
    rewrap.add_argument("--dry-run", action="store_true", help="report, write nothing")
    add_bucket_options(rewrap)
    rewrap.set_defaults(run=run_rewrap)

    show = commands.add_parser(
        "status",
        help="show which tags are sealed, for whom",
        description="Per tag: sealed or plaintext, keys, policy version, "
        "and whether the plaintext is still reachable.",
    )
    show.add_argument("selection", nargs="?", metavar="REPO[:TAG]")
    show.add_argument("--json", action="store_true", help="JSON lines, one per tag")
    add_bucket_options(show)
    show.set_defaults(run=run_status)


def _sealer(args: argparse.Namespace) -> Sealer:
    return build_sealer(bucket_settings(args))


def run_seal(args: argparse.Namespace) -> int:
    if not args.selection and not args.all:
        print("regseal seal: give REPO[:TAG], a glob, or --all", file=sys.stderr)
        return 2
    if args.rekey:
        return _rewrap_all(args, rekey=True)
    selection = Selection.parse(args.selection)
    sealer = _sealer(args)
    inventories = scan(sealer.store, sealer.layout, selection)
    require_match(args.selection, inventories, tags_only=False)
    checkpoint = backfill.Checkpoint(args.checkpoint) if args.checkpoint else None
    bar = ProgressBar("sealing")

    def progress(done: int, total: int, summary: backfill.Summary) -> None:
        counts = " ".join(f"{k}={v}" for k, v in sorted(summary.outcomes.items()))
        bar.update(done, total, counts)

    try:
        summary = backfill.run(
            sealer,
            inventories,
            dry_run=args.dry_run,
            checkpoint=checkpoint,
            progress=progress,
        )
    except KeyboardInterrupt:
        bar.close()
        print(
            "regseal seal: interrupted; run again with the same --checkpoint to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        if checkpoint is not None:
            checkpoint.close()
    bar.close()
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        _print_summary(summary, args.dry_run)
    return 1 if summary.failed else 0


def _print_summary(summary: backfill.Summary, dry_run: bool) -> None:
    title = "dry run: nothing written" if dry_run else "done"
    print(f"{title}: {summary.total} items, {summary.resumed} already done")
    for outcome, count in sorted(summary.outcomes.items()):
        print(f"  {outcome:<10} {count}")
    for reason, count in summary.skipped.most_common():
        print(f"    skipped: {reason} ({count})")
    for key, reason in summary.failed:
        print(f"  failed: {key}: {reason}")


def run_rewrap(args: argparse.Namespace) -> int:
    if not args.selection and not args.all:
        print("regseal rewrap: give REPO[:TAG], a glob, or --all", file=sys.stderr)
        return 2
    return _rewrap_all(args, rekey=False)


def _rewrap_all(args: argparse.Namespace, *, rekey: bool) -> int:
    selection = Selection.parse(args.selection)
    sealer = _sealer(args)
    private_keys = [
        jwe.load_private_key(path.read_bytes(), source=str(path)) for path in args.key
    ]
    kms = None if getattr(args, "no_kms", False) else (lambda _region: sealer.kms)
    keys = LayerKeys(private_keys, kms)
    required = LayerKeys(private_keys, None) if private_keys else None
    rewrapper = Rewrapper(sealer, keys, rekey=rekey, required_keys=required)
    inventories = scan(sealer.store, sealer.layout, selection)
    require_match(args.selection, inventories, tags_only=True)
    failed = 0
    for inventory in inventories:
        for tag in sorted(inventory.tags):
            name = f"{inventory.name}:{tag}"
            try:
                result = rewrapper.rewrap_tag(
                    inventory.name,
                    tag,
                    force=getattr(args, "force", False),
                    dry_run=args.dry_run,
                )
            except RegsealError as exc:
                failed += 1
                print(f"{name}: failed: {exc}")
                continue
            print(f"{name}: {result.outcome.value}: {result.reason}")
    return 1 if failed else 0


def run_status(args: argparse.Namespace) -> int:
    selection = Selection.parse(args.selection)
    sealer = _sealer(args)
    policy = sealer.policies.get()
    inventories = scan(sealer.store, sealer.layout, selection)
    rows = status.statuses(sealer, inventories, policy)
    if not rows and args.selection:
        print(f"regseal status: no tag matches {args.selection!r}", file=sys.stderr)
        return 1
    if args.json:
        for row in rows:
            print(json.dumps(row.to_json()))
        return 0
    print(f"{'TAG':<48} {'STATE':<10} {'TEAM':<12} {'CURRENT':<8} PLAINTEXT")
    for row in rows:
        if row.state in (status.State.BROKEN.value, status.State.REFUSED.value):
            # Why, instead of a row of dashes.
            print(f"{row.repository + ':' + row.tag:<48} {row.state}: {row.detail}")
            continue
        reachable = {True: "reachable", False: "hidden", None: "-"}[
            row.plaintext_reachable
        ]
        if row.state in (status.State.NOT_IMAGE.value, status.State.NO_LAYERS.value):
            reachable = row.detail or reachable  # what it is, not a dash
        current = {True: "yes", False: "no", None: "-"}[row.current]
        print(
            f"{row.repository + ':' + row.tag:<48} {row.state:<10} "
            f"{row.team or '-':<12} {current:<8} {reachable}"
        )
    return 0
