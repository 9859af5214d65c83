"""The ``regseal`` command line.

Each command group lives in its own module and exposes ``register(commands)``,
which adds its parser and sets ``run`` on every leaf to a function taking the
parsed arguments and returning the exit status. Add a group by appending its
``register`` to :data:`COMMAND_GROUPS`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from regseal import __version__, decrypt_cli, invariants_cli, policy_cli, seal_cli
from regseal.errors import RegsealError
from regseal.local import cli as local_cli
from regseal.tuf import cli as tuf_cli

COMMAND_GROUPS: tuple[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...
] = (
    local_cli.register,
    seal_cli.register,
    policy_cli.register,
    decrypt_cli.register,
    tuf_cli.add_parser,
    invariants_cli.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="regseal",
        description="Seal container images in an S3-backed OCI registry.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: once for regseal's debug messages, twice for all",
    )
    commands = parser.add_subparsers(metavar="COMMAND", required=True)
    for register in COMMAND_GROUPS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: the process arguments)."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        status: int = args.run(args)
    except RegsealError as exc:
        print(f"regseal: error: {exc}", file=sys.stderr)
        return 1
    return status


def _configure_logging(verbosity: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbosity > 1 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("regseal").setLevel(logging.DEBUG if verbosity else logging.INFO)
    # botocore at DEBUG logs request and response bodies: KMS Encrypt
    # plaintext and Decrypt results (layer keys) among them. Never below INFO.
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.INFO, logging.root.level))
