"""The registry client's transport: oversize answers, and proxies.

The registry may send a body far larger than regseal accepts (a hostile or
broken manifest). The client stops reading at its limit; the rest of that
body must not stay on a pooled connection, where it would be read as the
answer to the next request on the same keep-alive connection.

Behind a corporate proxy, requests go where ``HTTP(S)_PROXY`` says. The test
registry is the proxy itself: it answers requests for a name that never
resolves, so nothing leaves loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from regseal import manifest as mf
from regseal.digest import Digest
from regseal.errors import RegistryError
from regseal.registryapi import RegistryClient

SMALL = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mf.OCI_MANIFEST,
        "config": {
            "mediaType": mf.OCI_CONFIG,
            "digest": "sha256:" + "0" * 64,
            "size": 2,
        },
        "layers": [],
    }
).encode()
OVERSIZE = mf.MAX_MANIFEST_BYTES + 8 * 1024 * 1024  # well past the limit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection for both GETs
    connections: set[tuple[str, int]] = set()  # noqa: RUF012
    requests: list[tuple[str, str]] = []  # noqa: RUF012

    def do_GET(self) -> None:
        self.connections.add(self.client_address)
        self.requests.append((self.path, self.headers.get("Host", "")))
        if self.path.endswith("/manifests/big"):
            body = b"{" + b" " * (OVERSIZE - 2) + b"}"
        else:
            body = SMALL
        self.send_response(200)
        self.send_header("Content-Type", mf.OCI_MANIFEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            # The rest of an oversize body comes late, after the client has
            # stopped reading and sent its next request: a reused connection
            # would then read it as the next answer.
            head = min(len(body), mf.MAX_MANIFEST_BYTES + 1)
            self.wfile.write(body[:head])
            self.wfile.flush()
            if head < len(body):
                time.sleep(0.5)
            self.wfile.write(body[head:])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up once it had read enough

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def registry() -> Iterator[str]:
    _Handler.connections = set()
    _Handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_oversize_manifest_is_refused_and_the_next_request_gets_its_own_answer(
    registry,
):
    client = RegistryClient(registry)

    with pytest.raises(RegistryError, match=r"GET manifest big.*at most"):
        client.get_manifest("team-a/app", "big")
    manifest = client.get_manifest("team-a/app", "small")

    assert manifest.data == SMALL
    assert manifest.digest == Digest.of(SMALL)
    # The oversize answer's connection was dropped, not handed back to the pool.
    assert len(_Handler.connections) == 2


def test_requests_go_through_the_proxy_the_environment_names(registry):
    # The registry's name never resolves: only the proxy can answer for it.
    client = RegistryClient(
        "http://registry.invalid", env={"HTTP_PROXY": registry, "NO_PROXY": "other"}
    )

    manifest = client.get_manifest("team-a/app", "small")

    assert manifest.data == SMALL
    assert _Handler.requests == [
        ("http://registry.invalid/v2/team-a/app/manifests/small", "registry.invalid")
    ]


def test_a_loopback_registry_is_reached_directly_whatever_the_proxy(registry):
    # Port 9 (discard) on loopback: nothing listens there for this test.
    client = RegistryClient(registry, env={"HTTP_PROXY": "http://127.0.0.1:9"})

    manifest = client.get_manifest("team-a/app", "small")

    assert manifest.data == SMALL
    assert [path for path, _ in _Handler.requests] == ["/v2/team-a/app/manifests/small"]
