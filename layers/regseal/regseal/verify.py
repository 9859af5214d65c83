"""``regseal verify HOST/REPO:TAG``: check a tag against regseal's TUF metadata.

The check is the one a consumer relies on: python-tuf's reference client
(ngclient, unmodified) runs the TUF client workflow from a trusted root file
(root chain, timestamp, snapshot, targets and the team's delegated role, with
every signature, version, expiry, length and hash rule of the specification),
finds the target ``<repository>/tags/<tag>``, and then the manifest the registry
serves for the tag must have exactly the target's length and sha256.

Metadata comes from an ``http(s)://`` URL or from ``s3://bucket/prefix/``
(:class:`regseal.tuf.fetcher.S3Fetcher`). Trusted metadata is cached per
metadata URL (``~/.cache/regseal/tuf/`` by default), so a later run also
rejects metadata rolled back below what an earlier run trusted.

The registry is asked through :class:`regseal.registryapi.RegistryClient`
over HTTPS, or over plain HTTP for a loopback registry (``127.0.0.1``,
``localhost``, ``[::1]``: the local stack) or with ``--insecure``. A registry
that requires a login (basic or token auth) gets ``--creds USER:PASSWORD`` or
the seal's account variables (:func:`regseal.registryauth.command_line_credentials`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater

from regseal.errors import (
    FormatError,
    RegistryAuthError,
    RegistryError,
    RegsealError,
    VerificationError,
)
from regseal.registryapi import RegistryClient
from regseal.registryauth import CredentialSource, command_line_credentials
from regseal.tuf.fetcher import S3Fetcher
from regseal.tuf.targets import check_repository, check_tag, target_path

logger = logging.getLogger(__name__)

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
CREDS = "--creds"
_LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}


@dataclass(frozen=True)
class ImageReference:
    """``HOST/REPOSITORY:TAG``.

    Attributes:
        host: registry host, optionally with ``:port``.
        repository: OCI repository name.
        tag: OCI tag.
    """

    host: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse a reference; the registry host is required.

        Raises:
            FormatError: not ``HOST/REPOSITORY:TAG``.
        """
        host, slash, rest = text.partition("/")
        repository, colon, tag = rest.rpartition(":")
        is_host = "." in host or ":" in host or host in ("localhost",)
        if not slash or not colon or "/" in tag or not is_host or "@" in text:
            raise FormatError(
                f"expected HOST/REPOSITORY:TAG (e.g. 127.0.0.1:5000/team-a/app:v1), "
                f"got {text!r}"
            )
        return cls(host, check_repository(repository), check_tag(tag))

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"

    @property
    def loopback(self) -> bool:
        """Whether the registry is on this machine."""
        if self.host.startswith("["):
            name = self.host.split("]")[0] + "]"
        else:
            name = self.host.split(":")[0]
        return name in _LOOPBACK

    def registry_url(self, insecure: bool = False) -> str:
        """``http(s)://host[:port]`` of the registry."""
        scheme = "http" if insecure or self.loopback else "https"
        return f"{scheme}://{self.host}"

    def manifest_url(self, insecure: bool = False) -> str:
        """``GET`` URL of the tag's manifest."""
        base = self.registry_url(insecure)
        return f"{base}/v2/{self.repository}/manifests/{self.tag}"


@dataclass(frozen=True)
class VerifiedManifest:
    """A tag whose manifest matched its TUF target.

    Attributes:
        reference: the image reference.
        target_path: the TUF target path.
        digest: sha256 digest of the manifest.
        length: manifest length in bytes.
        custom: the target's custom fields.
    """

    reference: ImageReference
    target_path: str
    digest: str
    length: int
    custom: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": str(self.reference),
            "target": self.target_path,
            "digest": self.digest,
            "length": self.length,
            "custom": self.custom,
        }


