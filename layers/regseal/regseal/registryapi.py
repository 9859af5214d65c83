"""A client of the OCI distribution API (the registry's own HTTP API).

Covers what sealing through the API needs, following the OCI distribution
spec (v1.1) and what distribution 2.8 and Harbor 2.x implement:

- manifests: HEAD and GET with an ``Accept`` header naming the OCI and Docker
  manifest and index types (the registry answers with the stored type and
  ``Docker-Content-Digest``), PUT by tag or digest, DELETE by digest;
- blobs: GET streamed into a file with its size and digest checked (a
  redirect to the registry's storage is followed, without the registry's
  ``Authorization``), HEAD, DELETE, and the upload protocol: ``POST /blobs/uploads/``
  opens a session, ``PATCH`` appends a chunk (``Content-Range`` start-end,
  inclusive), ``PUT ?digest=`` closes it. The digest is only needed at the
  end, so a stream whose digest is known after its last byte uploads in
  one pass with bounded memory. A cross-repository mount is one POST;
- listings: tags of a repository and the catalog, following ``Link`` pages.

Errors become :class:`~regseal.errors.RegistryError` subclasses whose
messages name the registry, the repository, the operation and what was
expected, with the distribution error codes of the response body.
Authentication is :class:`~regseal.registryauth.Authenticator`'s job; the
client only hands it the challenges. Requests go through the proxy the
environment names for their URL (:mod:`regseal.httpproxy`: ``HTTPS_PROXY``,
``HTTP_PROXY``, ``NO_PROXY``; loopback always direct), and only blob
downloads follow redirects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import urllib3
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import HTTPError, InsecureRequestWarning

from regseal import manifest as mf
from regseal.digest import Digest
from regseal.errors import (
    DigestError,
    IntegrityError,
    RegistryAuthError,
    RegistryConflictError,
    RegistryError,
    RegistryNotFoundError,
)
from regseal.httpproxy import proxy_for
from regseal.layout import validate_repository, validate_tag
from regseal.registryauth import (
    CATALOG_SCOPE,
    Authenticator,
    CredentialSource,
    TokenReply,
    repository_scope,
)

logger = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join(
    (mf.OCI_MANIFEST, mf.OCI_INDEX, mf.DOCKER_MANIFEST, mf.DOCKER_MANIFEST_LIST)
)
USER_AGENT = "regseal"
PAGE_SIZE = 1000
MAX_ERROR_BODY = 64 * 1024
MAX_LISTING_BODY = 16 * 1024 * 1024
# An authentication round (a challenge, then a retry) happens at most twice per
# request: a fresh token, and a renewed one after a refusal.
MAX_AUTH_ROUNDS = 2
# Blob downloads: chunk size, and how many redirects (registry to storage or a
# CDN) are followed.
READ_CHUNK = 1 << 20
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')
_CONNECTION_RE = re.compile(r"^\w*Connection(?:Pool)?\(host=[^)]*\):\s*")


@dataclass(frozen=True)
class ManifestInfo:
    """What HEAD of a manifest tells: its digest, media type and size."""

    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry serves it."""

    digest: Digest
    media_type: str
    data: bytes


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    challenges: tuple[str, ...]


