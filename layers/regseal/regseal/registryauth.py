"""Authentication to an OCI distribution registry: basic and bearer tokens.

Registries answer an unauthenticated request with 401 and a
``WWW-Authenticate`` challenge (RFC 7235):

- ``Basic realm="..."``: send the account's credentials with every request
  (distribution with htpasswd; Harbor accepts them too);
- ``Bearer realm="...",service="...",scope="..."``: fetch a token from the
  realm with the credentials (the Docker token protocol that distribution's
  token auth and Harbor's ``/service/token`` implement), then send
  ``Authorization: Bearer <token>``. Tokens are cached per scope until shortly
  before they expire.

Credentials come from Secrets Manager or SSM Parameter Store (through
Powertools parameters, cached) when ``REGSEAL_REGISTRY_CREDENTIALS`` names
one, otherwise from ``REGSEAL_REGISTRY_USERNAME`` and
``REGSEAL_REGISTRY_PASSWORD``; commands also take a ``USER:PASSWORD`` option
(:func:`command_line_credentials`). Nothing here logs or puts into an error
message a password, a token or an ``Authorization`` header.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from regseal.errors import RegistryAuthError, RegsealError

logger = logging.getLogger(__name__)

SECRETS_MANAGER_PREFIX = "secretsmanager:"
SSM_PREFIX = "ssm:"
USERNAME_VARIABLE = "REGSEAL_REGISTRY_USERNAME"
PASSWORD_VARIABLE = "REGSEAL_REGISTRY_PASSWORD"  # noqa: S105 (a variable name)
LOCATION_VARIABLE = "REGSEAL_REGISTRY_CREDENTIALS"

# The token protocol's default lifetime when a response names none.
DEFAULT_TOKEN_SECONDS = 60
# A cached token is renewed this long before it expires (at most half of its
# lifetime), so that a request never starts with a token about to lapse.
TOKEN_RENEW_MARGIN = 15.0
CREDENTIALS_MAX_AGE = 300


class CredentialsError(RegsealError):
    """Registry credentials are missing, unreadable or malformed."""


@dataclass(frozen=True)
class Credentials:
    """A registry account. The password never appears in ``repr``."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        """The ``Authorization`` header value for basic auth."""
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


Loader = Callable[[str, bool], Any]
"""Reads a stored value by name (``force_fetch`` second), parsed from JSON."""


class CredentialSource:
    """Where the registry account comes from.

    Args:
        location: ``secretsmanager:NAME`` or ``ssm:/NAME`` (a secret or a
            SecureString parameter holding ``{"username": ..., "password":
            ...}``), or empty for the environment.
        env: the environment to read when ``location`` is empty.
        loader: reads ``location``'s value; by default Powertools
            parameters (Secrets Manager or SSM, cached for 5 minutes).
        label: how messages name where the account comes from (a command
            line option, say); by default ``location`` or the variables.

    Raises:
        CredentialsError: ``location`` names no supported store.
    """

    def __init__(
        self,
        location: str = "",
        *,
        env: Mapping[str, str] | None = None,
        loader: Loader | None = None,
        label: str = "",
    ) -> None:
        self.location = location
        self._label = label
        self._env = os.environ if env is None else env
        store, _, self._name = location.partition(":")
        if location and f"{store}:" not in {SECRETS_MANAGER_PREFIX, SSM_PREFIX}:
            raise CredentialsError(
                "REGSEAL_REGISTRY_CREDENTIALS: expected 'secretsmanager:NAME' or "
                f"'ssm:/NAME', got {location!r}"
            )
        if location and not self._name:
            raise CredentialsError(
                f"REGSEAL_REGISTRY_CREDENTIALS: {location!r} names no secret or "
                "parameter"
            )
        if loader is not None:
            self._loader = loader
        elif not location:
            self._loader = _no_loader
        elif f"{store}:" == SECRETS_MANAGER_PREFIX:
            self._loader = _secrets_manager_loader()
        else:
            self._loader = _ssm_loader()

    @property
    def description(self) -> str:
        """Where the credentials come from, for error messages."""
        if self._label:
            return self._label
        if self.location:
            return self.location
        return f"${USERNAME_VARIABLE}/${PASSWORD_VARIABLE}"

    def get(self, *, refresh: bool = False) -> Credentials | None:
        """The account, or None for anonymous access.

        Args:
            refresh: read the store again instead of the cached value (after
                the registry refused the cached credentials: they may have
                been rotated).

        Raises:
            CredentialsError: the store is unreadable or holds no
                ``username``/``password`` pair.
        """
        if not self.location:
            username = self._env.get(USERNAME_VARIABLE, "")
            password = self._env.get(PASSWORD_VARIABLE, "")
            if not username and not password:
                return None
            if not username or not password:
                raise CredentialsError(
                    f"expected both {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} "
                    "to be set, or neither"
                )
            return Credentials(username, password)
        try:
            value = self._loader(self._name, refresh)
        except Exception as exc:
            # Powertools wraps the SDK error; its text names the store and the
            # failure, not the value.
            raise CredentialsError(
                f"{self.location}: cannot read the registry credentials: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return _parse_credentials(value, self.location)


def command_line_credentials(
    value: str | None, option: str, *, env: Mapping[str, str] | None = None
) -> CredentialSource:
    """The account of a command: ``option``'s ``USER:PASSWORD``, else the seal's.

    Without the option, the account is the one the seal reads:
    ``$REGSEAL_REGISTRY_CREDENTIALS`` when set, else
    ``$REGSEAL_REGISTRY_USERNAME``/``$REGSEAL_REGISTRY_PASSWORD``; with none of
    them, requests are anonymous and a refusal names both ways to give one.

    Args:
        value: the option's value, or None when it was not given.
        option: the option's name (``--src-creds``), for messages.
        env: the environment; by default ``os.environ``.

    Raises:
        CredentialsError: ``value`` is not ``USER:PASSWORD`` (the message
            does not repeat it: it may hold most of a password).
    """
    environ = os.environ if env is None else env
    if value is None:
        location = environ.get(LOCATION_VARIABLE, "")
        unset = not location and not any(
            environ.get(name) for name in (USERNAME_VARIABLE, PASSWORD_VARIABLE)
        )
        label = f"{option} or ${USERNAME_VARIABLE}/${PASSWORD_VARIABLE}"
        return CredentialSource(location, env=environ, label=label if unset else "")
    username, colon, password = value.partition(":")
    if not colon or not username or not password:
        raise CredentialsError(f"{option}: expected USERNAME:PASSWORD, both non-empty")
    return CredentialSource(
        env={USERNAME_VARIABLE: username, PASSWORD_VARIABLE: password}, label=option
    )


def _parse_credentials(value: Any, where: str) -> Credentials:
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("username"), str)
        or not isinstance(value.get("password"), str)
        or not value["username"]
        or not value["password"]
    ):
        raise CredentialsError(
            f"{where}: expected a JSON object with non-empty string members "
            '"username" and "password"'
        )
    return Credentials(value["username"], value["password"])


def _secrets_manager_loader() -> Loader:
    from aws_lambda_powertools.utilities import parameters

    provider = parameters.SecretsProvider()

    def load(name: str, refresh: bool) -> Any:
        return provider.get(
            name, max_age=CREDENTIALS_MAX_AGE, transform="json", force_fetch=refresh
        )

    return load


def _ssm_loader() -> Loader:
    from aws_lambda_powertools.utilities import parameters

    provider = parameters.SSMProvider()

    def load(name: str, refresh: bool) -> Any:
        return provider.get(
            name,
            max_age=CREDENTIALS_MAX_AGE,
            transform="json",
            decrypt=True,
            force_fetch=refresh,
        )

    return load


def _no_loader(name: str, refresh: bool) -> Any:
    raise AssertionError("the environment needs no loader")


# --------------------------------------------------------------------------
# Challenges (RFC 7235 §4.1) and scopes (Docker token protocol)


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header."""

    scheme: str
    """Lowercase: ``basic`` or ``bearer`` (others are kept but not answered)."""
    params: dict[str, str]


