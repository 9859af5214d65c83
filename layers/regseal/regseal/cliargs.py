"""Argument types shared by the command-line modules.

argparse calls a type with the option's text and, when it raises
:class:`argparse.ArgumentTypeError`, reports ``argument --OPTION: MESSAGE``
with the command's usage and exit status 2. The types here check paths when
the command line is parsed, so a path that cannot be used is named with its
option before any work (or any AWS call) starts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from regseal.settings import Settings, SettingsError


def readable_file(text: str) -> Path:
    """A path to an existing file this process can read (a key, a root)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"expected a readable file, no such {text!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"expected a readable file, {text!r} is not")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(
            f"expected a readable file, {text!r} cannot be read (permission denied)"
        )
    return path


def writable_file(text: str) -> Path:
    """A file that can be written: an existing writable file, or a new one
    in an existing writable directory (a checkpoint, a root to write out)."""
    path = Path(text)
    if path.exists():
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"expected a file, {text!r} is not")
        if not os.access(path, os.R_OK | os.W_OK):
            raise argparse.ArgumentTypeError(
                f"expected a writable file, {text!r} cannot be written "
                "(permission denied)"
            )
        return path
    parent = path.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"expected a file in an existing directory, no directory {str(parent)!r}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"expected a file in a writable directory, {str(parent)!r} is not"
        )
    return path


def add_bucket_options(parser: argparse.ArgumentParser) -> None:
    """``--bucket`` and ``--policy``, which the bucket commands all take."""
    parser.add_argument("--bucket", help="the registry bucket (REGSEAL_BUCKET)")
    parser.add_argument("--policy", help="the policy location (REGSEAL_POLICY)")


def bucket_settings(args: argparse.Namespace) -> Settings:
    """The seal function's settings from the environment and the bucket options.

    Raises:
        SettingsError: no bucket is named, or a variable is malformed.
    """
    env = dict(os.environ)
    if args.bucket:
        env["REGSEAL_BUCKET"] = args.bucket
    if args.policy:
        env["REGSEAL_POLICY"] = args.policy
    if not env.get("REGSEAL_BUCKET"):
        raise SettingsError(
            "which registry bucket? give --bucket NAME or set REGSEAL_BUCKET"
        )
    return Settings.from_env(env)
