"""``regseal decrypt SRC DEST``: decrypt a sealed image into an OCI layout.

SRC is ``docker://HOST/REPOSITORY:TAG`` (or ``@sha256:…``) or
``oci:DIR[:TAG]``; DEST is ``oci:DIR[:TAG]``. Keys: ``--key FILE`` (a JWE
private key in PEM, repeatable) and/or KMS with the caller's AWS credentials
(``--kms``, the default when no ``--key`` is given). A registry that wants
an account gets ``--src-creds USER:PASSWORD`` or, without it, the account the
seal reads (``REGSEAL_REGISTRY_USERNAME``/``REGSEAL_REGISTRY_PASSWORD``, or
``REGSEAL_REGISTRY_CREDENTIALS``); the password is never printed or logged.
See :mod:`regseal.decrypt` for what is written and checked.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from regseal import jwe
from regseal.cliargs import readable_file
from regseal.decrypt import DecryptKeys, ImageSource, decrypt_image
from regseal.errors import FormatError, KeyWrapError
from regseal.imageref import RegistryReference, parse_destination, parse_source
from regseal.kms import regional_client
from regseal.layout import validate_repository
from regseal.ocilayout import LayoutSource, LayoutWriter
from regseal.progress import Progress
from regseal.registryauth import (
    LOCATION_VARIABLE,
    PASSWORD_VARIABLE,
    USERNAME_VARIABLE,
    command_line_credentials,
)
from regseal.registrysource import RegistrySource

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

MIB = 1 << 20
SRC_CREDS = "--src-creds"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``decrypt`` command."""
    parser = commands.add_parser(
        "decrypt",
        help="decrypt a sealed image into an OCI layout",
        description=(
            "Decrypt a sealed image (every platform of an index) into an OCI "
            "layout, byte for byte as 'skopeo copy --decryption-key' writes it. "
            "HMACs and digests are verified; nothing is written to DEST unless "
            "every layer decrypts."
        ),
    )
    parser.add_argument(
        "source", metavar="SRC", help="docker://HOST/REPOSITORY:TAG or oci:DIR:TAG"
    )
    parser.add_argument("destination", metavar="DEST", help="oci:DIR[:TAG]")
    parser.add_argument(
        "--key",
        action="append",
        type=readable_file,
        default=[],
        metavar="FILE",
        help="JWE private key (PEM: PKCS#8, PKCS#1 or SEC1); repeatable",
    )
    parser.add_argument(
        "--kms",
        action="store_true",
        help="also unwrap with AWS KMS (the default when no --key is given)",
    )
    parser.add_argument(
        "--repository",
        metavar="NAME",
        help="the repository the image was sealed in: KMS keys must be bound to "
        "it (default: the docker:// source's repository; none for oci:)",
    )
    parser.add_argument(
        "--tls-verify",
        type=_boolean,
        default=None,
        metavar="BOOL",
        help="verify the registry's TLS certificate (default true; loopback "
        "registries use plain http unless this is true)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="the same as --tls-verify=false: allow plain http and unverified TLS",
    )
    parser.add_argument(
        SRC_CREDS,
        metavar="USER:PASSWORD",
        help="the account for a registry that requires a login (basic or token "
        f"auth); default ${USERNAME_VARIABLE} and ${PASSWORD_VARIABLE}, or "
        f"${LOCATION_VARIABLE} (secretsmanager:NAME or ssm:/NAME)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar on stderr"
    )
    parser.set_defaults(run=_run)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in {"true", "1", "yes"}:
        return True
    if value in {"false", "0", "no"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _load_keys(paths: list[Path]) -> tuple[jwe.PrivateKey, ...]:
    keys = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyWrapError(f"cannot read key file {path}: {exc.strerror}") from None
        keys.append(jwe.load_private_key(data, source=str(path)))
    return tuple(keys)


def _kms_clients() -> Callable[[str], KMSClient]:
    return functools.cache(regional_client)


def _run(args: argparse.Namespace) -> int:
    source_ref = parse_source(args.source)
    destination = parse_destination(args.destination)
    if args.repository is not None:
        validate_repository(args.repository)
    tls_verify = False if args.insecure else args.tls_verify
    source: ImageSource
    if isinstance(source_ref, RegistryReference):
        source = RegistrySource.connect(
            source_ref,
            command_line_credentials(args.src_creds, SRC_CREDS),
            tls_verify=tls_verify,
        )
    else:
        if not source_ref.path.is_dir():
            raise FormatError(f"{source_ref}: no such OCI layout directory")
        source = LayoutSource(source_ref.path, source_ref.tag)
    keys = DecryptKeys(
        private_keys=_load_keys(args.key),
        kms=_kms_clients() if args.kms or not args.key else None,
    )
    progress = Progress(sys.stderr, enabled=not args.no_progress)

    writer = LayoutWriter(destination.path, destination.tag)
    result = decrypt_image(
        source,
        writer,
        keys,
        expected_repository=args.repository,
        progress=progress,
    )
    print(
        f"regseal: decrypted {source.name} into {destination} as {result.digest}: "
        f"{result.manifests} manifest(s), {result.layers_decrypted} layer(s), "
        f"{result.bytes_decrypted / MIB:.1f} MiB",
        file=sys.stderr,
    )
    return 0