def default_cache_dir(metadata_url: str) -> Path:
    """Where trusted metadata for ``metadata_url`` is kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    name = hashlib.sha256(metadata_url.encode()).hexdigest()[:16]
    return Path(base) / "regseal" / "tuf" / name


def trusted_target(
    path: str,
    *,
    root: bytes,
    metadata_url: str,
    cache_dir: Path,
    fetcher: FetcherInterface | None = None,
    root_name: str = "the trusted root",
) -> TargetFile:
    """Run the TUF client workflow and return the target at ``path``.

    Args:
        path: The target's path (``<repository>/tags/<tag>``).
        root: The trusted root metadata to start from.
        metadata_url: Where the metadata is (``http(s)://`` or ``s3://``).
        cache_dir: Trusted metadata of earlier runs (rollback protection).
        fetcher: Downloads metadata; by default by the URL's scheme.
        root_name: How messages name ``root`` (its file, say).

    Raises:
        VerificationError: metadata not trusted, or no such target; the
            message names the root file, the cache or the metadata URL, and
            the target.
    """
    if fetcher is None and metadata_url.startswith("s3://"):
        fetcher = S3Fetcher()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VerificationError(
            f"cannot use the metadata cache {cache_dir}: {exc.strerror or exc}"
        ) from exc
    try:
        updater = Updater(
            metadata_dir=str(cache_dir),
            metadata_base_url=metadata_url,
            fetcher=fetcher,
            bootstrap=root,
        )
    except tuf_errors.RepositoryError as exc:
        raise VerificationError(
            f"{root_name}: expected a valid, self-signed TUF root: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    except OSError as exc:
        raise VerificationError(
            f"cannot write the trusted root into the metadata cache {cache_dir}: "
            f"{exc.strerror or exc}"
        ) from exc
    where = f"TUF metadata at {metadata_url} (target {path!r})"
    try:
        updater.refresh()
        target = updater.get_targetinfo(path)
    except tuf_errors.ExpiredMetadataError as exc:
        raise VerificationError(f"metadata expired: {where}: {exc}") from exc
    except tuf_errors.BadVersionNumberError as exc:
        raise VerificationError(
            f"metadata rolled back: {where}: {exc} (compared with the trusted "
            f"metadata cached in {cache_dir})"
        ) from exc
    except tuf_errors.UnsignedMetadataError as exc:
        raise VerificationError(
            f"metadata not signed by trusted keys: {where}: {exc}"
        ) from exc
    except tuf_errors.LengthOrHashMismatchError as exc:
        raise VerificationError(
            f"metadata does not match snapshot: {where}: {exc}"
        ) from exc
    except tuf_errors.RepositoryError as exc:
        raise VerificationError(
            f"metadata not trusted: {where}: {type(exc).__name__}: {exc}"
        ) from exc
    except tuf_errors.DownloadError as exc:
        raise VerificationError(
            f"cannot download metadata: {where}: {_reason(exc)}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise VerificationError(
            f"cannot use the metadata cache {cache_dir} for {where}: {exc}"
        ) from exc
    if target is None:
        raise VerificationError(
            f"unknown target: no TUF target {path!r} in the metadata at {metadata_url}"
        )
    return target


def _reason(exc: Exception) -> str:
    """An exception's text, or its cause's when it has none (tuf's downloads)."""
    text = str(exc).strip()
    cause = exc.__cause__
    if not text and cause is not None:
        text = f"{type(cause).__name__}: {cause}"
    return text or type(exc).__name__


def fetch_manifest(
    reference: ImageReference,
    *,
    insecure: bool = False,
    timeout: float = 30.0,
    credentials: CredentialSource | None = None,
) -> bytes:
    """The manifest bytes the registry serves for the tag.

    Raises:
        VerificationError: the registry does not serve it; the message names
            the URL and the reference.
    """
    url = reference.manifest_url(insecure)
    client = RegistryClient(
        reference.registry_url(insecure), credentials, timeout=timeout
    )
    try:
        return client.get_manifest(reference.repository, reference.tag).data
    except RegistryAuthError as exc:
        raise VerificationError(f"registry: GET {url} for {reference}: {exc}") from exc
    except RegistryError as exc:
        if exc.status is None:
            raise VerificationError(
                f"registry: GET {url} failed for {reference}: {exc}"
            ) from exc
        codes = f" {'/'.join(exc.codes)}" if exc.codes else ""
        raise VerificationError(
            f"registry: GET {url} answered {exc.status}{codes} for {reference}; "
            "expected 200 with the tag's manifest"
        ) from exc


def verify(
    reference: ImageReference,
    *,
    root: bytes,
    metadata_url: str,
    cache_dir: Path | None = None,
    insecure: bool = False,
    fetcher: FetcherInterface | None = None,
    timeout: float = 30.0,
    root_name: str = "the trusted root",
    credentials: CredentialSource | None = None,
) -> VerifiedManifest:
    """Verify that the registry serves the manifest TUF says the tag has.

    Raises:
        VerificationError: with the reason (expired or rolled-back metadata,
            unknown target, digest or length mismatch, registry error),
            naming the metadata URL or file, the target and, for a
            mismatch, both digests and lengths.
    """
    path = target_path(reference.repository, reference.tag)
    target = trusted_target(
        path,
        root=root,
        metadata_url=metadata_url,
        cache_dir=cache_dir or default_cache_dir(metadata_url),
        fetcher=fetcher,
        root_name=root_name,
    )
    if "sha256" not in target.hashes:
        raise VerificationError(
            f"TUF target {path!r} at {metadata_url}: expected a sha256 hash, got "
            f"{', '.join(sorted(target.hashes)) or 'none'}"
        )
    data = fetch_manifest(
        reference, insecure=insecure, timeout=timeout, credentials=credentials
    )
    served = "sha256:" + hashlib.sha256(data).hexdigest()
    expected = "sha256:" + target.hashes["sha256"]
    if served != expected or len(data) != target.length:
        raise VerificationError(
            f"manifest mismatch for {reference}: the registry serves {served} "
            f"({len(data)} bytes) at {reference.manifest_url(insecure)}, TUF "
            f"target {path!r} at {metadata_url} says {expected} "
            f"({target.length} bytes)"
        )
    try:
        target.verify_length_and_hashes(data)
    except tuf_errors.LengthOrHashMismatchError as exc:
        raise VerificationError(
            f"manifest mismatch for {reference} against TUF target {path!r} at "
            f"{metadata_url}: {exc}"
        ) from exc
    custom = target.custom if isinstance(target.custom, dict) else {}
    return VerifiedManifest(reference, path, served, len(data), dict(custom))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``verify`` on an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "verify",
        help="check that a tag's manifest is the one signed in TUF",
        description="Run the TUF client workflow from a trusted root, then compare "
        "the manifest the registry serves for the tag with the signed target.",
    )
    parser.add_argument("reference", help="HOST/REPOSITORY:TAG")
    parser.add_argument(
        "--root", required=True, type=Path, help="trusted root.json to start from"
    )
    parser.add_argument(
        "--metadata",
        default=os.environ.get("REGSEAL_TUF_METADATA_URL"),
        help="metadata base URL: https://... or s3://bucket/prefix/ "
        "(default $REGSEAL_TUF_METADATA_URL)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="trusted metadata cache (default per URL)"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="use plain HTTP for a registry that is not on loopback",
    )
    parser.add_argument(
        CREDS,
        metavar="USER:PASSWORD",
        help="the account for a registry that requires a login (basic or token "
        "auth); default $REGSEAL_REGISTRY_USERNAME and $REGSEAL_REGISTRY_PASSWORD, "
        "or $REGSEAL_REGISTRY_CREDENTIALS",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``regseal verify``; exit status 0 when verified, 1 otherwise."""
    try:
        if not args.metadata:
            raise VerificationError(
                "no metadata URL: give --metadata or set REGSEAL_TUF_METADATA_URL"
            )
        reference = ImageReference.parse(args.reference)
        try:
            root = Path(args.root).read_bytes()
        except OSError as exc:
            raise VerificationError(
                f"cannot read trusted root {args.root}: {exc.strerror or exc}"
            ) from exc
        result = verify(
            reference,
            root=root,
            metadata_url=args.metadata,
            cache_dir=args.cache_dir,
            insecure=args.insecure,
            root_name=f"trusted root {args.root}",
            credentials=command_line_credentials(args.creds, CREDS),
        )
    except RegsealError as exc:
        print(f"regseal verify: FAILED: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), sort_keys=True))
    else:
        print(f"verified {result.reference} {result.digest} ({result.length} bytes)")
    return 0
