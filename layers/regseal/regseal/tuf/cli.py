"""``regseal tuf ...`` and ``regseal verify``: the operators' TUF commands.

:func:`add_parser` registers the commands on the main CLI's subparsers; each
sets ``run`` to a function taking the parsed arguments and returning the exit
status (0 success, 1 failure with the reason on stderr).

Commands::

    regseal tuf init --root-key K [--root-key K ...] [--root-threshold N]
                     --targets-key K [...] [--targets-threshold N]
                     --snapshot-key awskms:... --timestamp-key awskms:...
                     [--out root.json]
    regseal tuf add-team TEAM --key awskms:... --repositories GLOB [GLOB ...]
                     --targets-key K [...] [--expiry-days D]
                     [--bin-threshold N] [--bin-bits B]
    regseal tuf rotate ROLE --new-key K [...] [--root-key K ...]
                     [--targets-key K ...] [--threshold N]
    regseal tuf refresh [--force]
    regseal tuf keygen PATH [--algorithm ed25519|ecdsa]
    regseal verify HOST/REPO:TAG --root root.json --metadata URL [--insecure]

``K`` is a key file (PEM PKCS#8, or ``file2:PATH``) or an ``awskms:`` URI. ROLE
is ``root``, ``targets``, ``snapshot``, ``timestamp`` or a team name. Every
command takes ``--metadata s3://bucket/prefix/`` (default: ``REGSEAL_TUF_BUCKET``
or ``REGSEAL_BUCKET`` with ``REGSEAL_TUF_PREFIX``, default ``tuf/``). Commands
that change metadata then refresh snapshot and timestamp with the online keys
recorded in root (``--no-refresh`` leaves that to the TUF function).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from regseal import verify as verify_command
from regseal.cliargs import writable_file
from regseal.errors import RegsealError, TufError
from regseal.tuf import admin
from regseal.tuf.publish import Publisher, RefreshResult
from regseal.tuf.settings import TufSettings
from regseal.tuf.signers import generate_key_file, load_signer
from regseal.tuf.store import DEFAULT_PREFIX, MetadataLocation, MetadataStore

Command = Callable[[argparse.Namespace], int]


def add_parser(subparsers: Any) -> None:
    """Register ``tuf`` (with its subcommands) and ``verify``."""
    tuf = subparsers.add_parser("tuf", help="manage regseal's TUF repository")
    commands = tuf.add_subparsers(dest="tuf_command", metavar="COMMAND")
    commands.required = True

    init = _command(commands, "init", "create root, targets, snapshot, timestamp")
    init.add_argument("--root-key", action="append", required=True, metavar="KEY")
    init.add_argument("--root-threshold", type=int, default=1)
    init.add_argument("--targets-key", action="append", required=True, metavar="KEY")
    init.add_argument("--targets-threshold", type=int, default=1)
    init.add_argument("--snapshot-key", required=True, metavar="AWSKMS_URI")
    init.add_argument("--timestamp-key", required=True, metavar="AWSKMS_URI")
    init.add_argument(
        "--out", type=writable_file, help="also write the trusted root here"
    )
    _expiry_options(init)
    init.set_defaults(run=_guarded("init", cmd_init))

    team = _command(commands, "add-team", "delegate repositories to a team role")
    team.add_argument("team")
    team.add_argument("--key", required=True, metavar="AWSKMS_URI")
    team.add_argument("--repositories", nargs="+", required=True, metavar="GLOB")
    team.add_argument("--targets-key", action="append", required=True, metavar="KEY")
    team.add_argument("--expiry-days", type=int, help="team role lifetime (90)")
    team.add_argument("--bin-threshold", type=int, help="split above N targets")
    team.add_argument("--bin-bits", type=int, help="2**B hash bins when split")
    _expiry_options(team)
    _refresh_option(team)
    team.set_defaults(run=_guarded("add-team", cmd_add_team))

    rotate = _command(commands, "rotate", "replace the keys of a role")
    rotate.add_argument("role", help="root, targets, snapshot, timestamp or a team")
    rotate.add_argument("--new-key", action="append", required=True, metavar="KEY")
    rotate.add_argument("--root-key", action="append", default=[], metavar="KEY")
    rotate.add_argument("--targets-key", action="append", default=[], metavar="KEY")
    rotate.add_argument("--threshold", type=int, default=1)
    rotate.add_argument("--out", type=writable_file, help="write the newest root here")
    _expiry_options(rotate)
    _refresh_option(rotate)
    rotate.set_defaults(run=_guarded("rotate", cmd_rotate))

    refresh = _command(commands, "refresh", "write snapshot and timestamp now")
    refresh.add_argument("--force", action="store_true")
    refresh.set_defaults(run=_guarded("refresh", cmd_refresh))

    keygen = commands.add_parser("keygen", help="write a new offline key file")
    keygen.add_argument("path", type=writable_file)
    keygen.add_argument("--algorithm", choices=("ed25519", "ecdsa"), default="ed25519")
    keygen.set_defaults(run=_guarded("keygen", cmd_keygen))

    verify_command.add_parser(subparsers)


def _command(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    parser.add_argument(
        "--metadata",
        metavar="S3_URL",
        help="s3://bucket/prefix/ of the metadata (default from REGSEAL_TUF_BUCKET "
        "or REGSEAL_BUCKET, and REGSEAL_TUF_PREFIX)",
    )
    return parser


def _expiry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root-expiry-days", type=int, default=365)
    parser.add_argument("--targets-expiry-days", type=int, default=365)


def _refresh_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-refresh",
        dest="refresh",
        action="store_false",
        help="do not write snapshot and timestamp (the TUF function will)",
    )


def _guarded(name: str, command: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except RegsealError as exc:
            print(f"regseal tuf {name}: {exc}", file=sys.stderr)
            return 1

    return run


# -- helpers ------------------------------------------------------------------


def location_from(args: argparse.Namespace) -> MetadataLocation:
    """The metadata location from ``--metadata`` or the environment."""
    if getattr(args, "metadata", None):
        return MetadataLocation.parse(args.metadata)
    bucket = os.environ.get("REGSEAL_TUF_BUCKET") or os.environ.get("REGSEAL_BUCKET")
    if not bucket:
        raise TufError(
            "no metadata location: give --metadata s3://bucket/prefix/ or set "
            "REGSEAL_TUF_BUCKET"
        )
    return MetadataLocation(
        bucket, os.environ.get("REGSEAL_TUF_PREFIX", DEFAULT_PREFIX)
    )


def settings_from(args: argparse.Namespace) -> TufSettings:
    """Settings from the environment, with the command's expiry options."""
    location = location_from(args)
    env = dict(os.environ)
    env["REGSEAL_TUF_BUCKET"] = location.bucket
    env["REGSEAL_TUF_PREFIX"] = location.prefix
    settings = TufSettings.from_env(env)
    changes: dict[str, Any] = {}
    if getattr(args, "root_expiry_days", None):
        changes["root_expiry"] = timedelta(days=args.root_expiry_days)
    if getattr(args, "targets_expiry_days", None):
        changes["targets_expiry"] = timedelta(days=args.targets_expiry_days)
    return replace(settings, **changes)


