"""Challenges, scopes, credentials and the token cache of registry auth."""

from __future__ import annotations

import json
import logging

import pytest

from regseal.errors import RegistryAuthError
from regseal.registryauth import (
    Authenticator,
    Challenge,
    Credentials,
    CredentialsError,
    CredentialSource,
    TokenReply,
    normalize_scope,
    parse_challenges,
    repository_scope,
)

ENV = {
    "REGSEAL_REGISTRY_USERNAME": "robot$team-a+sealer",
    "REGSEAL_REGISTRY_PASSWORD": "s3cret-pw",
}


def test_parse_distribution_bearer_challenge():
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:team-a/app:pull,push",error="insufficient_scope"'
    )

    assert parse_challenges([header]) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:team-a/app:pull,push",
                "error": "insufficient_scope",
            },
        )
    ]


def test_parse_two_challenges_in_one_header_with_escapes_and_spaces():
    header = (
        'Basic realm="harbor \\"core\\"" , '
        'Bearer realm="http://h/service/token", service=harbor-registry'
    )

    assert parse_challenges([header]) == [
        Challenge("basic", {"realm": 'harbor "core"'}),
        Challenge(
            "bearer",
            {"realm": "http://h/service/token", "service": "harbor-registry"},
        ),
    ]


def test_parse_keeps_challenges_before_an_unparseable_rest():
    assert parse_challenges(['Basic realm="r", Negotiate abc==', "Digest"]) == [
        Challenge("basic", {"realm": "r"}),
        Challenge("negotiate", {}),
        Challenge("digest", {}),
    ]


def test_normalize_scope_orders_resources_and_actions():
    assert normalize_scope(
        "repository:b/x:push,pull repository:a:pull registry:catalog:*"
    ) == ("registry:catalog:* repository:a:pull repository:b/x:pull,push")
    assert repository_scope("team-a/app", "push", "pull") == (
        "repository:team-a/app:pull,push"
    )


def test_credentials_repr_hides_the_password():
    account = Credentials("robot$x", "s3cret-pw")

    assert "s3cret-pw" not in repr(account)
    assert account.basic() == "Basic cm9ib3QkeDpzM2NyZXQtcHc="


def test_environment_credentials_need_both_variables():
    assert CredentialSource(env=ENV).get() == Credentials(
        "robot$team-a+sealer", "s3cret-pw"
    )
    assert CredentialSource(env={}).get() is None
    with pytest.raises(CredentialsError, match="both REGSEAL_REGISTRY_USERNAME"):
        CredentialSource(env={"REGSEAL_REGISTRY_USERNAME": "x"}).get()


@pytest.mark.parametrize(
    ("location", "name"),
    [
        ("secretsmanager:regseal/registry", "regseal/registry"),
        ("ssm:/regseal/reg", "/regseal/reg"),
    ],
)
def test_stored_credentials_are_read_by_name_and_refreshed_on_demand(location, name):
    calls = []

    def loader(key, refresh):
        calls.append((key, refresh))
        return {"username": "robot$a", "password": "pw"}

    source = CredentialSource(location, loader=loader)

    assert source.get() == Credentials("robot$a", "pw")
    assert source.get(refresh=True) == Credentials("robot$a", "pw")
    assert calls == [(name, False), (name, True)]


@pytest.mark.parametrize(
    "value",
    [{"username": "a"}, {"username": "", "password": "x"}, "not json", ["a", "b"]],
)
def test_malformed_stored_credentials_are_refused_without_echoing_them(value):
    source = CredentialSource("secretsmanager:x", loader=lambda *_: value)

    with pytest.raises(CredentialsError, match='"username" and "password"') as info:
        source.get()
    assert "not json" not in str(info.value)


def test_unknown_credentials_location_is_refused():
    with pytest.raises(CredentialsError, match="secretsmanager:NAME"):
        CredentialSource("vault:secret/x")
    with pytest.raises(CredentialsError, match="names no secret"):
        CredentialSource("ssm:")


class FakeTokenService:
    def __init__(self, lifetime=300, status=200):
        self.lifetime = lifetime
        self.status = status
        self.requests = []

    def __call__(self, realm, query, authorization):
        self.requests.append((realm, query, authorization))
        number = len(self.requests)
        body = json.dumps({"token": f"tok-{number}", "expires_in": self.lifetime})
        return TokenReply(self.status, body.encode())


BEARER = 'Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:team-a/app:push,pull"'


def authenticator(fetch, clock=None, env=ENV):
    now = [0.0]
    auth = Authenticator(
        "127.0.0.1:1", CredentialSource(env=env), fetch, clock or (lambda: now[0])
    )
    return auth, now


def test_bearer_challenge_fetches_a_token_with_basic_credentials_and_scope():
    service = FakeTokenService()
    auth, _ = authenticator(service)

    header = auth.challenged([BEARER], repository_scope("team-a/app", "pull"), None)

    assert header == "Bearer tok-1"
    [(realm, query, authorization)] = service.requests
    assert realm == "http://127.0.0.1:1/token"
    assert query == [
        ("service", "reg"),
        ("scope", "repository:team-a/app:pull,push"),
        ("account", "robot$team-a+sealer"),
    ]
    assert authorization == Credentials("robot$team-a+sealer", "s3cret-pw").basic()


