"""``regseal decrypt``'s registry source against a small HTTP server on loopback.

The server plays a distribution registry for one repository, with switches
for the failures a real one (or something in between) can produce: a login
(basic auth), a blob served by a redirect to "storage", wrong bytes.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from regseal.digest import Digest
from regseal.errors import (
    IntegrityError,
    RegistryAuthError,
    RegistryError,
    RegistryNotFoundError,
)
from regseal.imageref import parse_source
from regseal.registryapi import MANIFEST_ACCEPT
from regseal.registryauth import CredentialSource
from regseal.registrysource import RegistrySource

MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
)
BLOB = b"blob bytes" * 100
ACCOUNT = "Basic " + base64.b64encode(b"testing:testing").decode()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry(BaseHTTPRequestHandler):
    behaviour: ClassVar[dict] = {}
    seen: ClassVar[list] = []

    def log_message(self, *args):
        """Quiet."""

    def do_GET(self):
        behaviour = type(self).behaviour
        authorization = self.headers.get("Authorization")
        type(self).seen.append((self.path, self.headers.get("Accept"), authorization))
        if self.path == "/storage/blob":  # signed URLs need no account
            self._send(BLOB)
        elif behaviour.get("auth") and authorization != ACCOUNT:
            self.send_response(401)
            self.send_header("WWW-Authenticate", behaviour["auth"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/v2/":
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
            if behaviour.get("redirect"):
                self.send_response(307)
                self.send_header("Location", behaviour["redirect"])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(behaviour.get("blob", BLOB))
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
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


def source(host, reference="team-a/app:1.0", credentials=None, **options):
    return RegistrySource.connect(
        parse_source(f"docker://{host}/{reference}"),
        credentials,
        timeout=5,
        **options,
    )


def account(username="testing", password="testing"):  # noqa: S107 (dummy)
    return CredentialSource(
        env={
            "REGSEAL_REGISTRY_USERNAME": username,
            "REGSEAL_REGISTRY_PASSWORD": password,
        },
        label="--src-creds",
    )


def test_manifest_by_tag_asks_for_oci_and_docker_types_over_plain_http(registry):
    host, handler = registry

    data, found = source(host).top()

    assert data == MANIFEST
    assert found == Digest(digest(MANIFEST))
    assert ("/v2/team-a/app/manifests/1.0", MANIFEST_ACCEPT, None) in handler.seen
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

    with pytest.raises(RegistryError, match=r"expected sha256:0000") as info:
        source(host).top()

    assert str(info.value).startswith(f"docker://{host}/team-a/app:1.0: ")
    assert f"hashes to {digest(MANIFEST)}" in str(info.value)


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
    with pytest.raises(IntegrityError, match=r"the bytes hash to sha256:"):
        source(host).fetch(
            Digest(digest(BLOB)), len(BLOB), lambda: target, reported.append
        )
    handler.behaviour["blob"] = BLOB + b"more"
    with pytest.raises(IntegrityError, match=f"expected {len(BLOB)} bytes, got more"):
        source(host).fetch(
            Digest(digest(BLOB)), len(BLOB), lambda: target, reported.append
        )
    handler.behaviour["blob"] = BLOB[:-1]
    with pytest.raises(
        IntegrityError, match=f"expected {len(BLOB)} bytes, got {len(BLOB) - 1}"
    ) as info:
        source(host).fetch(
            Digest(digest(BLOB)), len(BLOB), lambda: target, reported.append
        )
    assert f"docker://{host}/team-a/app:1.0: " in str(info.value)
    assert f"blob {digest(BLOB)} of team-a/app" in str(info.value)


def test_blob_redirected_to_storage_is_fetched_without_the_registry_account(
    registry, tmp_path
):
    host, handler = registry
    port = host.split(":")[1]
    # The "storage" is the same server under another host name, so the
    # account must not follow the redirect.
    handler.behaviour["redirect"] = f"http://localhost:{port}/storage/blob"
    handler.behaviour["auth"] = 'Basic realm="test"'
    target = tmp_path / "blob"

    path = source(host, credentials=account()).fetch(
        Digest(digest(BLOB)), len(BLOB), lambda: target, lambda _: None
    )

    assert path.read_bytes() == BLOB
    assert handler.seen[-1] == ("/storage/blob", None, None)


def test_missing_manifest_is_not_found(registry):
    host, _ = registry

    with pytest.raises(RegistryNotFoundError, match=r"manifest 2\.0 not found") as info:
        source(host, "team-a/app:2.0").top()

    assert str(info.value).startswith(f"docker://{host}/team-a/app:2.0: ")
    assert info.value.status == 404


def test_a_registry_that_wants_a_login_gets_the_account_given(registry):
    host, handler = registry
    handler.behaviour["auth"] = 'Basic realm="test"'

    data, _ = source(host, credentials=account()).top()

    assert data == MANIFEST
    assert handler.seen[-1][2] == ACCOUNT


def test_a_login_without_an_account_names_the_registry_and_the_options(registry):
    host, handler = registry
    handler.behaviour["auth"] = 'Basic realm="test"'

    with pytest.raises(RegistryAuthError) as info:
        source(host)

    text = str(info.value)
    assert text.startswith(f"docker://{host}/team-a/app:1.0: registry {host}: ")
    assert "requires basic auth" in text
    assert "$REGSEAL_REGISTRY_USERNAME/$REGSEAL_REGISTRY_PASSWORD" in text


def test_refused_credentials_are_named_without_the_password(registry):
    host, handler = registry
    handler.behaviour["auth"] = 'Basic realm="test"'

    with pytest.raises(RegistryAuthError) as info:
        source(host, credentials=account(password="not-the-password"))

    text = str(info.value)
    assert f"registry {host}: refused the credentials of 'testing'" in text
    assert "(from --src-creds)" in text
    assert "not-the-password" not in text
    assert info.value.status == 401


def test_tls_verify_true_on_loopback_insists_on_https(registry):
    host, _ = registry
    with pytest.raises(RegistryError) as info:
        source(host, tls_verify=True)

    text = str(info.value)
    assert text.startswith(f"docker://{host}/team-a/app:1.0: the registry does not")
    assert "https: registry" in text
    assert "SSLError" in text
    assert "http: " not in text


def test_tls_verify_false_tries_https_then_falls_back_to_plain_http(registry):
    host, _ = registry
    # The server speaks plain http: the TLS handshake fails, http answers.
    client = source(host, tls_verify=False)

    assert client.client.base_url == f"http://{host}"
    assert client.top()[0] == MANIFEST


def test_a_registry_that_does_not_answer_lists_every_scheme_tried(tmp_path):
    from regseal.local.processes import free_port

    host = f"127.0.0.1:{free_port()}"

    with pytest.raises(RegistryError) as info:
        source(host, tls_verify=False)

    text = str(info.value)
    assert f"docker://{host}/team-a/app:1.0: the registry does not answer" in text
    assert "https: registry" in text
    assert "; http: registry" in text
    assert info.value.status is None


@pytest.fixture
def tls_registry(tmp_path):
    """The fake registry over https with a self-signed certificate."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    FakeRegistry.behaviour = {}
    FakeRegistry.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_tls_verify_false_accepts_a_self_signed_certificate_over_https(tls_registry):
    client = source(tls_registry, tls_verify=False)

    assert client.client.base_url == f"https://{tls_registry}"
    assert client.top()[0] == MANIFEST


def test_tls_verify_true_refuses_a_self_signed_certificate(tls_registry):
    with pytest.raises(RegistryError) as info:
        source(tls_registry, tls_verify=True)

    assert "certificate verify failed" in str(info.value)
    assert "; http: " not in str(info.value)