# RFC 7230 §3.2.6 "token" characters (scheme and parameter names).
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_RE = re.compile(rf"\s*({_TCHARS})")
_PARAM_RE = re.compile(rf'\s*({_TCHARS})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TCHARS}))')
_TOKEN68_RE = re.compile(r"\s+[A-Za-z0-9._~+/-]+=*(?=\s*(?:,|$))")
_SEPARATOR_RE = re.compile(r"\s*,?")


def parse_challenges(headers: Sequence[str]) -> list[Challenge]:
    """Parse every challenge of one or more ``WWW-Authenticate`` header values.

    A token68 value after a scheme is skipped. Unparseable remainders (stray
    characters) end the header they occur in; what was parsed before them is
    kept.
    """
    challenges: list[Challenge] = []
    for header in headers:
        position = 0
        while position < len(header):
            scheme = _SCHEME_RE.match(header, position)
            if scheme is None:
                break
            position = scheme.end()
            params: dict[str, str] = {}
            while True:
                param = _PARAM_RE.match(header, position)
                if param is None:
                    break
                quoted, plain = param.group(2), param.group(3)
                value = re.sub(r"\\(.)", r"\1", quoted) if plain is None else plain
                params[param.group(1).lower()] = value
                position = _skip_separator(header, param.end())
            challenges.append(Challenge(scheme.group(1).lower(), params))
            if not params:
                token68 = _TOKEN68_RE.match(header, position)
                if token68 is not None:
                    position = token68.end()
                position = _skip_separator(header, position)
    return challenges


