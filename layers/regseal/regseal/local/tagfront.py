"""A front on the local registry that keeps tags to itself, as Harbor 2.15 does.

Harbor 2.15 and later (goharbor/harbor#22507, ``putManifest`` in
``src/server/registry/manifest.go``) hand a push by tag to distribution as a
push by digest and record the tag in their own database, so storage gets a
revision link and never a tag link, and only revision events reach regseal
(docs/harbor.md). This front plays that part for the local stack
(``regseal local up --write-back api --tags-in-database``). Clients and the
seal talk to it; it forwards every request to the registry unchanged, with
the client's credentials, except:

- ``PUT /v2/<name>/manifests/<tag>`` goes on as a PUT by the digest of the
  body; once the registry took it, the front remembers the tag;
- ``GET`` and ``HEAD /v2/<name>/manifests/<tag>`` go on by the remembered
  digest;
- ``GET /v2/<name>/tags/list`` is answered from the front's tags, once the
  registry allowed the request;
- after a ``DELETE /v2/<name>/manifests/<digest>`` the registry accepted,
  the tags naming the digest go with it, as Harbor deletes an artifact with
  its tags.

The tags live in memory for as long as the stack runs. Plain http on a
loopback port, for the local stack and tests only.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from regseal.local.loopback import LoopbackServer

logger = logging.getLogger(__name__)

_MANIFEST = re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)")
_TAGS = re.compile(r"/v2/(?P<name>.+)/tags/list")
# Headers that belong to one connection, not to the request or response.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
UPSTREAM_TIMEOUT = 120.0

Headers = Sequence[tuple[str, str]]
"""Header fields in order; a name may repeat (clients send several Accept)."""


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, headers (in order) and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class TagFront:
    """The front, on a free loopback port, served from a thread.

    Args:
        registry: ``host:port`` of the registry it fronts (plain http).
    """

    def __init__(self, registry: str) -> None:
        self.registry = registry
        self._tags: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._handler_class(), "regseal-tag-front")

    @property
    def address(self) -> str:
        """``host:port`` that clients use as the registry."""
        return self._server.address

    def start(self) -> None:
        self._server.start()
        logger.debug("tag front at %s for %s", self.address, self.registry)

    def stop(self) -> None:
        self._server.stop()

    def is_alive(self) -> bool:
        return self._server.is_alive()

    def tags(self, name: str) -> dict[str, str]:
        """The tags of repository ``name`` and the digests they name."""
        with self._lock:
            return {tag: d for (repo, tag), d in self._tags.items() if repo == name}

    # -- requests ----------------------------------------------------------

    def handle(self, method: str, target: str, headers: Headers, body: bytes) -> Reply:
        """Answer one request (``target`` is the path with its query)."""
        parts = urlsplit(target)
        manifest = _MANIFEST.fullmatch(parts.path)
        if manifest is not None:
            name, reference = manifest["name"], manifest["reference"]
            if not reference.startswith("sha256:"):
                return self._by_tag(method, name, reference, parts.query, headers, body)
            reply = self._forward(method, target, headers, body)
            if method == "DELETE" and reply.status == 202:
                self._forget_digest(name, reference)
            return reply
        listing = _TAGS.fullmatch(parts.path)
        if listing is not None and method == "GET":
            reply = self._forward(method, target, headers, body)
            if reply.status in (401, 403):
                return reply
            return _tags_list(listing["name"], sorted(self.tags(listing["name"])))
        return self._forward(method, target, headers, body)

    def _by_tag(
        self,
        method: str,
        name: str,
        tag: str,
        query: str,
        headers: Headers,
        body: bytes,
    ) -> Reply:
        if method == "PUT":
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            reply = self._forward(
                method, _manifest_path(name, digest, query), headers, body
            )
            if reply.status == 201:
                with self._lock:
                    self._tags[name, tag] = digest
                logger.debug("tag front: %s:%s -> %s", name, tag, digest)
            return reply
        with self._lock:
            digest_or_none = self._tags.get((name, tag))
        if method in ("GET", "HEAD") and digest_or_none is not None:
            path = _manifest_path(name, digest_or_none, query)
            return self._forward(method, path, headers, body)
        # An unknown tag: the registry has no tag link for it and says so,
        # after checking the credentials.
        return self._forward(method, _manifest_path(name, tag, query), headers, body)

    def _forget_digest(self, name: str, digest: str) -> None:
        with self._lock:
            for key in [k for k, d in self._tags.items() if k[0] == name]:
                if self._tags[key] == digest:
                    del self._tags[key]

    def _forward(
        self, method: str, target: str, headers: Headers, body: bytes
    ) -> Reply:
        connection = http.client.HTTPConnection(self.registry, timeout=UPSTREAM_TIMEOUT)
        try:
            # Host stays the front's, so the registry's Location headers name it.
            connection.putrequest(
                method, target, skip_host=True, skip_accept_encoding=True
            )
            for key, value in headers:
                if key.lower() not in _HOP_BY_HOP:
                    connection.putheader(key, value)
            if body or method in ("PUT", "POST", "PATCH"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            data = response.read()
            kept = tuple(
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in _HOP_BY_HOP
                or (method == "HEAD" and k.lower() == "content-length")
            )
            return Reply(response.status, kept, data)
        except OSError as exc:
            message = f"tag front: registry {self.registry} did not answer: {exc}"
            return _error(502, "UNAVAILABLE", message)
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                reply = front.handle(
                    self.command, self.path, self.headers.items(), self._body()
                )
                self.send_response(reply.status)
                for key, value in reply.headers:
                    self.send_header(key, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    return _read_chunked(self.rfile)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("tag front: %s", format % args)

        return Handler


def _manifest_path(name: str, reference: str, query: str) -> str:
    return f"/v2/{name}/manifests/{reference}" + (f"?{query}" if query else "")


def _tags_list(name: str, tags: list[str]) -> Reply:
    if not tags:
        return _error(404, "NAME_UNKNOWN", f"repository {name} has no tags")
    body = json.dumps({"name": name, "tags": tags}).encode()
    return Reply(200, (("Content-Type", "application/json"),), body)


def _error(status: int, code: str, message: str) -> Reply:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return Reply(status, (("Content-Type", "application/json"),), body)


def _read_chunked(stream: Any) -> bytes:
    """A request body sent with ``Transfer-Encoding: chunked`` (RFC 9112 §7.1)."""
    data = bytearray()
    while True:
        size_line = stream.readline(1024)
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields
            return bytes(data)
        data += stream.read(size)
        stream.readline(1024)  # the CRLF after the chunk
