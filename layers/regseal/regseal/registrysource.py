"""A small client of the distribution registry HTTP API (OCI distribution spec).

It reads what ``regseal decrypt`` needs: manifests by tag or digest (with
``Accept`` headers for the OCI and Docker schema2 manifest and index types)
and blobs by digest, streamed and checked against their digest and size.

Transport: plain http for loopback hosts (``127.0.0.1``, ``localhost``,
``[::1]``); https otherwise, verified unless ``tls_verify`` is False, in
which case https is tried without certificate checks and, if that fails,
plain http, as skopeo's ``--src-tls-verify=false`` does. Proxies come from the usual
environment variables (``urllib``).

NOTE: registries that require a login (bearer token or basic auth) answer
401; the client reports that and stops. Token auth is not implemented yet.

Public API: :data:`MANIFEST_ACCEPT`, :class:`RegistrySource`.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from http.client import HTTPResponse
from pathlib import Path

from regseal.digest import Digest
from regseal.errors import IntegrityError, NotFoundError, RegistryError
from regseal.imageref import RegistryReference
from regseal.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
)

logger = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join(
    (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
)
READ_CHUNK = 1 << 20
TIMEOUT = 60.0


class RegistrySource:
    """Reads one repository of a registry.

    Args:
        ref: The image reference (host, repository, tag or digest).
        tls_verify: None for the default (verified https, plain http on
            loopback); False to skip certificate checks and allow plain
            http; True to require verified https even on loopback.
        timeout: Seconds for each connection and read.
    """

    def __init__(
        self,
        ref: RegistryReference,
        *,
        tls_verify: bool | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.ref = ref
        self.name = str(ref)
        self.repository: str | None = ref.repository
        self._timeout = timeout
        self._tls_verify = tls_verify
        self._context: ssl.SSLContext | None = None
        if tls_verify is False:
            self._context = ssl.create_default_context()
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE
        self._base: str | None = None

    # -- transport ---------------------------------------------------------

    def _open(self, url: str, accept: str | None = None) -> HTTPResponse:
        request = urllib.request.Request(url)  # noqa: S310 (http(s) URLs only)
        if accept:
            request.add_header("Accept", accept)
        response: HTTPResponse = urllib.request.urlopen(  # noqa: S310
            request, timeout=self._timeout, context=self._context
        )
        return response

    def _base_url(self) -> str:
        """Find the scheme the registry answers on with a ``GET /v2/``."""
        if self._base is not None:
            return self._base
        if self._tls_verify is False:
            schemes = ["https", "http"]
        elif self.ref.is_loopback and self._tls_verify is None:
            schemes = ["http"]
        else:
            schemes = ["https"]
        failures = []
        for scheme in schemes:
            base = f"{scheme}://{self.ref.host}/v2/"
            try:
                with self._open(base):
                    pass
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    raise RegistryError(
                        f"{self.name}: the registry requires authentication "
                        f"({exc.headers.get('WWW-Authenticate', 'no challenge')}); "
                        "regseal decrypt does not log in to registries yet"
                    ) from None
                raise RegistryError(
                    f"{self.name}: expected HTTP 200 from {base}, got {exc.code}"
                ) from None
            except (urllib.error.URLError, OSError) as exc:
                failures.append(f"{base}: {getattr(exc, 'reason', exc)}")
                continue
            self._base = base
            return base
        raise RegistryError(
            f"{self.name}: the registry does not answer ({'; '.join(failures)})"
        )

    def _get(self, path: str, what: str, accept: str | None = None) -> HTTPResponse:
        url = f"{self._base_url()}{self.ref.repository}/{path}"
        try:
            return self._open(url, accept)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFoundError(f"{self.name}: {what} not found") from None
            if exc.code == 401:
                raise RegistryError(
                    f"{self.name}: {what}: the registry requires authentication"
                ) from None
            raise RegistryError(
                f"{self.name}: {what}: expected HTTP 200, got {exc.code}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryError(
                f"{self.name}: {what}: {getattr(exc, 'reason', exc)}"
            ) from None

    # -- manifests ---------------------------------------------------------

    def _manifest(self, reference: str) -> tuple[bytes, Digest]:
        what = f"manifest {reference}"
        with self._get(f"manifests/{reference}", what, MANIFEST_ACCEPT) as response:
            data = response.read(MAX_MANIFEST_BYTES + 1)
            header = response.headers.get("Docker-Content-Digest")
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(
                f"{self.name}: {what} is larger than {MAX_MANIFEST_BYTES} bytes"
            )
        digest = Digest.of(data)
        if header and header != digest.value:
            raise IntegrityError(
                f"{self.name}: {what} hashes to {digest}, the registry says {header}"
            )
        return data, digest

    def top(self) -> tuple[bytes, Digest]:
        """The manifest or index the reference names, and its digest."""
        data, digest = self._manifest(self.ref.reference)
        if self.ref.digest is not None and digest != self.ref.digest:
            raise IntegrityError(
                f"{self.name}: the manifest hashes to {digest}, not the digest "
                "asked for"
            )
        return data, digest

    def manifest(self, digest: Digest) -> bytes:
        """A manifest by digest, checked against it."""
        data, actual = self._manifest(digest.value)
        if actual != digest:
            raise IntegrityError(f"{self.name}: manifest {digest} hashes to {actual}")
        return data

    # -- blobs -------------------------------------------------------------

    def fetch(
        self,
        digest: Digest,
        size: int,
        scratch: Callable[[], Path],
        report: Callable[[int], None],
    ) -> Path:
        """Download a blob into a file from ``scratch``; returns its path.

        ``report`` is called with the size of every chunk received.

        Raises:
            IntegrityError: The bytes are not ``size`` long or do not hash to
                ``digest``.
        """
        into = scratch()
        hasher = hashlib.sha256()
        received = 0
        with (
            self._get(f"blobs/{digest}", f"blob {digest}") as response,
            into.open("wb") as out,
        ):
            while chunk := response.read(READ_CHUNK):
                received += len(chunk)
                if received > size:
                    raise IntegrityError(
                        f"{self.name}: blob {digest} is longer than its {size} bytes"
                    )
                hasher.update(chunk)
                out.write(chunk)
                report(len(chunk))
        if received != size or Digest.from_hash(hasher) != digest:
            raise IntegrityError(
                f"{self.name}: blob {digest} does not match its descriptor"
            )
        logger.debug("downloaded %s (%d bytes)", digest, size)
        return into
