"""``regseal check``: run the invariant checker against a registry bucket.

The bucket is ``--bucket`` or ``REGSEAL_BUCKET`` and the policy ``--policy`` or
``REGSEAL_POLICY``, as for the other bucket commands; the layout comes from
the same environment the seal function uses (``REGSEAL_REGISTRY_ROOT``), the AWS
access from the standard AWS environment. Violations are printed one a line
on stdout and the exit status is 1 when there is any (see
:mod:`regseal.invariants` for what each one means).
"""

from __future__ import annotations

import argparse
import sys

import boto3

from regseal.cliargs import add_bucket_options, bucket_settings, readable_file
from regseal.errors import FormatError
from regseal.invariants import ExtraCheck, Keys, check_registry, tuf_targets
from regseal.jwe import load_private_key
from regseal.kms import KmsWrapper
from regseal.layout import RegistryLayout
from regseal.policy import PolicySource
from regseal.storage import ObjectStore
from regseal.verify import default_cache_dir
from regseal.wiring import s3_client


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check`` command."""
    check = commands.add_parser(
        "check",
        help="check a registry bucket against regseal's invariants",
        description=(
            "List the registry bucket once and check that every tag resolves to "
            "a complete manifest and that every sealed layer opens and "
            "authenticates; with --finished, also that every tag of a "
            "repository the policy claims is sealed and no plaintext is reachable."
        ),
    )
    check.add_argument(
        "--jwe-key",
        type=readable_file,
        action="append",
        default=[],
        metavar="FILE",
        help="a JWE private key (PEM) that opens sealed layers; repeat for more",
    )
    check.add_argument(
        "--kms",
        action="store_true",
        help="also open sealed layers with KMS (needs kms:Decrypt on the team keys)",
    )
    check.add_argument(
        "--finished",
        action="store_true",
        help="no seal is running: also check tags are sealed and plaintext hidden",
    )
    check.add_argument(
        "--tuf-root",
        type=readable_file,
        metavar="FILE",
        help="a trusted TUF root: also check every sealed tag is its TUF target",
    )
    check.add_argument(
        "--tuf-metadata",
        metavar="URL",
        help="where the TUF metadata is (s3://BUCKET/PREFIX/ or https://...)",
    )
    check.add_argument(
        "--repository",
        action="append",
        default=[],
        metavar="NAME",
        help="check only this repository; repeat for more (default: all)",
    )
    add_bucket_options(check)
    check.set_defaults(run=_check)


def _check(args: argparse.Namespace) -> int:
    settings = bucket_settings(args)
    keys = Keys(
        jwe_keys=[
            load_private_key(path.read_bytes(), source=str(path))
            for path in args.jwe_key
        ],
        kms=KmsWrapper(boto3.client("kms")) if args.kms else None,
    )
    needs_policy = args.finished or args.tuf_root is not None
    policy = PolicySource(settings.policy_location).get() if needs_policy else None

    def sealable(repository: str) -> bool:
        return policy is None or policy.team_for(repository) is not None

    extra: list[ExtraCheck] = []
    if args.tuf_root is not None:
        if not args.tuf_metadata:
            raise FormatError("--tuf-root: expected --tuf-metadata URL as well")
        extra.append(
            tuf_targets(
                args.tuf_root.read_bytes(),
                args.tuf_metadata,
                default_cache_dir(args.tuf_metadata),
                sealable=sealable,
            )
        )
    report = check_registry(
        ObjectStore(s3_client(), settings.bucket),
        RegistryLayout(settings.registry_root),
        keys=keys,
        finished=args.finished,
        sealable=sealable,
        repositories=args.repository,
        extra_checks=extra,
    )
    for violation in report.violations:
        print(violation)
    print(
        f"regseal check: {report.repositories} repositories, {report.tags} tags, "
        f"{report.revisions} revisions, {report.layers_opened} sealed layers "
        f"opened; {len(report.violations)} violations",
        file=sys.stderr,
    )
    return 0 if report.ok else 1
