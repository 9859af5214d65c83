"""Settings for the write-back mode and the registry's API."""

import pytest

from regseal.settings import Settings, SettingsError

BASE = {"REGSEAL_BUCKET": "registry"}


def test_storage_is_the_default_mode_and_needs_no_registry_url():
    settings = Settings.from_env(BASE)

    assert settings.write_back == "storage"
    assert settings.registry_url == ""


def test_api_mode_reads_url_credentials_and_ca_bundle():
    settings = Settings.from_env(
        {
            **BASE,
            "REGSEAL_WRITE_BACK": "api",
            "REGSEAL_REGISTRY_URL": "https://harbor.example:8443",
            "REGSEAL_REGISTRY_CREDENTIALS": "secretsmanager:regseal/harbor-robot",
            "REGSEAL_REGISTRY_CA_BUNDLE": "/opt/ca.pem",
        }
    )

    assert settings.write_back == "api"
    assert settings.registry_url == "https://harbor.example:8443"
    assert settings.registry_credentials == "secretsmanager:regseal/harbor-robot"
    assert settings.registry_ca_bundle == "/opt/ca.pem"


@pytest.mark.parametrize("url", ["", "harbor.example", "ftp://harbor.example"])
def test_api_mode_needs_an_http_registry_url(url):
    env = {**BASE, "REGSEAL_WRITE_BACK": "api", "REGSEAL_REGISTRY_URL": url}

    with pytest.raises(SettingsError, match="REGSEAL_REGISTRY_URL: expected http"):
        Settings.from_env(env)


def test_unknown_mode_is_refused():
    with pytest.raises(SettingsError, match="expected one of storage, api"):
        Settings.from_env({**BASE, "REGSEAL_WRITE_BACK": "harbor"})


def test_credentials_must_name_secrets_manager_or_ssm():
    env = {
        **BASE,
        "REGSEAL_WRITE_BACK": "api",
        "REGSEAL_REGISTRY_URL": "http://127.0.0.1:5000",
        "REGSEAL_REGISTRY_CREDENTIALS": "robot:password",
    }

    with pytest.raises(SettingsError, match="REGSEAL_REGISTRY_CREDENTIALS"):
        Settings.from_env(env)
