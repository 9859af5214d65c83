"""A distribution API in front of :class:`FakeRegistry`, for functional tests.

Serves the subset of the OCI distribution API that regseal's client uses, on
a loopback port, storing everything the way the registry does (through
:class:`FakeRegistry`, so the seal's storage reads see what a real registry
would have written). It checks what distribution checks where regseal could
get it wrong: ``Content-Range`` continuity of chunks, the final digest,
manifests whose blobs are not linked in the repository, and the scope of
every request (pull, push, delete) under basic or bearer auth.

Tests steer it through ``hooks`` (called before a request is handled, to
simulate a concurrent push) and read ``log`` (method, path, headers).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from regseal import manifest as mf
from regseal.digest import Digest
from regseal.errors import DigestError
from regseal.layout import decode_link
from tests.support.registry import FakeRegistry

USERNAME = "testing"
PASSWORD = "testing"
SERVICE = "fake-registry"

_MANIFEST_RE = re.compile(r"/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)")
_UPLOAD_RE = re.compile(r"/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[^/]*)")
_BLOB_RE = re.compile(r"/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})")
_TAGS_RE = re.compile(r"/v2/(?P<repo>.+)/tags/list")


@dataclass
class Logged:
    method: str
    path: str
    headers: dict[str, str]
    body_size: int


@dataclass
class _Grant:
    access: set[str]
    expires: float


@dataclass
class FakeRegistryApi:
    """The API; ``with FakeRegistryApi(registry, auth="bearer") as api: ...``.

    Attributes:
        auth: ``none``, ``basic`` or ``bearer``.
        token_seconds: lifetime of issued tokens (bearer).
        page_size: default page size of tags and catalog listings.
        hooks: ``"METHOD kind"`` (kinds: manifest, upload, blob, tags) to a
            callable of (repository, reference) run before the request;
            ``"after METHOD kind"`` runs after it was handled.
        extra_tags: tags only the API knows, not storage ((repository, tag)
            to digest), as Harbor keeps tags in its database.
        tags_in_database: behave as Harbor 2.15 and later: a push by tag is
            stored as a push by digest (a revision link, no tag link) and the
            tag is kept in ``extra_tags`` only.
    """

    registry: FakeRegistry
    auth: str = "none"
    token_seconds: int = 60
    page_size: int = 100
    hooks: dict[str, Callable[[str, str], None]] = field(default_factory=dict)
    extra_tags: dict[tuple[str, str], Digest] = field(default_factory=dict)
    tags_in_database: bool = False
    log: list[Logged] = field(default_factory=list)
    tokens_issued: int = 0

    def __post_init__(self) -> None:
        self._uploads: dict[str, bytearray] = {}
        self._states: dict[str, str] = {}
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def name(self) -> str:
        return self.url.removeprefix("http://")

    def __enter__(self) -> FakeRegistryApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests(self, method: str, kind: str = "") -> list[Logged]:
        return [r for r in self.log if r.method == method and kind in r.path]

    def expire_tokens(self) -> None:
        with self._lock:
            for grant in self._grants.values():
                grant.expires = 0.0

    # -- auth --------------------------------------------------------------

    def authorize(self, headers: dict[str, str], needed: list[str]) -> str | None:
        """None when allowed, else the ``WWW-Authenticate`` challenge."""
        if self.auth == "none":
            return None
        value = headers.get("authorization", "")
        if self.auth == "basic":
            if value == _basic(USERNAME, PASSWORD):
                return None
            return 'Basic realm="fake"'
        scheme, _, token = value.partition(" ")
        with self._lock:
            grant = self._grants.get(token) if scheme.lower() == "bearer" else None
        error = ""
        if grant is not None:
            if grant.expires < time.time():
                error = ',error="invalid_token"'
            elif all(a in grant.access for a in needed):
                return None
            else:
                error = ',error="insufficient_scope"'
        scope = _scope_param(needed)
        return (
            f'Bearer realm="{self.url}/token",service="{SERVICE}"'
            + (f',scope="{scope}"' if scope else "")
            + error
        )

    def issue_token(self, headers: dict[str, str], query: dict[str, list[str]]):
        if headers.get("authorization", "") != _basic(USERNAME, PASSWORD):
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad login"}]}
        if query.get("service") != [SERVICE]:
            return 400, {"errors": [{"code": "UNSUPPORTED", "message": "service"}]}
        access = set()
        for scope in query.get("scope", []):
            for item in scope.split():
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                access.update(f"{kind}:{name}:{a}" for a in actions.split(","))
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._grants[token] = _Grant(access, time.time() + self.token_seconds)
            self.tokens_issued += 1
        return 200, {"token": token, "expires_in": self.token_seconds}

    # -- the API -----------------------------------------------------------

    def handle(self, method, path, query, headers, body):
        if path == "/token":
            status, doc = self.issue_token(headers, query)
            return status, {}, json.dumps(doc).encode()
        repo_match = next(
            (
                (kind, m)
                for kind, regex in (
                    ("manifest", _MANIFEST_RE),
                    ("upload", _UPLOAD_RE),
                    ("blob", _BLOB_RE),
                    ("tags", _TAGS_RE),
                )
                if (m := regex.fullmatch(path))
            ),
            None,
        )
        if path == "/v2/":
            needed = []
        elif path == "/v2/_catalog":
            needed = ["registry:catalog:*"]
        elif repo_match is not None:
            repo = repo_match[1]["repo"]
            needed = _needed(method, repo)
            if method == "POST" and query.get("from"):
                needed.append(f"repository:{query['from'][0]}:pull")
        else:
            return _error(404, "NOT_FOUND", "no route")
        challenge = self.authorize(headers, needed)
        if challenge is not None:
            status, extra, data = _error(401, "UNAUTHORIZED", "authentication required")
            return status, {**extra, "WWW-Authenticate": challenge}, data
        if path == "/v2/":
            return 200, {}, b"{}"
        if path == "/v2/_catalog":
            return self._catalog(query)
        kind, match = repo_match
        reference = match.groupdict().get("ref") or ""
        hook = self.hooks.get(f"{method} {kind}")
        if hook is not None:
            hook(match["repo"], reference)
        if kind == "manifest":
            reply = self._manifest(method, match["repo"], match["ref"], headers, body)
        elif kind == "upload":
            reply = self._upload(
                method, match["repo"], match["id"], query, headers, body
            )
        elif kind == "blob":
            reply = self._blob(method, match["repo"], Digest.parse(match["digest"]))
        else:
            reply = self._tags(match["repo"], query)
        after = self.hooks.get(f"after {method} {kind}")
        if after is not None:
            after(match["repo"], reference)
        return reply

    def _resolve(self, repo: str, ref: str) -> Digest | None:
        store, layout = self.registry.store, self.registry.layout
        try:
            if ref.startswith("sha256:"):
                digest = Digest.parse(ref)
                if not store.exists(layout.revision_link(repo, digest)):
                    return None
                return digest
            if (repo, ref) in self.extra_tags:
                return self.extra_tags[repo, ref]
            key = layout.tag_link(repo, ref)
            return decode_link(store.get(key).data, key)
        except Exception:
            return None

    def _manifest(self, method, repo, ref, headers, body):
        store, layout = self.registry.store, self.registry.layout
        if method in {"GET", "HEAD"}:
            digest = self._resolve(repo, ref)
            if digest is None:
                return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            data = store.get(layout.blob_data(digest)).data
            media_type = json.loads(data).get("mediaType", mf.OCI_MANIFEST)
            return (
                200,
                {"Content-Type": media_type, "Docker-Content-Digest": digest.value},
                data,
            )
        if method == "PUT":
            digest = Digest.of(body)
            if ref.startswith("sha256:") and ref != digest.value:
                return _error(400, "DIGEST_INVALID", "digest does not match")
            doc = json.loads(body)
            for child in doc.get("manifests", []):
                if self._resolve(repo, child["digest"]) is None:
                    return _error(400, "MANIFEST_BLOB_UNKNOWN", child["digest"])
            for blob in [doc.get("config"), *doc.get("layers", [])]:
                if blob and not store.exists(
                    layout.layer_link(repo, Digest.parse(blob["digest"]))
                ):
                    return _error(400, "MANIFEST_BLOB_UNKNOWN", blob["digest"])
            tag = None if ref.startswith("sha256:") else ref
            if tag is not None and self.tags_in_database:
                self.registry.put_manifest(repo, body, None)
            else:
                self.registry.put_manifest(repo, body, tag)
            if tag is not None and (
                self.tags_in_database or (repo, tag) in self.extra_tags
            ):
                self.extra_tags[repo, tag] = digest
            return 201, {"Docker-Content-Digest": digest.value}, b""
        if method == "DELETE":
            digest = self._resolve(repo, ref)
            if not ref.startswith("sha256:"):
                return _error(400, "UNSUPPORTED", "delete by tag")
            if digest is None:
                return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            store.delete(layout.revision_link(repo, digest))
            # As Harbor deletes an artifact with its tags.
            for key in [k for k, d in self.extra_tags.items() if k[0] == repo]:
                if self.extra_tags[key] == digest:
                    del self.extra_tags[key]
            # As distribution does: tags pointing at it go with it.
            for tag in list(store.list_children(layout.tags_prefix(repo))):
                if self._resolve(repo, tag) == digest:
                    for key in list(
                        store.list_keys(f"{layout.tags_prefix(repo)}{tag}/")
                    ):
                        store.delete(key)
            return 202, {}, b""
        return _error(405, "UNSUPPORTED", method)

    def _upload(self, method, repo, upload_id, query, headers, body):
        location = f"/v2/{repo}/blobs/uploads/"
        if method == "POST":
            if query.get("mount") and query.get("from"):
                digest = Digest.parse(query["mount"][0])
                source = query["from"][0]
                layout = self.registry.layout
                if self.registry.store.exists(layout.layer_link(source, digest)):
                    self.registry.store.put(
                        layout.layer_link(repo, digest), digest.value.encode()
                    )
                    return 201, {"Docker-Content-Digest": digest.value}, b""
            new = str(uuid.uuid4())
            with self._lock:
                self._uploads[new] = bytearray()
            return 202, self._session(location, new, 0), b""
        with self._lock:
            data = self._uploads.get(upload_id)
            state = self._states.get(upload_id)
        if data is None:
            return _error(404, "BLOB_UPLOAD_UNKNOWN", upload_id)
        # As distribution, which keeps the offset in the signed _state: a
        # request must use the Location of the previous answer.
        if method != "DELETE" and query.get("_state") != [state]:
            return _error(400, "BLOB_UPLOAD_INVALID", "stale upload state")
        if method == "PATCH":
            crange = headers.get("content-range")
            if crange is not None:
                start, _, end = crange.partition("-")
                if int(start) != len(data) or int(end) != len(data) + len(body) - 1:
                    return _error(416, "BLOB_UPLOAD_INVALID", f"range {crange}")
            data.extend(body)
            return 202, self._session(location, upload_id, len(data)), b""
        if method == "PUT":
            data.extend(body)
            try:
                wanted = Digest.parse(query.get("digest", [""])[0])
            except DigestError:
                return _error(400, "DIGEST_INVALID", "digest missing")
            if Digest.of(bytes(data)) != wanted:
                return _error(400, "DIGEST_INVALID", "digest does not match")
            self.registry.put_blob(repo, bytes(data))
            with self._lock:
                del self._uploads[upload_id]
            return 201, {"Docker-Content-Digest": wanted.value}, b""
        if method == "DELETE":
            with self._lock:
                self._uploads.pop(upload_id, None)
            return 204, {}, b""
        return _error(405, "UNSUPPORTED", method)

    def _session(self, location, upload_id, size):
        state = secrets.token_hex(4)
        with self._lock:
            self._states[upload_id] = state
        return {
            "Location": f"{location}{upload_id}?_state={state}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
        }

    def _blob(self, method, repo, digest):
        store, layout = self.registry.store, self.registry.layout
        link = layout.layer_link(repo, digest)
        if not store.exists(link):
            return _error(404, "BLOB_UNKNOWN", digest.value)
        if method == "HEAD":
            size = store.head(layout.blob_data(digest)).size
            return 200, {"Content-Length-Override": str(size)}, b""
        if method == "DELETE":
            store.delete(link)
            return 202, {}, b""
        return _error(405, "UNSUPPORTED", method)

    def _tags(self, repo, query):
        layout = self.registry.layout
        tags = sorted(
            set(self.registry.store.list_children(layout.tags_prefix(repo)))
            | {tag for (r, tag) in self.extra_tags if r == repo}
        )
        if not tags and not list(
            self.registry.store.list_keys(layout.repository(repo))
        ):
            return _error(404, "NAME_UNKNOWN", repo)
        page, link = _paginate(tags, query, f"/v2/{repo}/tags/list", self.page_size)
        return 200, link, json.dumps({"name": repo, "tags": page}).encode()

    def _catalog(self, query):
        prefix = self.registry.layout.repositories_prefix
        repos = sorted(
            {
                key[len(prefix) :].split("/_", 1)[0]
                for key in self.registry.store.list_keys(prefix)
                if "/_manifests/" in key
            }
        )
        page, link = _paginate(repos, query, "/v2/_catalog", self.page_size)
        return 200, link, json.dumps({"repositories": page}).encode()


def _paginate(items, query, path, default):
    n = int(query.get("n", [default])[0])
    last = query.get("last", [""])[0]
    rest = [i for i in items if i > last] if last else items
    page = rest[:n]
    if len(rest) > n:
        return page, {
            "Link": f'<{path}?{urlencode({"last": page[-1], "n": n})}>; rel="next"'
        }
    return page, {}


def _needed(method, repo):
    if method in {"GET", "HEAD"}:
        return [f"repository:{repo}:pull"]
    if method == "DELETE":
        return [f"repository:{repo}:delete"]
    return [f"repository:{repo}:pull", f"repository:{repo}:push"]


def _scope_param(needed):
    by_resource: dict[str, list[str]] = {}
    for item in needed:
        resource, _, action = item.rpartition(":")
        by_resource.setdefault(resource, []).append(action)
    return " ".join(f"{r}:{','.join(a)}" for r, a in by_resource.items())


def _basic(username, password):
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _error(status, code, message):
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return status, {"Content-Type": "application/json"}, body


def _handler(api: FakeRegistryApi):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self):
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length", "0") or 0)
            body = self.rfile.read(length) if length else b""
            api.log.append(
                Logged(self.command, self.path, dict(self.headers.items()), len(body))
            )
            status, extra, data = api.handle(
                self.command, parts.path, parse_qs(parts.query), headers, body
            )
            self.send_response(status)
            size = extra.pop("Content-Length-Override", None)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", size or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, format, *args):
            pass

    return Handler
