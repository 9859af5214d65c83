"""``regseal policy``: show, validate and set the sealing policy; key policies.

- ``show``: print the policy stored at the location (``--location`` or
  ``$REGSEAL_POLICY``: ``s3://BUCKET/KEY``, ``ssm:/NAME`` or a file) as JSON
  on stdout, a summary on stderr; exit 1 if it does not validate.
- ``validate FILE…``: check policy files; errors name the bad field.
- ``set FILE``: validate, then store at the location. A policy with the
  version already stored but other content is refused: the seal function
  reuses earlier seals by policy version, so every edit needs a new version.
- ``schema``: print the JSON Schema (also shipped as ``policy.schema.json``).
- ``key-policy TEAM``: render the KMS key policy of a team's layer key
  (:mod:`regseal.keypolicy`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from regseal import keypolicy
from regseal.errors import PolicyError, PreconditionFailedError
from regseal.policy import (
    LOCATION_FORMS,
    Policy,
    canonical_json,
    load_policy_bytes,
    load_policy_json,
    read_location,
    read_location_versioned,
    schema_json,
    write_location,
)
from regseal.settings import Settings

LOCATION_VARIABLE = "REGSEAL_POLICY"
BUCKET_VARIABLE = "REGSEAL_BUCKET"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``policy`` command group."""
    policy = commands.add_parser(
        "policy",
        help="show, validate and set the sealing policy; render key policies",
        description="Operate on the sealing policy: which team owns which "
        "repositories, and the keys their images are sealed for.",
    )
    group = policy.add_subparsers(metavar="COMMAND", required=True)
    location_help = (
        f"{LOCATION_FORMS} (default ${LOCATION_VARIABLE}, else the policy.json "
        f"under the state prefix of ${BUCKET_VARIABLE}, as the bucket commands)"
    )

    show = group.add_parser("show", help="print the stored policy")
    show.add_argument("--location", metavar="LOCATION", help=location_help)
    show.set_defaults(run=_show)

    validate = group.add_parser("validate", help="check policy files")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.set_defaults(run=_validate)

    store = group.add_parser("set", help="validate a policy file, then store it")
    store.add_argument("file", type=Path, metavar="FILE")
    store.add_argument("--location", metavar="LOCATION", help=location_help)
    store.set_defaults(run=_set)

    schema = group.add_parser("schema", help="print the policy's JSON Schema")
    schema.set_defaults(run=_schema)

    key = group.add_parser(
        "key-policy",
        help="render the KMS key policy of a team's layer key",
        description="Print the key policy for TEAM's layer key: Encrypt for the "
        "seal role and Decrypt for the team's runtime roles, both only for the "
        "team's repositories; administration without use for the administrators; "
        "nothing for anyone else.",
    )
    key.add_argument("team", metavar="TEAM")
    source = key.add_mutually_exclusive_group()
    source.add_argument(
        "--file", type=Path, metavar="FILE", help="read the policy from FILE"
    )
    source.add_argument("--location", metavar="LOCATION", help=location_help)
    key.add_argument("--seal-role", required=True, metavar="ARN")
    key.add_argument(
        "--runtime-role",
        action="append",
        required=True,
        metavar="ARN",
        help="a role of the team's runtimes; repeatable",
    )
    key.add_argument(
        "--admin",
        action="append",
        required=True,
        metavar="ARN",
        help="a key administrator (role or user); repeatable",
    )
    key.set_defaults(run=_key_policy)


def _location(args: argparse.Namespace) -> str:
    location: str | None = args.location or os.environ.get(LOCATION_VARIABLE)
    if location:
        return location
    if os.environ.get(BUCKET_VARIABLE):
        # Where the seal function and the bucket commands look by default.
        return Settings.from_env(dict(os.environ)).policy_location
    raise PolicyError(
        f"expected --location, ${LOCATION_VARIABLE} or ${BUCKET_VARIABLE} "
        "naming where the policy lives"
    )


def _read_file(path: Path) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror}") from None


def _summary(policy: Policy, where: str) -> str:
    teams = ", ".join(
        f"{t.name} ({len(t.repositories)} patterns, {t.kms_key}, "
        f"{len(t.recipients)} recipients)"
        for t in policy.teams
    )
    return (
        f"{where}: valid policy {policy.version!r}, unmatched {policy.unmatched!r}; "
        f"teams: {teams}"
    )


def _show(args: argparse.Namespace) -> int:
    location = _location(args)
    data = read_location(location)
    try:
        document = load_policy_json(data, location)
    except PolicyError as exc:
        sys.stdout.write(data.decode("utf-8", "replace"))
        raise PolicyError(f"the stored policy cannot be read: {exc}") from None
    print(json.dumps(document, indent=2))
    policy = load_policy_bytes(data, location)
    print(_summary(policy, location), file=sys.stderr)
    return 0


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            policy = load_policy_bytes(_read_file(path), str(path))
        except PolicyError as exc:
            print(f"regseal: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(_summary(policy, str(path)))
    return 1 if failed else 0


def _set(args: argparse.Namespace) -> int:
    location = _location(args)
    data = _read_file(args.file)
    policy = load_policy_bytes(data, str(args.file))
    current, etag = read_location_versioned(location)
    if current is not None:
        try:
            stored = load_policy_json(current, location)
        except PolicyError:
            stored = None  # unreadable: replaced by the valid file
        stored_version = stored.get("version") if isinstance(stored, dict) else None
        # Equal documents, however spelled (``show`` indents): nothing to do.
        if stored is not None and canonical_json(stored) == canonical_json(
            load_policy_json(data, str(args.file))
        ):
            print(f"{location}: already holds policy {policy.version!r}")
            return 0
        if stored_version == policy.version:
            raise PolicyError(
                f"{location} holds other content under the same version "
                f"{policy.version!r}; give the new policy a new version (sealed "
                "images are reused by policy version)"
            )
    try:
        write_location(location, data, if_match=etag, create_only=current is None)
    except PreconditionFailedError:
        raise PolicyError(
            f"{location} changed while the policy was being set; run set again"
        ) from None
    print(f"{location}: stored policy {policy.version!r}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_json().decode())
    return 0


def _key_policy(args: argparse.Namespace) -> int:
    if args.file is not None:
        where = str(args.file)
        data = _read_file(args.file)
    else:
        where = _location(args)
        data = read_location(where)
    policy = load_policy_bytes(data, where)
    document = keypolicy.render_key_policy(
        policy.team(args.team),
        seal_role=args.seal_role,
        runtime_roles=args.runtime_role,
        administrators=args.admin,
    )
    print(json.dumps(document, indent=2))
    return 0
