"""Which proxy, if any, a request to a registry or token service goes through.

The environment names proxies the way curl, Go's net/http (and so skopeo)
and Python's urllib read them: ``HTTPS_PROXY`` / ``https_proxy`` for https
URLs, ``HTTP_PROXY`` / ``http_proxy`` for http ones, and ``NO_PROXY`` /
``no_proxy`` for hosts (and their subdomains) that are reached directly.
Loopback hosts are always reached directly: a proxy cannot reach this
machine's loopback interface.

Public API: :func:`proxy_for`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

from regseal.errors import RegistryError


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy URL to reach ``url`` through, or None for a direct connection.

    Raises:
        RegistryError: the variable that applies is not an ``http://`` or
            ``https://`` URL with a host.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or _is_loopback(host):
        return None
    scheme = parts.scheme.lower()
    proxy = _lookup(env, f"{scheme}_proxy")
    if not proxy:
        return None
    port = parts.port or (443 if scheme == "https" else 80)
    no_proxy = _lookup(env, "no_proxy")
    if no_proxy and _bypassed(host, port, no_proxy):
        return None
    proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if proxy_parts.scheme not in {"http", "https"} or not proxy_parts.hostname:
        # The value is not shown: a proxy URL may carry a password.
        raise RegistryError(
            f"{scheme.upper()}_PROXY: expected a proxy URL http(s)://host[:port], "
            f"got one with scheme {proxy_parts.scheme!r} and "
            f"{'a' if proxy_parts.hostname else 'no'} host"
        )
    return proxy_parts.geturl()


def _lookup(env: Mapping[str, str], name: str) -> str:
    # Lower case first, as curl and urllib do; an empty value means unset.
    return (env.get(name) or env.get(name.upper()) or "").strip()


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names the host, as Go's net/http reads it.

    Entries are comma-separated: ``*`` (every host), a name that matches
    itself and its subdomains (a leading ``.`` or ``*.`` is ignored), an IP
    address or a CIDR range; any entry may end in ``:port`` to match only
    that port.
    """
    host = host.lower().strip("[]")
    address = _address(host)
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.removeprefix("*").removeprefix(".").strip("[]")
        if host == name or host.endswith("." + name):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    # "host:port" and "[v6]:port"; a bare IPv6 address has colons but no port.
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return inside, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    host = host.lower().strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _address(host)
    return address is not None and address.is_loopback
