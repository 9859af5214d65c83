from pathlib import Path

import yaml

from regseal.local.registry import (
    HtpasswdAuth,
    RegistrySettings,
    TokenAuth,
    registry_environment,
    render_registry_config,
)


def render(**overrides):
    settings = RegistrySettings(
        s3_endpoint="http://127.0.0.1:45000",
        bucket="registry",
        region="us-east-1",
        **overrides,
    )
    text = render_registry_config(
        settings, listen="127.0.0.1:45001", http_secret="0123abcd"
    )
    return yaml.safe_load(text)


def test_config_points_the_s3_driver_at_moto():
    s3 = render()["storage"]["s3"]

    assert s3["regionendpoint"] == "http://127.0.0.1:45000"
    assert s3["bucket"] == "registry"
    assert s3["region"] == "us-east-1"
    assert s3["rootdirectory"] == "/"
    assert s3["secure"] is False
    assert s3["v4auth"] is True
    assert (s3["accesskey"], s3["secretkey"]) == ("testing", "testing")
    # 2.8.2 has no such key; the endpoint alone selects path-style addressing.
    assert "forcepathstyle" not in s3


def test_config_has_no_blob_descriptor_cache_and_no_redirects():
    storage = render()["storage"]

    assert "cache" not in storage
    assert storage["redirect"] == {"disable": True}
    assert storage["delete"] == {"enabled": True}


def test_config_listens_on_the_given_loopback_address_with_the_secret():
    http = render()["http"]

    assert http["addr"] == "127.0.0.1:45001"
    assert http["secret"] == "0123abcd"


def test_registry_environment_drops_the_ca_bundle_trap_only():
    environ = {
        "AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
        "PATH": "/usr/bin",
        "AWS_REGION": "us-east-1",
    }

    assert registry_environment(environ) == {
        "PATH": "/usr/bin",
        "AWS_REGION": "us-east-1",
    }


def test_config_is_open_without_auth():
    assert "auth" not in render()


def test_config_with_htpasswd_auth_names_the_file():
    config = render(auth=HtpasswdAuth(Path("/tmp/w d/htpasswd")))

    assert config["auth"] == {
        "htpasswd": {"realm": "regseal-local", "path": "/tmp/w d/htpasswd"}
    }
    assert config["storage"]["delete"] == {"enabled": True}


def test_config_with_token_auth_trusts_the_token_service_certificate():
    auth = TokenAuth(
        realm="http://127.0.0.1:45002/token",
        service="regseal-local-registry",
        issuer="regseal-local-token-service",
        root_certificate=Path("/tmp/w/token-signing.crt"),
    )

    assert render(auth=auth)["auth"] == {
        "token": {
            "realm": "http://127.0.0.1:45002/token",
            "service": "regseal-local-registry",
            "issuer": "regseal-local-token-service",
            "rootcertbundle": "/tmp/w/token-signing.crt",
        }
    }
