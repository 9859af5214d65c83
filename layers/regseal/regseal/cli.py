"""The ``regseal`` command line.

Each command group lives in its own module and exposes ``register(commands)``,
which adds its parser and sets ``run`` on every leaf to a function taking the
parsed arguments and returning the exit status. Add a group by appending its
``register`` to :data:`COMMAND_GROUPS`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

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
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Record on every (sub-)command which parser parsed it.

    The innermost parser's default wins, so after parsing, ``command_parser``
    is the leaf command's parser: its usage is the one to show for an argument
    the command does not know.
    """
    parser.set_defaults(command_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _remember_parsers(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: the process arguments)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command: argparse.ArgumentParser = args.command_parser
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    _configure_logging(args.verbose)
    try:
        status: int = args.run(args)
    except RegsealError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(_file_problem(exc))
    except (EndpointConnectionError, NoCredentialsError, NoRegionError) as exc:
        return _fail(_aws_problem(exc, args))
    except ClientError as exc:
        if _error_code(exc) not in _DENIED_CODES:
            raise
        return _fail(_aws_problem(exc, args))
    return status


_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "InvalidAccessKeyId", "ExpiredToken"}
)


def _fail(message: str) -> int:
    print(f"regseal: error: {message}", file=sys.stderr)
    return 1


def _file_problem(exc: OSError) -> str:
    """One line for a file the command could not read or write."""
    what = exc.strerror or exc.__class__.__name__
    if exc.filename is None:
        return f"file operation failed: {what}"
    path = os.fsdecode(exc.filename)
    if isinstance(exc, FileNotFoundError):
        return f"{path}: no such file or directory; check the path given"
    if isinstance(exc, IsADirectoryError):
        return f"{path}: expected a file, got a directory"
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied; expected a file this user can use"
    return f"{path}: {what}"


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _aws_problem(exc: Exception, args: argparse.Namespace) -> str:
    """One line for an AWS endpoint that cannot be reached or refuses us."""
    bucket = getattr(args, "bucket", None) or os.environ.get("REGSEAL_BUCKET")
    on_bucket = f" (bucket {bucket})" if bucket else ""
    if isinstance(exc, EndpointConnectionError):
        # The error carries the whole request URL; its endpoint is what to check.
        url = urlsplit(str(exc.kwargs.get("endpoint_url", "")))
        endpoint = f"{url.scheme}://{url.netloc}" if url.netloc else "the endpoint"
        return (
            f"cannot connect to {endpoint}{on_bucket}; check AWS_ENDPOINT_URL and "
            "that the service (or the local stack) is running"
        )
    if isinstance(exc, NoCredentialsError):
        return (
            f"no AWS credentials found{on_bucket}; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    if isinstance(exc, NoRegionError):
        return f"no AWS region configured{on_bucket}; set AWS_DEFAULT_REGION"
    assert isinstance(exc, ClientError)
    operation = exc.operation_name
    return (
        f"AWS refused {operation}{on_bucket} with {_error_code(exc)}; check the "
        "credentials in use and the IAM and bucket policies they fall under"
    )


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
