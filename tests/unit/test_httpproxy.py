"""Proxy choice from the environment, as curl and Go's net/http (skopeo) make it."""

from __future__ import annotations

import pytest

from regseal.errors import RegistryError
from regseal.httpproxy import proxy_for

PROXY = "http://proxy.corp.example:3128"


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://harbor.example.com/v2/", {"HTTPS_PROXY": PROXY}, PROXY),
        ("https://harbor.example.com/v2/", {"https_proxy": PROXY}, PROXY),
        ("https://harbor.example.com/v2/", {"HTTP_PROXY": PROXY}, None),
        ("http://harbor.example.com/v2/", {"HTTP_PROXY": PROXY}, PROXY),
        ("https://harbor.example.com/v2/", {}, None),
        ("https://harbor.example.com/v2/", {"HTTPS_PROXY": ""}, None),
        # a scheme-less proxy value means http://
        ("https://h.example.com/", {"HTTPS_PROXY": "proxy:3128"}, "http://proxy:3128"),
        # loopback is always direct
        ("http://127.0.0.1:5000/v2/", {"HTTP_PROXY": PROXY}, None),
        ("http://localhost:5000/v2/", {"HTTP_PROXY": PROXY}, None),
        ("http://[::1]:5000/v2/", {"HTTP_PROXY": PROXY}, None),
    ],
)
def test_proxy_follows_the_scheme_variable(url, env, expected):
    assert proxy_for(url, env) == expected


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("harbor.example.com", True),
        ("example.com", True),  # a domain covers its subdomains
        (".example.com", True),
        ("*.example.com", True),
        ("*", True),
        ("other.example.com", False),
        ("ample.com", False),  # a suffix of a label is not a domain
        ("harbor.example.com:443", True),  # https's default port
        ("harbor.example.com:8443", False),
        (" registry.local , HARBOR.EXAMPLE.COM ", True),
        ("", False),
    ],
)
def test_no_proxy_names_hosts_domains_and_ports(no_proxy, bypassed):
    env = {"HTTPS_PROXY": PROXY, "NO_PROXY": no_proxy}

    chosen = proxy_for("https://harbor.example.com/v2/", env)

    assert chosen == (None if bypassed else PROXY)


@pytest.mark.parametrize(
    ("url", "no_proxy", "bypassed"),
    [
        ("https://10.1.2.3/v2/", "10.0.0.0/8", True),
        ("https://10.1.2.3/v2/", "192.168.0.0/16", False),
        ("https://10.1.2.3/v2/", "10.1.2.3", True),
        ("https://[fd00::5]/v2/", "fd00::/8", True),
        ("https://[fd00::5]:5000/v2/", "[fd00::5]:5000", True),
        ("https://[fd00::5]:5000/v2/", "[fd00::5]:6000", False),
    ],
)
def test_no_proxy_matches_addresses_and_ranges(url, no_proxy, bypassed):
    env = {"https_proxy": PROXY, "no_proxy": no_proxy}

    assert proxy_for(url, env) == (None if bypassed else PROXY)


def test_a_proxy_value_that_is_not_a_url_is_refused_without_echoing_it():
    env = {"HTTPS_PROXY": "socks5://user:s3cret@proxy:1080"}

    with pytest.raises(RegistryError, match="HTTPS_PROXY: expected a proxy URL") as e:
        proxy_for("https://harbor.example.com/v2/", env)

    assert "s3cret" not in str(e.value)
