"""The registry client against a small HTTP server on loopback.

The server plays a distribution registry for one repository, with switches
for the failures a real one (or something in between) can produce.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from regseal.digest import Digest
from regseal.errors import IntegrityError, NotFoundError, RegistryError
from regseal.imageref import parse_source
from regseal.registrysource import MANIFEST_ACCEPT, RegistrySource

MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
)
BLOB = b"blob bytes" * 100


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry(BaseHTTPRequestHandler):
    behaviour: ClassVar[dict] = {}
    seen: ClassVar[list] = []

    def log_message(self, *args):
        """Quiet."""

    def do_GET(self):
        behaviour = type(self).behaviour
        type(self).seen.append((self.path, self.headers.get("Accept")))
        if behaviour.get("auth"):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="https://auth"')
            self.end_headers()
            return
        if self.path == "/v2/":
            self._send(b"{}")
        elif self.path in (
            "/v2/team-a/app/manifests/1.0",
            f"/v2/team-a/app/manifests/{digest(MANIFEST)}",
        ):
            self._send(
                MANIFEST,
                {"Docker-Content-Digest": behaviour.get("header", digest(MANIFEST))},
            )
        elif self.path == f"/v2/team-a/app/blobs/{digest(BLOB)}":
            self._send(behaviour.get("blob", BLOB))
        else:
            self.send_response(404)
            self.end_headers()

    def _send(self, body, headers=None):
        self.send_response(200)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def registry():
    FakeRegistry.behaviour = {}
    FakeRegistry.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", FakeRegistry
    server.shutdown()
    server.server_close()


def source(host, reference="team-a/app:1.0"):
    return RegistrySource(parse_source(f"docker://{host}/{reference}"), timeout=5)


def test_manifest_by_tag_asks_for_oci_and_docker_types_over_plain_http(registry):
    host, handler = registry

    data, found = source(host).top()

    assert data == MANIFEST
    assert found == Digest(digest(MANIFEST))
    assert ("/v2/team-a/app/manifests/1.0", MANIFEST_ACCEPT) in handler.seen
    for media_type in (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ):
        assert media_type in MANIFEST_ACCEPT


def test_a_digest_header_that_disagrees_is_an_integrity_error(registry):
    host, handler = registry
    handler.behaviour["header"] = "sha256:" + "0" * 64

    with pytest.raises(IntegrityError, match="the registry says sha256:0000"):
        source(host).top()


def test_manifest_by_digest_is_checked_against_it(registry):
    host, _ = registry

    assert source(host).manifest(Digest(digest(MANIFEST))) == MANIFEST


def test_blob_download_checks_size_and_digest(registry, tmp_path):
    host, handler = registry
    target = tmp_path / "blob"
    reported = []

    path = source(host).fetch(
        Digest(digest(BLOB)), len(BLOB), lambda: target, reported.append
    )

    assert path.read_bytes() == BLOB
    assert sum(reported) == len(BLOB)
    handler.behaviour["blob"] = BLOB[:-1] + b"X"
    with pytest.raises(IntegrityError, match="does not match its descriptor"):
        source(host).fetch(
            Digest(digest(BLOB)), len(BLOB), lambda: target, reported.append
        )
    handler.behaviour["blob"] = BLOB + b"more"
    with pytest.raises(IntegrityError, match="longer than"):
        source(host).fetch(
            Digest(digest(BLOB)), len(BLOB), lambda: target, reported.append
        )


def test_missing_manifest_is_not_found(registry):
    host, _ = registry

    with pytest.raises(NotFoundError, match=r"manifest 2\.0 not found"):
        source(host, "team-a/app:2.0").top()


def test_a_registry_that_wants_a_login_says_so(registry):
    host, handler = registry
    handler.behaviour["auth"] = True

    with pytest.raises(RegistryError, match=r"requires authentication .*Bearer realm"):
        source(host).top()


def test_tls_verify_true_on_loopback_insists_on_https(registry):
    host, _ = registry
    client = RegistrySource(
        parse_source(f"docker://{host}/team-a/app:1.0"), tls_verify=True, timeout=5
    )

    with pytest.raises(RegistryError, match=f"https://{host}/v2/"):
        client.top()


def test_tls_verify_false_tries_https_then_falls_back_to_plain_http(registry):
    host, _ = registry
    # The server speaks plain http: the TLS handshake fails, http answers.
    client = RegistrySource(
        parse_source(f"docker://{host}/team-a/app:1.0"), tls_verify=False, timeout=5
    )

    assert client.top()[0] == MANIFEST
