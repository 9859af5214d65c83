"""``regseal local``: run regseal on one machine.

- ``regseal local up --state FILE`` runs the local stack until SIGINT or
  SIGTERM (see :mod:`regseal.local.stack`).
- ``regseal local sample-image DIR`` writes the demo's sample image as an OCI
  layout (see :mod:`regseal.local.sample`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from regseal.local import runtime, sample, stack
from regseal.local.state import StackState

SEAL_HANDLER_VARIABLE = "REGSEAL_SEAL_HANDLER"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``local`` command group."""
    local = commands.add_parser(
        "local",
        help="run regseal on one machine",
        description="Run regseal on one machine: moto, a registry and the handlers.",
    )
    group = local.add_subparsers(metavar="COMMAND", required=True)

    up = group.add_parser(
        "up",
        help="run the local stack until SIGINT or SIGTERM",
        description=(
            "Start moto's server, the AWS resources, the TUF repository, the "
            "registry on moto's S3 and the event pumps of the seal and TUF "
            "functions; write the state file once all answer; run until SIGINT "
            "or SIGTERM, then stop everything and remove the state file."
        ),
    )
    up.add_argument(
        "--state", type=Path, required=True, metavar="FILE", help="state JSON to write"
    )
    up.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="keys, registry config and logs (default: FILE's stem + '-work', "
        "next to FILE)",
    )
    up.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="sealing policy JSON to store instead of the demo policy",
    )
    up.add_argument(
        "--seal-handler",
        type=Path,
        metavar="FILE",
        default=os.environ.get(SEAL_HANDLER_VARIABLE),
        help=f"the seal function's module (default: ${SEAL_HANDLER_VARIABLE}, "
        f"else {runtime.function_path(runtime.SEAL_FUNCTION)})",
    )
    up.add_argument(
        "--write-back",
        choices=stack.WRITE_BACK_MODES,
        default="storage",
        help="how the seal writes sealed images back: 'storage' writes the "
        "registry's S3 objects, 'api' pushes through the registry's API as "
        "Harbor needs (default %(default)s)",
    )
    up.add_argument(
        "--registry-auth",
        choices=stack.REGISTRY_AUTH_KINDS,
        help="what the registry requires: 'htpasswd' (basic auth), 'token' "
        "(an in-process token service) or 'none' (default: htpasswd with "
        "--write-back api, else none); the account is testing/testing",
    )
    up.add_argument(
        "--tags-in-database",
        action="store_true",
        help="run as Harbor 2.15 and later: a front on the registry stores a "
        "push by tag as a push by digest and keeps the tag in memory, so "
        "storage gets no tag links and the seal no tag events (needs "
        "--write-back api)",
    )
    up.add_argument(
        "--no-tuf",
        dest="tuf",
        action="store_false",
        help="no TUF metadata and no TUF function (faster start; the state "
        "file's tuf_* members are null)",
    )
    up.set_defaults(run=_up)

    image = group.add_parser(
        "sample-image",
        help="write the demo's sample image as an OCI layout",
        description=(
            "Write a three-layer image (text files as tar+gzip, a plain tar, and "
            "a large random file as tar+gzip) into an OCI image layout; print it "
            "as JSON."
        ),
    )
    image.add_argument("directory", type=Path, metavar="DIR")
    image.add_argument(
        "--tag", default="latest", help="reference name (default %(default)s)"
    )
    image.add_argument(
        "--big-layer-mib",
        type=int,
        default=sample.DEFAULT_BIG_LAYER_BYTES // sample.MIB,
        metavar="N",
        help="size of the random file in MiB (default %(default)s)",
    )
    image.set_defaults(run=_sample_image)


def _up(args: argparse.Namespace) -> int:
    options = stack.StackOptions(
        state_file=args.state,
        workdir=args.workdir,
        policy_file=args.policy,
        seal_handler=args.seal_handler,
        write_back=args.write_back,
        registry_auth=args.registry_auth,
        tuf=args.tuf,
        tags_in_database=args.tags_in_database,
    )
    stack.run(options, on_ready=_announce)
    print("regseal local: stopped", file=sys.stderr, flush=True)
    return 0


def _announce(state: StackState) -> None:
    lines = [
        "regseal local: the stack is up",
        f"  registry     {state.registry} (plain http, auth {state.registry_auth}"
        + (
            f", account {state.registry_username}:{state.registry_password})"
            if state.registry_username
            else ")"
        ),
        f"  write-back   {state.write_back}"
        + (
            " (tags in the front's database, as Harbor 2.15+)"
            if state.tags_in_database
            else ""
        ),
        f"  AWS endpoint {state.s3_endpoint} (S3, KMS, SQS, SSM)",
        f"  bucket       {state.bucket}",
        f"  policy       {state.policy}",
        f"  JWE key      {state.jwe_private_key}",
    ]
    if state.tuf_metadata_url is not None:
        lines += [
            f"  TUF metadata {state.tuf_metadata_url}",
            f"  TUF root     {state.tuf_root}",
        ]
    lines += [
        f"  logs         {state.workdir}",
        "  environment for other commands:",
        f"    export {environment_line(state)}",
        "Stop with Ctrl-C or SIGTERM.",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def environment_line(state: StackState) -> str:
    """The variables the other commands need to act on the stack, shell-ready.

    boto3 reads the region from ``AWS_DEFAULT_REGION`` (``AWS_REGION`` only in
    newer releases and the Lambda runtime), so that is the one to export.
    """
    variables = {
        "AWS_ENDPOINT_URL": state.s3_endpoint,
        "AWS_DEFAULT_REGION": state.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "REGSEAL_BUCKET": state.bucket,
        "REGSEAL_POLICY": state.policy,
    }
    return " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items())


def _sample_image(args: argparse.Namespace) -> int:
    image = sample.write_sample_image(
        args.directory, tag=args.tag, big_layer_bytes=args.big_layer_mib * sample.MIB
    )
    print(json.dumps(image.to_json(), indent=2))
    return 0
