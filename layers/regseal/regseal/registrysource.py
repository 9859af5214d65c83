"""A registry repository as the source of ``regseal decrypt``.

An adapter: :class:`RegistrySource` is :class:`regseal.decrypt.ImageSource`
over :class:`regseal.registryapi.RegistryClient`, which does the HTTP
(``Accept`` list, digest checks, streamed blobs, Basic and Bearer-token
auth). What this module adds is the command line user's view:

- the transport, chosen once with ``GET /v2/`` as skopeo chooses it: plain
  http for loopback hosts (``127.0.0.1``, ``localhost``, ``[::1]``); https
  otherwise, verified unless ``tls_verify`` is False, in which case https is
  tried without certificate checks and then plain http (skopeo's
  ``--src-tls-verify=false``). That first request also tries the
  credentials, so refused ones fail the command before anything is written;
- messages that start with the image reference (``docker://HOST/REPO:TAG``).

Public API: :class:`RegistrySource`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from regseal.digest import Digest
from regseal.errors import IntegrityError, RegistryError, RegistryNotFoundError
from regseal.imageref import RegistryReference
from regseal.registryapi import Manifest, RegistryClient
from regseal.registryauth import CredentialSource

logger = logging.getLogger(__name__)

TIMEOUT = 60.0


class RegistrySource:
    """Reads one repository of a registry through a connected client.

    Use :meth:`connect` to choose the transport and check the credentials.

    Args:
        ref: The image reference (host, repository, tag or digest).
        client: A client of ``ref``'s registry.
    """

    def __init__(self, ref: RegistryReference, client: RegistryClient) -> None:
        self.ref = ref
        self.client = client
        self.name = str(ref)
        self.repository: str | None = ref.repository

    @classmethod
    def connect(
        cls,
        ref: RegistryReference,
        credentials: CredentialSource | None = None,
        *,
        tls_verify: bool | None = None,
        ca_bundle: str | None = None,
        timeout: float = TIMEOUT,
    ) -> RegistrySource:
        """Find the scheme the registry answers on and log in.

        Args:
            ref: The image reference.
            credentials: The account; None for anonymous access.
            tls_verify: None for the default (verified https, plain http on
                loopback); False to skip certificate checks and allow plain
                http; True to require verified https even on loopback.
            ca_bundle: A PEM file of CAs to verify the registry with.
            timeout: Seconds for each connection and read.

        Raises:
            RegistryAuthError: The registry wants an account and none was
                given, or it (or its token service) refused the one given.
            RegistryError: The registry does not answer on any scheme tried.
        """
        if tls_verify is False:
            schemes = ["https", "http"]
        elif ref.is_loopback and tls_verify is None:
            schemes = ["http"]
        else:
            schemes = ["https"]
        failures = []
        for scheme in schemes:
            client = RegistryClient(
                f"{scheme}://{ref.host}",
                credentials,
                ca_bundle=ca_bundle,
                tls_verify=tls_verify is not False,
                timeout=timeout,
            )
            source = cls(ref, client)
            try:
                client.ping()
            except RegistryError as exc:
                if exc.status is not None:
                    raise source._renamed(exc, "GET /v2/") from exc.__cause__
                # No HTTP answer at all (refused, TLS, timeout): next scheme.
                failures.append(f"{scheme}: {exc}")
                continue
            logger.debug("%s answers on %s", ref.host, scheme)
            return source
        raise RegistryError(
            f"{ref}: the registry does not answer ({'; '.join(failures)})"
        )

    def top(self) -> tuple[bytes, Digest]:
        """The manifest or index the reference names, and its digest."""
        found = self._manifest(self.ref.reference)
        return found.data, found.digest

    def manifest(self, digest: Digest) -> bytes:
        """A manifest by digest, checked against it."""
        return self._manifest(digest.value).data

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
            RegistryNotFoundError: The repository has no such blob.
        """
        into = scratch()
        with self._naming(f"blob {digest}"), into.open("wb") as out:
            self.client.fetch_blob(self.ref.repository, digest, size, out, report)
        return into

    def _manifest(self, reference: str) -> Manifest:
        with self._naming(f"manifest {reference}"):
            return self.client.get_manifest(self.ref.repository, reference)

    @contextmanager
    def _naming(self, what: str) -> Iterator[None]:
        """Put the image reference (and for a 404, what is missing) in front."""
        try:
            yield
        except RegistryError as exc:
            raise self._renamed(exc, what) from exc.__cause__
        except IntegrityError as exc:
            raise IntegrityError(f"{self.name}: {exc}") from None

    def _renamed(self, exc: RegistryError, what: str) -> RegistryError:
        if isinstance(exc, RegistryNotFoundError):
            text = f"{self.name}: {what} not found ({exc})"
        else:
            text = f"{self.name}: {exc}"
        return type(exc)(text, status=exc.status, codes=exc.codes)
