import base64
import json
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from regseal.local.tokenserver import (
    ISSUER,
    SERVICE,
    TokenIssuer,
    TokenServer,
    decode_claims,
    parse_scope,
)

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify(token):
    """Check a token as distribution does: the x5c leaf key and ES256."""
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    raw = b64url_decode(signature_b64)
    der = encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    leaf.public_key().verify(
        der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256())
    )
    return header, leaf


def test_token_is_an_es256_jwt_signed_by_the_certificate_in_x5c():
    issuer = TokenIssuer.generate()
    access = parse_scope("repository:team-a/app:push,pull")

    token = issuer.issue("testing", access, lifetime=120, now=1_000_000)

    header, leaf = verify(token)
    assert (header["alg"], header["typ"]) == ("ES256", "JWT")
    assert leaf == issuer.certificate
    claims = decode_claims(token)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == SERVICE  # a string, as distribution 2.8 reads it
    assert claims["sub"] == "testing"
    assert (claims["nbf"], claims["exp"]) == (1_000_000, 1_000_120)
    assert claims["access"] == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}
    ]


def test_tampered_token_does_not_verify():
    issuer = TokenIssuer.generate()
    header, _, signature = issuer.issue("testing", []).split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"admin"}').rstrip(b"=").decode()

    with pytest.raises(InvalidSignature):
        verify(f"{header}.{forged}.{signature}")


def test_certificate_is_written_as_the_registry_root_bundle(tmp_path):
    issuer = TokenIssuer.generate()

    path = issuer.write_certificate(tmp_path)

    assert x509.load_pem_x509_certificate(path.read_bytes()) == issuer.certificate


def test_parse_scope_reads_several_resources_and_the_catalog():
    assert parse_scope("repository:a/b:pull registry:catalog:*") == [
        {"type": "repository", "name": "a/b", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]


@pytest.fixture
def server():
    served = TokenServer(TokenIssuer.generate(), "testing", "testing", lifetime=90)
    served.start()
    yield served
    served.stop()


def get(url, authorization=None):
    request = urllib.request.Request(url)  # noqa: S310 (the test's http URL)
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with NO_PROXY.open(request, timeout=5) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_server_grants_the_requested_scopes_to_the_account(server):
    url = f"{server.realm}?service={SERVICE}&scope=repository%3Ate%2Fapp%3Apull%2Cpush"

    status, doc, _ = get(url, basic("testing", "testing"))

    assert status == 200
    assert doc["expires_in"] == 90
    assert doc["token"] == doc["access_token"]
    verify(doc["token"])
    assert decode_claims(doc["token"])["access"] == [
        {"type": "repository", "name": "te/app", "actions": ["pull", "push"]}
    ]


@pytest.mark.parametrize("authorization", [None, basic("testing", "wrong")])
def test_server_refuses_anyone_else(server, authorization):
    status, doc, headers = get(f"{server.realm}?service={SERVICE}", authorization)

    assert status == 401
    assert "token" not in doc
    assert headers["WWW-Authenticate"].startswith("Basic ")
    assert server.issued == []