def _skip_separator(text: str, position: int) -> int:
    match = _SEPARATOR_RE.match(text, position)
    return match.end() if match else position


def normalize_scope(scope: str) -> str:
    """A scope string with its resource scopes and actions in a stable order.

    ``repository:a:push,pull repository:b:pull`` and
    ``repository:b:pull repository:a:pull,push`` normalize alike, so the token
    cache finds a token whatever order a registry listed the actions in.
    """
    parts = []
    for item in scope.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        ordered = ",".join(sorted(set(filter(None, actions.split(",")))))
        parts.append(f"{kind}:{name}:{ordered}")
    return " ".join(sorted(parts))


def repository_scope(repository: str, *actions: str) -> str:
    """The scope of ``actions`` (``pull``, ``push``, ``delete``) on a repository."""
    return normalize_scope(f"repository:{repository}:{','.join(actions)}")


CATALOG_SCOPE = "registry:catalog:*"


# --------------------------------------------------------------------------
# The authenticator


@dataclass(frozen=True)
class TokenReply:
    """What a token request returned: HTTP status and body."""

    status: int
    body: bytes


TokenFetcher = Callable[[str, list[tuple[str, str]], str | None], TokenReply]
"""GETs ``realm`` with query parameters and an optional ``Authorization``."""


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    renew_at: float