class RegistryClient:
    """The distribution API of one registry.

    Args:
        base_url: ``http(s)://host[:port]`` of the registry (a path prefix is
            kept: ``https://host/prefix`` serves ``/prefix/v2/``).
        credentials: the account; None for anonymous access.
        ca_bundle: a PEM file to verify the registry's TLS certificate with,
            instead of the system's trust store.
        tls_verify: False to accept any certificate (a registry with a
            self-signed one, as skopeo's ``--tls-verify=false``).
        timeout: seconds to wait for a connection and for each response.
        page_size: entries asked for per page of a listing.
        pool: an urllib3 pool to share for every request (tests); by default
            one per proxy the environment names (none: direct).
        env: where proxy variables are read; by default ``os.environ``.

    Thread-safe: the upload pipeline uploads from one thread while another
    reads.
    """

    def __init__(
        self,
        base_url: str,
        credentials: CredentialSource | None = None,
        *,
        ca_bundle: str | None = None,
        tls_verify: bool = True,
        timeout: float = 120.0,
        page_size: int = PAGE_SIZE,
        pool: urllib3.PoolManager | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise RegistryError(
                f"expected a registry URL http(s)://host[:port], got {base_url!r}"
            )
        self.base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        self.name = parts.netloc
        unverified: dict[str, Any] = {}
        if not tls_verify:
            unverified = {"cert_reqs": "CERT_NONE", "assert_hostname": False}
            # The caller asked for it; urllib3 would warn on every request.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        self._pool_options: dict[str, Any] = {
            "num_pools": 4,
            "maxsize": 8,
            "ca_certs": ca_bundle,
            **unverified,
            "retries": urllib3.Retry(
                total=2, connect=2, read=0, status=0, other=0, redirect=False
            ),
            "timeout": urllib3.Timeout(connect=min(timeout, 15.0), read=timeout),
        }
        self._shared_pool = pool
        self._pools: dict[str | None, urllib3.PoolManager] = {}
        self._env = os.environ if env is None else env
        self.auth = Authenticator(
            self.name, credentials or CredentialSource(env={}), self._fetch_token
        )
        self.page_size = page_size
        self.requests = 0
        self._lock = threading.Lock()

    # -- manifests ---------------------------------------------------------

    def head_manifest(self, repository: str, reference: str) -> ManifestInfo | None:
        """Digest, type and size of a manifest; None when it does not exist."""
        path = self._manifest_path(repository, reference)
        reply = self._request(
            "HEAD",
            path,
            scope=repository_scope(repository, "pull"),
            headers={"Accept": MANIFEST_ACCEPT},
            expect={200, 404},
            what=f"HEAD manifest {reference}",
            repository=repository,
        )
        if reply.status == 404:
            return None
        digest = self._content_digest(reply, f"manifest {reference}", repository)
        return ManifestInfo(
            digest,
            reply.headers.get("Content-Type", "").split(";")[0].strip(),
            int(reply.headers.get("Content-Length", "0") or 0),
        )

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """A manifest's bytes, checked against its digest.

        Raises:
            RegistryNotFoundError: no such manifest.
        """
        path = self._manifest_path(repository, reference)
        reply = self._request(
            "GET",
            path,
            scope=repository_scope(repository, "pull"),
            headers={"Accept": MANIFEST_ACCEPT},
            expect={200},
            what=f"GET manifest {reference}",
            repository=repository,
            limit=mf.MAX_MANIFEST_BYTES,
        )
        digest = Digest.of(reply.body)
        claimed = reply.headers.get("Docker-Content-Digest")
        wanted = reference if reference.startswith("sha256:") else claimed
        if wanted is not None and wanted != digest.value:
            raise RegistryError(
                f"registry {self.name}: manifest {reference} of {repository} "
                f"hashes to {digest}, expected {wanted}"
            )
        media_type = reply.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(digest, media_type, reply.body)

    def put_manifest(
        self, repository: str, reference: str, data: bytes, media_type: str
    ) -> Digest:
        """Push a manifest by tag or by digest; returns the digest it got.

        Raises:
            RegistryError: the registry refused it (``MANIFEST_INVALID``,
                ``MANIFEST_BLOB_UNKNOWN``, an immutable tag in Harbor, ...).
        """
        path = self._manifest_path(repository, reference)
        digest = Digest.of(data)
        reply = self._request(
            "PUT",
            path,
            scope=repository_scope(repository, "pull", "push"),
            headers={"Content-Type": media_type},
            body=data,
            expect={201},
            what=f"PUT manifest {reference} ({digest})",
            repository=repository,
        )
        stored = reply.headers.get("Docker-Content-Digest")
        if stored is not None and stored != digest.value:
            raise RegistryError(
                f"registry {self.name}: stored manifest {reference} of {repository} "
                f"as {stored}, expected {digest}"
            )
        return digest

    def delete_manifest(self, repository: str, digest: Digest) -> bool:
        """Delete a manifest by digest; False when it was already gone.

        Raises:
            RegistryError: deletes are disabled (405), or refused.
        """
        reply = self._request(
            "DELETE",
            self._manifest_path(repository, digest.value),
            scope=repository_scope(repository, "delete"),
            expect={202, 200, 204, 404},
            what=f"DELETE manifest {digest}",
            repository=repository,
        )
        return reply.status != 404

    # -- blobs -------------------------------------------------------------

    def head_blob(self, repository: str, digest: Digest) -> int | None:
        """The size of a blob the repository links; None when it links none."""
        reply = self._request(
            "HEAD",
            self._blob_path(repository, digest),
            scope=repository_scope(repository, "pull"),
            expect={200, 404},
            what=f"HEAD blob {digest}",
            repository=repository,
        )
        if reply.status == 404:
            return None
        return int(reply.headers.get("Content-Length", "0") or 0)

    def fetch_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        into: BinaryIO,
        report: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob into ``into``, checking its size and digest on the way.

        Memory stays at one chunk whatever the blob's size. A redirect (to the
        registry's storage or a CDN) is followed; the registry's
        ``Authorization`` is not sent to another host.

        Args:
            repository: the repository that links the blob.
            digest: the blob's digest.
            size: its size in bytes, from the descriptor.
            into: a binary file the bytes are appended to.
            report: called with the length of every chunk received.

        Raises:
            RegistryNotFoundError: the repository links no such blob.
            IntegrityError: the bytes are longer or shorter than ``size``, or
                do not hash to ``digest``; ``into`` then holds garbage.
        """
        what = f"GET blob {digest}"
        where = f"registry {self.name}: blob {digest} of {repository}"
        response = self._open(
            self._blob_path(repository, digest),
            scope=repository_scope(repository, "pull"),
            what=what,
            repository=repository,
        )
        hasher = hashlib.sha256()
        received = 0
        complete = False
        try:
            for chunk in response.stream(READ_CHUNK):
                received += len(chunk)
                if received > size:
                    raise IntegrityError(f"{where}: expected {size} bytes, got more")
                hasher.update(chunk)
                into.write(chunk)
                if report is not None:
                    report(len(chunk))
            complete = True
        except HTTPError as exc:
            raise RegistryError(
                f"{where}: the download broke off after {received} bytes: "
                f"{_transport_reason(exc)}"
            ) from exc
        finally:
            if not complete:
                # Unread bytes would corrupt the next response on this
                # connection: drop it instead of handing it back.
                response.close()
            response.release_conn()
        if received != size:
            raise IntegrityError(f"{where}: expected {size} bytes, got {received}")
        actual = Digest.from_hash(hasher)
        if actual != digest:
            raise IntegrityError(f"{where}: the bytes hash to {actual}")
        logger.debug("downloaded %s of %s (%d bytes)", digest, repository, size)

    def delete_blob(self, repository: str, digest: Digest) -> bool:
        """Unlink a blob from the repository; False when it was not linked."""
        reply = self._request(
            "DELETE",
            self._blob_path(repository, digest),
            scope=repository_scope(repository, "delete"),
            expect={202, 200, 204, 404},
            what=f"DELETE blob {digest}",
            repository=repository,
        )
        return reply.status != 404

    def start_upload(self, repository: str) -> BlobUpload:
        """Open a blob upload session (``POST /v2/<name>/blobs/uploads/``)."""
        reply = self._request(
            "POST",
            self._repo_path(repository) + "/blobs/uploads/",
            scope=repository_scope(repository, "pull", "push"),
            headers={"Content-Length": "0"},
            body=b"",
            expect={202},
            what="POST blob upload",
            repository=repository,
        )
        return BlobUpload(self, repository, self._location(reply, repository))

    def push_blob(self, repository: str, data: bytes, digest: Digest) -> None:
        """Upload a small blob in one request after opening the session."""
        upload = self.start_upload(repository)
        try:
            upload.complete(digest, data)
        except BaseException:
            upload.cancel()
            raise

    def mount_blob(self, repository: str, digest: Digest, source: str) -> bool:
        """Link a blob of ``source`` into ``repository`` without uploading it.

        Returns:
            True when the registry mounted it (201); False when it opened an
            upload session instead (202), which is cancelled here.
        """
        validate_repository(source)
        query = urlencode({"mount": digest.value, "from": source})
        reply = self._request(
            "POST",
            f"{self._repo_path(repository)}/blobs/uploads/?{query}",
            scope=f"{repository_scope(repository, 'pull', 'push')} "
            f"{repository_scope(source, 'pull')}",
            headers={"Content-Length": "0"},
            body=b"",
            expect={201, 202},
            what=f"mount blob {digest} from {source}",
            repository=repository,
        )
        if reply.status == 201:
            return True
        BlobUpload(self, repository, self._location(reply, repository)).cancel()
        return False

    # -- listings ----------------------------------------------------------

    def tags(self, repository: str) -> list[str]:
        """Every tag of a repository, following pagination.

        Raises:
            RegistryNotFoundError: the repository does not exist.
        """
        found: list[str] = []
        path = f"{self._repo_path(repository)}/tags/list?n={self.page_size}"
        for page in self._pages(path, repository_scope(repository, "pull"), repository):
            found.extend(_string_list(page, "tags", f"tags of {repository}"))
        return found

    def catalog(self) -> list[str]:
        """Every repository the account may see, following pagination."""
        found: list[str] = []
        for page in self._pages(
            f"/v2/_catalog?n={self.page_size}", CATALOG_SCOPE, None
        ):
            found.extend(_string_list(page, "repositories", "catalog"))
        return found

    def ping(self) -> None:
        """Check that the API answers and the credentials are accepted."""
        self._request(
            "GET", "/v2/", scope="", expect={200}, what="GET /v2/", repository=None
        )

    # -- plumbing ----------------------------------------------------------

    def _pages(
        self, path: str, scope: str, repository: str | None
    ) -> Iterator[dict[str, Any]]:
        next_path: str | None = path
        while next_path is not None:
            reply = self._request(
                "GET",
                next_path,
                scope=scope,
                expect={200},
                what=f"GET {urlsplit(next_path).path}",
                repository=repository,
                limit=MAX_LISTING_BODY,
            )
            try:
                doc = json.loads(reply.body)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise RegistryError(
                    f"registry {self.name}: {urlsplit(next_path).path}: expected a "
                    "JSON object"
                )
            yield doc
            match = _LINK_NEXT_RE.search(reply.headers.get("Link", ""))
            next_path = match.group(1) if match else None

    def _repo_path(self, repository: str) -> str:
        return f"/v2/{validate_repository(repository)}"

    def _manifest_path(self, repository: str, reference: str) -> str:
        if reference.startswith("sha256:"):
            Digest.parse(reference)
        else:
            validate_tag(reference)
        return f"{self._repo_path(repository)}/manifests/{reference}"

    def _blob_path(self, repository: str, digest: Digest) -> str:
        return f"{self._repo_path(repository)}/blobs/{digest.value}"

    def url(self, path: str) -> str:
        """An absolute URL for a path (or URL) the registry returned."""
        if path.startswith(("http://", "https://")):
            return path
        base = urlsplit(self.base_url)
        if base.path and not path.startswith(base.path + "/"):
            path = base.path.rstrip("/") + path
        return urljoin(self.base_url, path)

    def _location(self, reply: _Reply, repository: str) -> str:
        location = reply.headers.get("Location")
        if not location:
            raise RegistryError(
                f"registry {self.name}: upload to {repository}: expected a Location "
                f"header with HTTP {reply.status}"
            )
        return self.url(location)

    def _content_digest(self, reply: _Reply, what: str, repository: str) -> Digest:
        value = reply.headers.get("Docker-Content-Digest", "")
        try:
            return Digest.parse(value)
        except DigestError:
            raise RegistryError(
                f"registry {self.name}: {what} of {repository}: expected a sha256 "
                f"Docker-Content-Digest header, got {value!r}"
            ) from None

    def _fetch_token(
        self, realm: str, query: list[tuple[str, str]], authorization: str | None
    ) -> TokenReply:
        parts = urlsplit(realm)
        params = parse_qsl(parts.query, keep_blank_values=True) + query
        url = urlunsplit(
            (
                parts.scheme,
                parts.netloc,
                parts.path,
                urlencode(params, quote_via=quote),
                "",
            )
        )
        headers = {"User-Agent": USER_AGENT}
        if authorization:
            headers["Authorization"] = authorization
        try:
            response = self._pool_for(url).request(
                "GET", url, headers=headers, redirect=False, preload_content=False
            )
        except HTTPError as exc:
            raise RegistryAuthError(
                f"registry {self.name}: token service {realm} is unreachable: {exc}"
            ) from exc
        try:
            body = response.read(MAX_LISTING_BODY)
        finally:
            response.release_conn()
        return TokenReply(response.status, body)

    def _request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        expect: set[int],
        what: str,
        repository: str | None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        limit: int = MAX_ERROR_BODY,
    ) -> _Reply:
        url = self.url(path)
        authorization = self.auth.authorization(scope)
        for round_ in range(MAX_AUTH_ROUNDS + 1):
            sent = {"User-Agent": USER_AGENT, **(headers or {})}
            if authorization is not None:
                sent["Authorization"] = authorization
            reply = self._send(method, url, sent, body, limit, what, repository)
            if reply.status != 401 or round_ == MAX_AUTH_ROUNDS:
                break
            authorization = self.auth.challenged(reply.challenges, scope, authorization)
        if reply.status not in expect:
            raise self._error(reply, what, repository, expect)
        return reply

    def _open(
        self,
        path: str,
        *,
        scope: str,
        what: str,
        repository: str,
    ) -> BaseHTTPResponse:
        """GET with the auth rounds of :meth:`_request`, the body left unread.

        The caller reads the 200 response and releases its connection.
        """
        url = self.url(path)
        authorization = self.auth.authorization(scope)
        for round_ in range(MAX_AUTH_ROUNDS + 1):
            sent = {"User-Agent": USER_AGENT}
            if authorization is not None:
                sent["Authorization"] = authorization
            response = self._start("GET", url, sent, None, what, repository)
            if response.status in _REDIRECTS:
                response = self._follow(response, url, sent, what, repository)
                if response.status != 200:
                    reply = self._finish(response, "GET", MAX_ERROR_BODY, what)
                    raise self._error(reply, f"{what} (redirected)", repository, {200})
            if response.status == 200:
                return response
            reply = self._finish(response, "GET", MAX_ERROR_BODY, what)
            if reply.status != 401 or round_ == MAX_AUTH_ROUNDS:
                raise self._error(reply, what, repository, {200})
            authorization = self.auth.challenged(reply.challenges, scope, authorization)
        raise AssertionError("the loop returns or raises")

    def _follow(
        self,
        response: BaseHTTPResponse,
        url: str,
        headers: dict[str, str],
        what: str,
        repository: str,
    ) -> BaseHTTPResponse:
        """Follow redirects from ``response`` until an answer that is not one."""
        for _ in range(MAX_REDIRECTS):
            location = response.headers.get("Location", "")
            status = response.status
            self._finish(response, "GET", MAX_ERROR_BODY, what)
            target = urljoin(url, location)
            scheme = urlsplit(target).scheme
            if not location or scheme not in {"http", "https"}:
                raise RegistryError(
                    f"registry {self.name}: {what} of {repository}: expected an "
                    f"http(s) Location with HTTP {status}, got {location!r}",
                    status=status,
                )
            if urlsplit(url).scheme == "https" and scheme == "http":
                raise RegistryError(
                    f"registry {self.name}: {what} of {repository}: refused a "
                    "redirect from https to plain http",
                    status=status,
                )
            if urlsplit(target).netloc != urlsplit(url).netloc:
                # Storage signs its own URLs; the registry's token is not its.
                headers = {k: v for k, v in headers.items() if k != "Authorization"}
            url = target
            response = self._start("GET", url, headers, None, what, repository)
            if response.status not in _REDIRECTS:
                return response
        self._finish(response, "GET", MAX_ERROR_BODY, what)
        raise RegistryError(
            f"registry {self.name}: {what} of {repository}: expected at most "
            f"{MAX_REDIRECTS} redirects"
        )

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        limit: int,
        what: str,
        repository: str | None,
    ) -> _Reply:
        response = self._start(method, url, headers, body, what, repository)
        return self._finish(response, method, limit, what)

    def _pool_for(self, url: str) -> urllib3.PoolManager:
        """The connection pool for ``url``: direct, or through its proxy."""
        if self._shared_pool is not None:
            return self._shared_pool
        proxy = proxy_for(url, self._env)
        with self._lock:
            pool = self._pools.get(proxy)
            if pool is None:
                if proxy is None:
                    pool = urllib3.PoolManager(**self._pool_options)
                else:
                    where = urlsplit(proxy)  # never log a proxy's password
                    logger.debug(
                        "registry %s through proxy %s:%s",
                        self.name,
                        where.hostname,
                        where.port,
                    )
                    pool = urllib3.ProxyManager(proxy, **self._pool_options)
                self._pools[proxy] = pool
            return pool

    def _start(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        what: str,
        repository: str | None,
    ) -> BaseHTTPResponse:
        with self._lock:
            self.requests += 1
        logger.debug("%s %s", method, urlsplit(url).path)
        try:
            return self._pool_for(url).request(
                method,
                url,
                body=body,
                headers=headers,
                redirect=False,
                preload_content=False,
            )
        except HTTPError as exc:
            where = f" of {repository}" if repository else ""
            raise RegistryError(
                f"registry {self.name}: {what}{where} failed: {_transport_reason(exc)}"
            ) from exc

    def _finish(
        self, response: BaseHTTPResponse, method: str, limit: int, what: str
    ) -> _Reply:
        """Read the body (at most ``limit`` bytes) and release the connection."""
        data = b""
        try:
            data = b"" if method == "HEAD" else response.read(limit + 1)
        finally:
            if len(data) > limit:
                # The rest of the body is still on the wire: a pooled
                # connection would hand it to the next request as its answer.
                response.close()
            response.release_conn()
        if len(data) > limit:
            raise RegistryError(
                f"registry {self.name}: {what}: expected at most {limit} bytes in "
                "the response"
            )
        return _Reply(
            response.status,
            response.headers,
            data,
            tuple(response.headers.getlist("WWW-Authenticate")),
        )

    def _error(
        self, reply: _Reply, what: str, repository: str | None, expect: set[int]
    ) -> RegistryError:
        codes, message = _error_body(reply.body)
        where = f" of {repository}" if repository else ""
        shown = f" {'/'.join(codes)}" if codes else ""
        detail = f": {message}" if message else ""
        expected = " or ".join(str(s) for s in sorted(expect))
        text = (
            f"registry {self.name}: {what}{where}: expected HTTP {expected}, got "
            f"{reply.status}{shown}{detail}"
        )
        if reply.status in {401, 403}:
            return RegistryAuthError(text, status=reply.status, codes=codes)
        if reply.status == 404:
            return RegistryNotFoundError(text, status=reply.status, codes=codes)
        if reply.status in {409, 412} or "DENIED" in codes:
            return RegistryConflictError(text, status=reply.status, codes=codes)
        return RegistryError(text, status=reply.status, codes=codes)


class BlobUpload:
    """One open upload session; chunks must be written in order.

    Each response names the session's next URL (``Location``), which the
    next request must use: distribution keeps the upload state in it.
    """

    def __init__(self, client: RegistryClient, repository: str, location: str) -> None:
        self.client = client
        self.repository = repository
        self.location = location
        self.offset = 0
        self.chunks = 0

    def write_chunk(self, data: bytes) -> None:
        """Append ``data`` with ``PATCH`` and a ``Content-Range``."""
        size = len(data)
        if size == 0:
            return
        end = self.offset + size - 1
        reply = self.client._request(
            "PATCH",
            self.location,
            scope=repository_scope(self.repository, "pull", "push"),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{self.offset}-{end}",
                "Content-Length": str(size),
            },
            body=data,
            expect={202},
            what=f"PATCH blob upload bytes {self.offset}-{end}",
            repository=self.repository,
        )
        self._check_range(reply, end)
        self.location = self.client._location(reply, self.repository)
        self.offset += size
        self.chunks += 1

    def complete(self, digest: Digest, data: bytes = b"") -> None:
        """Close the session with ``PUT ?digest=``, sending ``data`` last."""
        parts = urlsplit(self.location)
        query = parse_qsl(parts.query, keep_blank_values=True)
        query.append(("digest", digest.value))
        url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment)
        )
        reply = self.client._request(
            "PUT",
            url,
            scope=repository_scope(self.repository, "pull", "push"),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(data)),
            },
            body=data,
            expect={201},
            what=f"PUT blob {digest} ({self.offset + len(data)} bytes)",
            repository=self.repository,
        )
        stored = reply.headers.get("Docker-Content-Digest")
        if stored is not None and stored != digest.value:
            raise RegistryError(
                f"registry {self.client.name}: stored blob of {self.repository} as "
                f"{stored}, expected {digest}"
            )
        self.offset += len(data)

    def cancel(self) -> None:
        """Abandon the session (best effort: the registry purges old uploads)."""
        try:
            self.client._request(
                "DELETE",
                self.location,
                scope=repository_scope(self.repository, "pull", "push"),
                expect={204, 200, 202, 404},
                what="DELETE blob upload",
                repository=self.repository,
            )
        except RegistryError:
            logger.debug("cancelling an upload to %s failed", self.repository)

    def _check_range(self, reply: _Reply, end: int) -> None:
        # distribution answers "0-<last byte>"; a registry that lost bytes
        # (or holds more) would turn the blob's digest wrong at the end.
        value = reply.headers.get("Range", "")
        if not value:
            return
        match = re.fullmatch(r"(?:bytes=)?0-(\d+)", value.strip())
        if match is None or int(match.group(1)) != end:
            raise RegistryError(
                f"registry {self.client.name}: upload to {self.repository}: expected "
                f"Range 0-{end} after the chunk, got {value!r}"
            )


def _transport_reason(exc: HTTPError) -> str:
    """What went wrong below HTTP (refused, TLS, timeout), without the URL."""
    cause = getattr(exc, "reason", None) or exc
    # urllib3 starts with the connection's repr; the message names the host.
    text = _CONNECTION_RE.sub("", str(cause)).strip()
    return f"{type(cause).__name__}: {text}"[:300] if text else type(cause).__name__


def _error_body(body: bytes) -> tuple[tuple[str, ...], str]:
    """Distribution's ``{"errors": [{"code", "message", "detail"}]}`` parts."""
    try:
        doc = json.loads(body)
    except ValueError:
        return (), ""
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list):
        return (), ""
    codes = []
    messages = []
    for item in doc["errors"]:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("code"), str):
            codes.append(item["code"])
        if isinstance(item.get("message"), str) and item["message"]:
            messages.append(item["message"])
    return tuple(codes), "; ".join(messages)[:500]


def _string_list(doc: Mapping[str, Any], member: str, what: str) -> list[str]:
    value = doc.get(member)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RegistryError(f"{what}: expected {member!r} to be a list of strings")
    return list(value)