def test_tokens_are_cached_per_scope_until_shortly_before_expiry():
    service = FakeTokenService(lifetime=60)
    auth, now = authenticator(service)
    push = repository_scope("team-a/app", "pull", "push")
    auth.challenged([BEARER], push, None)

    now[0] = 40.0
    assert auth.authorization(push) == "Bearer tok-1"
    # Another scope needs its own token; the realm is known, so no 401 first.
    assert (
        auth.authorization(repository_scope("team-a/app", "delete")) == "Bearer tok-2"
    )
    now[0] = 46.0  # 60 s lifetime, renewed 15 s early
    assert auth.authorization(push) == "Bearer tok-3"
    assert auth.tokens_fetched == 3


def test_a_refused_token_is_replaced_once_then_the_refusal_is_an_error():
    service = FakeTokenService()
    auth, _ = authenticator(service)
    scope = repository_scope("team-a/app", "pull", "push")
    first = auth.challenged([BEARER], scope, None)

    second = auth.challenged([BEARER + ',error="invalid_token"'], scope, first)

    assert (first, second) == ("Bearer tok-1", "Bearer tok-2")


def test_token_service_refusal_names_account_and_source_but_no_secret(caplog):
    service = FakeTokenService(status=401)
    auth, _ = authenticator(service)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(RegistryAuthError) as info:
        auth.challenged([BEARER], repository_scope("team-a/app", "pull"), None)

    message = str(info.value)
    assert "refused 'robot$team-a+sealer'" in message
    assert "$REGSEAL_REGISTRY_USERNAME/$REGSEAL_REGISTRY_PASSWORD" in message
    assert info.value.status == 401
    for text in (message, caplog.text):
        assert "s3cret-pw" not in text
        assert Credentials("robot$team-a+sealer", "s3cret-pw").basic()[6:] not in text


def test_basic_challenge_is_answered_then_sent_up_front():
    auth, _ = authenticator(FakeTokenService())
    expected = Credentials("robot$team-a+sealer", "s3cret-pw").basic()

    assert auth.authorization("repository:a:pull") is None
    assert auth.challenged(['Basic realm="r"'], "repository:a:pull", None) == expected
    assert auth.authorization("repository:b:push") == expected


def test_basic_refusal_of_the_same_credentials_is_an_error():
    auth, _ = authenticator(FakeTokenService())
    sent = auth.challenged(['Basic realm="r"'], "repository:a:pull", None)

    with pytest.raises(RegistryAuthError, match="refused the credentials of"):
        auth.challenged(['Basic realm="r"'], "repository:a:pull", sent)


def test_basic_challenge_without_credentials_says_where_they_are_expected():
    auth, _ = authenticator(FakeTokenService(), env={})

    with pytest.raises(RegistryAuthError, match="expected credentials in"):
        auth.challenged(['Basic realm="r"'], "repository:a:pull", None)


def test_anonymous_token_request_sends_no_authorization():
    service = FakeTokenService()
    auth, _ = authenticator(service, env={})

    assert (
        auth.challenged([BEARER], "repository:team-a/app:pull", None) == "Bearer tok-1"
    )
    [(_, query, authorization)] = service.requests
    assert authorization is None
    assert ("account", "robot$team-a+sealer") not in query


@pytest.mark.parametrize(
    "headers",
    [["Negotiate"], ['Bearer service="x"'], []],
    ids=["unsupported", "bearer-without-realm", "none"],
)
def test_challenge_without_a_usable_scheme_is_an_error(headers):
    auth, _ = authenticator(FakeTokenService())

    with pytest.raises(RegistryAuthError, match="expected Basic or Bearer"):
        auth.challenged(headers, "repository:a:pull", None)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<html>", "expected a JSON object"),
        (b'{"expires_in": 60}', 'expected a "token"'),
        (b'{"token": "t", "expires_in": "soon"}', "expires_in"),
    ],
)
def test_malformed_token_replies_are_errors(body, match):
    auth, _ = authenticator(lambda *_: TokenReply(200, body))

    with pytest.raises(RegistryAuthError, match=match):
        auth.challenged([BEARER], "repository:a:pull", None)


def test_access_token_member_and_default_lifetime_are_accepted():
    replies = iter([b'{"access_token": "a1"}', b'{"access_token": "a2"}'])
    auth, now = authenticator(lambda *_: TokenReply(200, next(replies)))
    scope = "repository:team-a/app:pull,push"

    assert auth.challenged([BEARER], scope, None) == "Bearer a1"
    now[0] = 44.0
    assert auth.authorization(scope) == "Bearer a1"
    now[0] = 46.0  # the default 60 s, renewed 15 s early
    assert auth.authorization(scope) == "Bearer a2"