class Authenticator:
    """Answers a registry's challenges and remembers what worked.

    After the first challenge the scheme is known, so later requests carry
    credentials or a token from the start instead of collecting a 401 each.

    Args:
        registry: the registry's name for messages (``host:port``).
        credentials: where the account comes from.
        fetch: performs token requests (the registry client's HTTP pool).
        clock: monotonic seconds (tests replace it).
    """

    def __init__(
        self,
        registry: str,
        credentials: CredentialSource,
        fetch: TokenFetcher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.credentials = credentials
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._scheme: str | None = None
        self._bearer: Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        self.tokens_fetched = 0

    def authorization(self, scope: str) -> str | None:
        """The ``Authorization`` value to send for a request needing ``scope``.

        None before the first challenge, and for anonymous basic access.
        """
        with self._lock:
            scheme, bearer = self._scheme, self._bearer
        if scheme == "basic":
            account = self.credentials.get()
            return account.basic() if account else None
        if scheme == "bearer" and bearer is not None:
            return "Bearer " + self._token(bearer, normalize_scope(scope))
        return None

    def challenged(self, headers: Sequence[str], scope: str, sent: str | None) -> str:
        """Answer a 401: the ``Authorization`` value to retry the request with.

        Args:
            headers: the response's ``WWW-Authenticate`` values.
            scope: what the request needs (the challenge's own scope wins).
            sent: the ``Authorization`` value the refused request carried.

        Raises:
            RegistryAuthError: no supported challenge, no credentials for a
                registry that needs them, or the same answer was refused.
            CredentialsError: the credentials cannot be read.
        """
        challenges = {c.scheme: c for c in parse_challenges(headers)}
        if "bearer" in challenges and "realm" in challenges["bearer"].params:
            bearer = challenges["bearer"]
            wanted = normalize_scope(bearer.params.get("scope") or scope)
            with self._lock:
                self._scheme, self._bearer = "bearer", bearer
                stale = self._tokens.pop(wanted, None)
                self._tokens.pop(normalize_scope(scope), None)
            refused_token = stale is not None and sent == f"Bearer {stale.value}"
            return "Bearer " + self._token(bearer, wanted, refresh=refused_token)
        if "basic" in challenges:
            with self._lock:
                self._scheme = "basic"
            account = self.credentials.get()
            if account is not None and sent == account.basic():
                account = self.credentials.get(refresh=True)
                if account is not None and sent == account.basic():
                    raise RegistryAuthError(
                        f"registry {self.registry}: refused the credentials of "
                        f"{account.username!r} (from {self.credentials.description})"
                        f" {_for_scope(scope)}: expected an account with that access",
                        status=401,
                    )
            if account is None:
                raise RegistryAuthError(
                    f"registry {self.registry}: requires basic auth "
                    f"{_for_scope(scope)}; expected credentials in "
                    f"{self.credentials.description}",
                    status=401,
                )
            return account.basic()
        schemes = ", ".join(sorted(challenges)) or "none"
        raise RegistryAuthError(
            f"registry {self.registry}: answered 401 {_for_scope(scope)} with "
            f"challenge schemes {schemes}; expected Basic or Bearer with a realm",
            status=401,
        )

    def _token(self, bearer: Challenge, scope: str, *, refresh: bool = False) -> str:
        now = self._clock()
        with self._lock:
            cached = self._tokens.get(scope)
        if cached is not None and now < cached.renew_at:
            return cached.value
        token = self._request_token(bearer, scope, refresh=refresh)
        with self._lock:
            self._tokens[scope] = token
        return token.value

    def _request_token(self, bearer: Challenge, scope: str, *, refresh: bool) -> _Token:
        realm = bearer.params["realm"]
        if urlsplit(realm).scheme not in {"http", "https"}:
            raise RegistryAuthError(
                f"registry {self.registry}: expected an http(s) token realm, got "
                f"{realm!r}"
            )
        query = [("scope", item) for item in scope.split()]
        if "service" in bearer.params:
            query.insert(0, ("service", bearer.params["service"]))
        account = self.credentials.get(refresh=refresh)
        if account is not None:
            query.append(("account", account.username))
        started = self._clock()
        reply = self._fetch(realm, query, account.basic() if account else None)
        if reply.status in {401, 403}:
            who = repr(account.username) if account else "anonymous access"
            raise RegistryAuthError(
                f"registry {self.registry}: token service {realm} refused {who} "
                f"(credentials from {self.credentials.description}) "
                f"{_for_scope(scope)} with HTTP {reply.status}",
                status=reply.status,
            )
        if reply.status != 200:
            raise RegistryAuthError(
                f"registry {self.registry}: token service {realm} answered HTTP "
                f"{reply.status} {_for_scope(scope)}; expected 200",
                status=reply.status,
            )
        value, lifetime = _parse_token_reply(reply.body, realm)
        self.tokens_fetched += 1
        logger.debug(
            "token for scope %s from %s, valid %d s", scope, realm, int(lifetime)
        )
        margin = min(TOKEN_RENEW_MARGIN, lifetime / 2)
        return _Token(value, started + lifetime - margin)


def _for_scope(scope: str) -> str:
    """``for scope '...'``; the API root (``GET /v2/``) needs none."""
    return f"for scope {scope!r}" if scope else "for the API root (GET /v2/)"


def _parse_token_reply(body: bytes, realm: str) -> tuple[str, float]:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise RegistryAuthError(f"token service {realm}: expected a JSON object")
    value = doc.get("token") or doc.get("access_token")
    if not isinstance(value, str) or not value:
        raise RegistryAuthError(
            f'token service {realm}: expected a "token" or "access_token" string'
        )
    lifetime = doc.get("expires_in", DEFAULT_TOKEN_SECONDS)
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
        raise RegistryAuthError(
            f'token service {realm}: expected "expires_in" in seconds, got {lifetime!r}'
        )
    return value, float(max(lifetime, 1))