def _signers(references: Sequence[str]) -> list[Any]:
    return [load_signer(reference) for reference in references]


def _store(settings: TufSettings) -> MetadataStore:
    return MetadataStore.connect(settings.location)


def _refresh(store: MetadataStore, settings: TufSettings, force: bool) -> RefreshResult:
    # Online keys as recorded in root: a rotation just changed them.
    online = replace(settings, snapshot_key=None, timestamp_key=None)
    result = Publisher(store, online).refresh_snapshot_and_timestamp(force=force)
    print(f"snapshot v{result.snapshot_version}, timestamp v{result.timestamp_version}")
    for role, reason in result.held_back.items():
        print(f"held back {role}: {reason}", file=sys.stderr)
    return result


def _report(result: admin.AdminResult, out: Path | None) -> None:
    for role, version in sorted(result.written.items()):
        print(f"wrote {version}.{role}.json")
    if out is not None:
        out.write_bytes(result.root)
        print(f"trusted root written to {out}")


# -- commands -----------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    """``regseal tuf init``."""
    settings = settings_from(args)
    result = admin.init_repository(
        _store(settings),
        settings,
        root_signers=_signers(args.root_key),
        targets_signers=_signers(args.targets_key),
        snapshot_key=args.snapshot_key,
        timestamp_key=args.timestamp_key,
        root_threshold=args.root_threshold,
        targets_threshold=args.targets_threshold,
    )
    _report(result, args.out)
    return 0


def cmd_add_team(args: argparse.Namespace) -> int:
    """``regseal tuf add-team``."""
    settings = settings_from(args)
    store = _store(settings)
    result = admin.add_team(
        store,
        settings,
        args.team,
        args.key,
        args.repositories,
        targets_signers=_signers(args.targets_key),
        expiry=timedelta(days=args.expiry_days) if args.expiry_days else None,
        bin_threshold=args.bin_threshold,
        bin_bits=args.bin_bits,
    )
    _report(result, None)
    if args.refresh:
        _refresh(store, settings, force=False)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    """``regseal tuf rotate``."""
    settings = settings_from(args)
    store = _store(settings)
    role = args.role
    if role == "root":
        result = admin.rotate_root(
            store,
            settings,
            current_signers=_signers(_required(args.root_key, "--root-key", role)),
            new_signers=_signers(args.new_key),
            threshold=args.threshold,
        )
    elif role == "targets":
        result = admin.rotate_targets(
            store,
            settings,
            root_signers=_signers(_required(args.root_key, "--root-key", role)),
            new_signers=_signers(args.new_key),
            threshold=args.threshold,
        )
    elif role in admin.ONLINE_ROLES:
        result = admin.rotate_online_role(
            store,
            settings,
            role,
            root_signers=_signers(_required(args.root_key, "--root-key", role)),
            new_key=_one(args.new_key, role),
        )
    else:
        result = admin.rotate_team(
            store,
            settings,
            role,
            targets_signers=_signers(
                _required(args.targets_key, "--targets-key", role)
            ),
            new_key=_one(args.new_key, role),
        )
    _report(result, args.out)
    if args.refresh:
        _refresh(store, settings, force=False)
    return 0


def _required(values: Sequence[str], option: str, role: str) -> Sequence[str]:
    if not values:
        raise TufError(f"rotate {role}: {option} is required")
    return values


def _one(values: Sequence[str], role: str) -> str:
    if len(values) != 1:
        raise TufError(f"rotate {role}: expected one --new-key, got {len(values)}")
    return values[0]


def cmd_refresh(args: argparse.Namespace) -> int:
    """``regseal tuf refresh``."""
    settings = settings_from(args)
    _refresh(_store(settings), settings, force=args.force)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """``regseal tuf keygen``."""
    key = generate_key_file(args.path, args.algorithm)
    print(f"wrote {args.path} (keyid {key.keyid})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the commands on their own (``python -m regseal.tuf.cli``)."""
    parser = argparse.ArgumentParser(prog="regseal")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    add_parser(subparsers)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
