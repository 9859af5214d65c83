"""``regseal-keyprovider``: an ocicrypt keyprovider for regseal's KMS packets.

Container tools built on ocicrypt ≥ 1.1 (skopeo, podman, buildah, CRI-O,
containerd's imgcrypt) run this program once per wrapped key, with one JSON
request on stdin, and read one JSON answer from stdout
(``reference/ocicrypt.md`` §5):

- ``keyunwrap``: ``keyunwrapparams.annotation`` holds one item of the
  ``org.opencontainers.image.enc.keys.provider.regseal`` annotation, i.e. the
  JSON packet of :class:`regseal.kms.KmsPacket`. The program calls KMS
  ``Decrypt`` with the packet's key and encryption context (the caller's AWS
  credentials decide, through the key policy) and answers
  ``{"keyunwrapresults":{"optsdata":[…]}}``.
- ``keywrap``: ``keywrapparams.optsdata`` holds a layer's private options;
  ``keywrapparams.ec.Parameters["regseal"]`` holds one argument, given on the
  command line as ``--encryption-key provider:regseal:KEY?repository=NAME``
  (``&region=REGION`` optional; otherwise the key ARN's region or
  ``AWS_REGION``). The options are encrypted with KMS ``Encrypt`` under
  ``{"repository": NAME, "layer": <the options' digest>}`` and the answer is
  ``{"keywrapresults":{"annotation":[…]}}``.

Byte fields are read as base64 strings (Go clients) or integer arrays (Rust
clients); answers use integer arrays and omit the other results object, which
both read. ``Parameters`` and ``DecryptConfig`` are capitalized as Go sends
them; null param objects are accepted.

An allow-list limits what this program asks KMS for, in addition to the key
policy: ``--allow-repository PATTERN`` and ``--allow-key KEY`` (repeatable),
or the comma-separated environment variables
``REGSEAL_KEYPROVIDER_ALLOW_REPOSITORIES`` and
``REGSEAL_KEYPROVIDER_ALLOW_KEYS`` (arguments win over the environment).

Errors go to stderr with exit status 1; they name the key and the
repository context, never key material. ocicrypt hands a provider every
key of its configuration (other recipients' private keys included): this
program reads only its own parameter and logs none of them.

Public API: :func:`main`, :func:`handle`, :class:`AllowList`.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import logging
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from regseal.errors import (
    DigestError,
    FormatError,
    IntegrityError,
    KeyWrapError,
    OcicryptError,
    RegsealError,
)
from regseal.kms import (
    PROVIDER_NAME,
    KmsPacket,
    KmsWrapper,
    encryption_context,
    regional_client,
)
from regseal.layout import validate_repository
from regseal.ocicrypt import (
    PrivateOptions,
    decode_base64,
    dump_json,
    encode_base64,
    load_json_object,
)

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

logger = logging.getLogger(__name__)

PROG = "regseal-keyprovider"
OP_WRAP = "keywrap"
OP_UNWRAP = "keyunwrap"
MAX_REQUEST_BYTES = 4 << 20
ALLOW_REPOSITORIES_VARIABLE = "REGSEAL_KEYPROVIDER_ALLOW_REPOSITORIES"
ALLOW_KEYS_VARIABLE = "REGSEAL_KEYPROVIDER_ALLOW_KEYS"
DEBUG_VARIABLE = "REGSEAL_KEYPROVIDER_DEBUG"
_ARN_REGION = re.compile(r"arn:aws[a-z-]*:kms:([a-z0-9-]+):\d{12}:(?:key|alias)/.+")
_KEY_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}"
)


class RefusedError(KeyWrapError):
    """The allow-list of this keyprovider refuses the key or repository."""


# --------------------------------------------------------------------------
# The wire format


def decode_bytes(value: object, what: str) -> bytes:
    """A Go ``[]byte`` (base64 string) or a Rust ``Vec<u8>`` (integer array).

    Raises:
        FormatError: Neither form; the message never repeats the value.
    """
    if isinstance(value, str):
        try:
            return decode_base64(value, what)
        except OcicryptError:
            raise FormatError(f"expected {what} in standard base64") from None
    if isinstance(value, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
    ):
        return bytes(value)
    raise FormatError(
        f"expected {what} as a base64 string or an array of integers 0-255, "
        f"got {type(value).__name__}"
    )


def _object(value: object, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormatError(f"expected {what} to be an object or null")
    return value


def _parameter(config: Mapping[str, Any], what: str) -> list[bytes]:
    """The values of this provider's entry in a config's ``Parameters``."""
    parameters = _object(config.get("Parameters"), f"{what}.Parameters")
    values = parameters.get(PROVIDER_NAME)
    if values is None:
        return []
    if not isinstance(values, list):
        raise FormatError(f"expected {what}.Parameters.{PROVIDER_NAME} to be a list")
    return [
        decode_bytes(value, f"{what}.Parameters.{PROVIDER_NAME}[{i}]")
        for i, value in enumerate(values)
    ]


def _answer(results: str, name: str, data: bytes) -> bytes:
    # Integer arrays: both Go's encoding/json and Rust's serde read them.
    return dump_json({results: {name: list(data)}})


# --------------------------------------------------------------------------
# What this provider may ask KMS for


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


@dataclass(frozen=True)
class AllowList:
    """Repositories (glob patterns) and KMS keys this keyprovider will use.

    Empty tuples allow everything the caller's credentials allow. A key is
    a key ARN, a key id or an alias (``alias/NAME`` or an alias ARN; an alias
    is resolved with ``kms:DescribeKey``).
    """

    repositories: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    @classmethod
    def from_sources(
        cls,
        repositories: Sequence[str],
        keys: Sequence[str],
        environ: Mapping[str, str],
    ) -> AllowList:
        """Arguments when given, else the environment variables."""
        return cls(
            tuple(repositories) or _split(environ.get(ALLOW_REPOSITORIES_VARIABLE)),
            tuple(keys) or _split(environ.get(ALLOW_KEYS_VARIABLE)),
        )

    def check_repository(self, key: str, repository: str) -> None:
        """Refuse a repository outside the allowed patterns."""
        if self.repositories and not any(
            fnmatch.fnmatchcase(repository, pattern) for pattern in self.repositories
        ):
            raise RefusedError(
                f"refused KMS key {key} for repository {repository!r}: this "
                f"keyprovider only serves repositories {list(self.repositories)}"
            )

    def check_key(self, key: str, repository: str, client: KMSClient) -> None:
        """Refuse a key that is not one of the allowed keys."""
        if not self.keys or any(
            _same_key(key, allowed, client) for allowed in self.keys
        ):
            return
        raise RefusedError(
            f"refused KMS key {key} for repository {repository!r}: this keyprovider "
            f"only uses keys {list(self.keys)}"
        )


def _same_key(key: str, allowed: str, client: KMSClient) -> bool:
    if key == allowed:
        return True
    canonical = _key_id(key, client)
    return canonical is not None and canonical == _key_id(allowed, client)


def _key_id(key: str, client: KMSClient) -> str | None:
    """The key id a key ARN, key id or alias names (aliases through KMS)."""
    if _KEY_ID.fullmatch(key):
        return key
    if key.startswith("arn:") and ":key/" in key:
        return key.rsplit("/", 1)[1]
    try:
        key_id: str = client.describe_key(KeyId=key)["KeyMetadata"]["KeyId"]
    except (ClientError, BotoCoreError) as exc:
        logger.debug("cannot resolve %s: %s", key, type(exc).__name__)
        return None
    return key_id


# --------------------------------------------------------------------------
# Operations


def unwrap(
    annotation: bytes,
    allow: AllowList,
    clients: Callable[[str], KMSClient],
) -> bytes:
    """Decrypt the private options held by one KMS packet.

    Raises:
        OcicryptError: Not a regseal KMS packet.
        RefusedError: The allow-list refuses the key or repository.
        AccessDeniedError: KMS refused (the message names key and context).
        IntegrityError: The context does not match the ciphertext.
    """
    item = encode_base64(annotation)
    packet = KmsPacket.from_item(item)
    repository = packet.encryption_context.get("repository", "")
    allow.check_repository(packet.kid, repository)
    client = clients(packet.region)
    allow.check_key(packet.kid, repository, client)
    optsdata = KmsWrapper(client).unwrap(item)
    options = PrivateOptions.from_json(optsdata)
    layer = packet.encryption_context.get("layer")
    if layer is not None and str(options.digest) != layer:
        raise IntegrityError(
            f"KMS key {packet.kid} for repository {repository!r} unwrapped options "
            f"for {options.digest}, but the context names layer {layer}"
        )
    logger.debug("unwrapped a layer key of %s with %s", repository, packet.kid)
    return optsdata


@dataclass(frozen=True)
class WrapArgument:
    """The parsed ``provider:regseal:KEY?repository=NAME[&region=R]`` argument."""

    key: str
    repository: str
    region: str


def parse_wrap_argument(text: str, environ: Mapping[str, str]) -> WrapArgument:
    """Parse the keywrap argument.

    Raises:
        FormatError: No key, no or a bad repository, unknown query members,
            or no region anywhere.
    """
    expected = "expected KEY?repository=NAME[&region=REGION] after provider:regseal:"
    key, question, query = text.partition("?")
    if not key or any(c.isspace() for c in key) or not question:
        raise FormatError(f"{expected}, got {text!r}")
    try:
        members = urllib.parse.parse_qs(query, strict_parsing=True)
    except ValueError:
        raise FormatError(f"{expected}, got {text!r}") from None
    unknown = sorted(set(members) - {"repository", "region"})
    if unknown or any(len(values) != 1 for values in members.values()):
        raise FormatError(f"{expected}, got {text!r}")
    if "repository" not in members:
        raise FormatError(f"{expected}: no repository in {text!r}")
    repository = validate_repository(members["repository"][0])
    arn = _ARN_REGION.fullmatch(key)
    region = (
        members.get("region", [None])[0]
        or (arn.group(1) if arn else None)
        or environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
    )
    if not region:
        raise FormatError(
            f"no region for KMS key {key}: give &region=, a key ARN or AWS_REGION"
        )
    return WrapArgument(key, repository, region)


def wrap(
    optsdata: bytes,
    argument: WrapArgument,
    allow: AllowList,
    clients: Callable[[str], KMSClient],
) -> bytes:
    """Encrypt private options for ``argument``; returns the packet bytes.

    Raises:
        OcicryptError: ``optsdata`` is not valid private options.
        KeyWrapError: No sha256 layer digest to bind to, the allow-list
            refuses, or KMS refused or failed.
    """
    options = PrivateOptions.from_json(optsdata)
    try:
        context = encryption_context(argument.repository, options.digest)
    except DigestError:
        raise KeyWrapError(
            f"cannot bind KMS key {argument.key} for repository "
            f"{argument.repository!r}: the private options name no sha256 layer "
            "digest"
        ) from None
    allow.check_repository(argument.key, argument.repository)
    client = clients(argument.region)
    allow.check_key(argument.key, argument.repository, client)
    item = KmsWrapper(client).wrap(optsdata, argument.key, context)
    packet = KmsPacket.from_item(item)
    allow.check_key(packet.kid, argument.repository, client)
    return decode_base64(item, "the KMS packet")


def handle(
    request: bytes,
    allow: AllowList,
    clients: Callable[[str], KMSClient],
    environ: Mapping[str, str],
) -> bytes:
    """Answer one keyprovider request (the JSON read from stdin).

    Raises:
        RegsealError: The request is malformed or the operation failed.
    """
    doc = load_json_object(request, "a keyprovider request")
    op = doc.get("op")
    if op == OP_UNWRAP:
        params = _object(doc.get("keyunwrapparams"), "keyunwrapparams")
        if params.get("annotation") is None:
            raise FormatError("keyunwrap request has no keyunwrapparams.annotation")
        annotation = decode_bytes(params["annotation"], "keyunwrapparams.annotation")
        optsdata = unwrap(annotation, allow, clients)
        return _answer("keyunwrapresults", "optsdata", optsdata)
    if op == OP_WRAP:
        params = _object(doc.get("keywrapparams"), "keywrapparams")
        if params.get("optsdata") is None:
            raise FormatError("keywrap request has no keywrapparams.optsdata")
        optsdata = decode_bytes(params["optsdata"], "keywrapparams.optsdata")
        values = _parameter(_object(params.get("ec"), "ec"), "ec")
        if len(values) != 1:
            raise FormatError(
                f"expected one provider:{PROVIDER_NAME}:KEY?repository=NAME argument "
                f"in ec.Parameters.{PROVIDER_NAME}, got {len(values)}"
            )
        try:
            text = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(
                f"expected ec.Parameters.{PROVIDER_NAME} to be UTF-8 text"
            ) from None
        argument = parse_wrap_argument(text, environ)
        annotation = wrap(optsdata, argument, allow, clients)
        return _answer("keywrapresults", "annotation", annotation)
    raise FormatError(
        f"expected op {OP_WRAP!r} or {OP_UNWRAP!r}, got "
        f"{op if isinstance(op, str) and len(op) < 40 else type(op).__name__!r}"
    )


# --------------------------------------------------------------------------
# The executable


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "ocicrypt keyprovider for regseal: reads one keywrap or keyunwrap "
            "request on stdin, answers on stdout, unwrapping with AWS KMS."
        ),
    )
    parser.add_argument(
        "--allow-repository",
        action="append",
        default=[],
        metavar="PATTERN",
        help=f"only serve repositories matching PATTERN (repeatable; default "
        f"${ALLOW_REPOSITORIES_VARIABLE}, else any)",
    )
    parser.add_argument(
        "--allow-key",
        action="append",
        default=[],
        metavar="KEY",
        help=f"only use this KMS key: ARN, key id or alias (repeatable; default "
        f"${ALLOW_KEYS_VARIABLE}, else any)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one request from stdin; the exit status is 0 or 1."""
    args = _parser().parse_args(argv)
    debug = bool(os.environ.get(DEBUG_VARIABLE))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format=f"{PROG}: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        logging.getLogger("botocore").setLevel(logging.WARNING)
    allow = AllowList.from_sources(args.allow_repository, args.allow_key, os.environ)
    request = sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1)
    try:
        if len(request) > MAX_REQUEST_BYTES:
            raise FormatError(
                f"expected a request of at most {MAX_REQUEST_BYTES} bytes on stdin"
            )
        answer = handle(request, allow, functools.cache(regional_client), os.environ)
    except RegsealError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # The message of an unexpected error might hold request bytes.
        print(f"{PROG}: error: internal error ({type(exc).__name__})", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(answer)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
