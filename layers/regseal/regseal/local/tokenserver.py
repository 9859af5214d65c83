"""A token service for the local registry: distribution's token auth, in-process.

distribution's ``auth.token`` access controller (``registry/auth/token``)
accepts a JWT that its token service signed, checking: the issuer and the
audience (the ``service``), the expiry and not-before times (60 s leeway),
and the signature with the key of the leaf certificate in the ``x5c`` header,
which must chain to a certificate of ``rootcertbundle``. The ``access`` claim
lists what the token grants (``{"type": "repository", "name": ..., "actions":
[...]}``).

This server plays that service for one account (dummy credentials): a client
that presents them with basic auth gets every action it asks for; anyone else
gets 401. Tokens are ES256 JWTs, signed with a fresh P-256 key whose
self-signed certificate is the registry's root bundle. It serves plain http
on a loopback port, for the local stack and tests only.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from regseal.local.loopback import LoopbackServer

logger = logging.getLogger(__name__)

ISSUER = "regseal-local-token-service"
SERVICE = "regseal-local-registry"
CERTIFICATE_FILE = "token-signing.crt"
TOKEN_PATH = "/token"  # noqa: S105 (a URL path)
DEFAULT_LIFETIME = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class TokenIssuer:
    """Signs registry tokens.

    Attributes:
        key: the P-256 signing key.
        certificate: its self-signed certificate (the registry's root bundle).
        issuer: the ``iss`` claim the registry expects.
        service: the ``aud`` claim (the registry's ``service`` setting).
    """

    key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: x509.Certificate
    issuer: str = ISSUER
    service: str = SERVICE

    @classmethod
    def generate(cls) -> TokenIssuer:
        """A fresh key and a self-signed certificate valid for a day."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def write_certificate(self, directory: Path) -> Path:
        """Write the certificate as PEM (the registry's ``rootcertbundle``)."""
        path = (directory / CERTIFICATE_FILE).resolve()
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(
        self,
        subject: str,
        access: list[dict[str, Any]],
        *,
        lifetime: int = DEFAULT_LIFETIME,
        now: float | None = None,
    ) -> str:
        """A signed token granting ``access`` to ``subject``."""
        issued = int(time.time() if now is None else now)
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(der).decode("ascii")],
        }
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": issued + lifetime,
            "nbf": issued,
            "iat": issued,
            "jti": str(uuid.uuid4()),
            "access": access,
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode())
            for part in (header, claims)
        )
        der_signature = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der_signature)
        # JWS (RFC 7518 §3.4) wants the raw 32-byte r and s, not DER.
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64url(raw)}"


def parse_scope(scope: str) -> list[dict[str, Any]]:
    """``repository:team-a/app:pull,push`` as an ``access`` claim entry list."""
    entries = []
    for item in scope.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind and name:
            entries.append(
                {
                    "type": kind,
                    "name": name,
                    "actions": sorted(set(filter(None, actions.split(",")))),
                }
            )
    return entries


class TokenServer:
    """The token service on a free loopback port, served from a thread.

    Args:
        issuer: signs the tokens.
        username, password: the one account that gets tokens.
        lifetime: seconds each token is valid (the registry allows 60 s more).
    """

    def __init__(
        self,
        issuer: TokenIssuer,
        username: str,
        password: str,
        *,
        lifetime: int = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.lifetime = lifetime
        self.clock = clock
        self.issued: list[list[dict[str, Any]]] = []
        self._expected = "Basic " + base64.b64encode(
            f"{username}:{password}".encode()
        ).decode("ascii")
        self._username = username
        self._server = LoopbackServer(self._handler_class(), "regseal-token-server")

    @property
    def realm(self) -> str:
        """The URL a registry names as its token realm."""
        return f"http://{self._server.address}{TOKEN_PATH}"

    def start(self) -> None:
        self._server.start()
        logger.debug("token service at %s", self.realm)

    def stop(self) -> None:
        self._server.stop()

    def _answer(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(path)
        if parts.path != TOKEN_PATH:
            return 404, {"error": "not found"}
        if not hmac.compare_digest(authorization.encode(), self._expected.encode()):
            return 401, {"error": "expected the local account's basic credentials"}
        query = parse_qsl(parts.query)
        access = [
            e for key, value in query if key == "scope" for e in parse_scope(value)
        ]
        now = self.clock()
        token = self.issuer.issue(
            self._username, access, lifetime=self.lifetime, now=now
        )
        self.issued.append(access)
        issued_at = datetime.datetime.fromtimestamp(int(now), datetime.UTC)
        return 200, {
            "token": token,
            "access_token": token,
            "expires_in": self.lifetime,
            "issued_at": issued_at.isoformat().replace("+00:00", "Z"),
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, doc = server._answer(
                    self.path, self.headers.get("Authorization", "")
                )
                body = json.dumps(doc).encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="regseal-local"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("token service: %s", format % args)

        return Handler


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a token (unverified; for tests and diagnostics)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
    except (IndexError, ValueError, binascii.Error) as exc:
        raise ValueError("expected a JWT of three dot-separated parts") from exc
    if not isinstance(claims, dict):
        raise ValueError("expected JWT claims to be a JSON object")
    return claims
