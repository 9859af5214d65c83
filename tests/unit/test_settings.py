import pytest

from regseal.settings import Settings, SettingsError


def test_receive_limit_is_unknown_unless_set():
    assert Settings.from_env({"REGSEAL_BUCKET": "registry"}).max_receive_count == 0


def test_receive_limit_is_read_from_the_environment():
    settings = Settings.from_env(
        {"REGSEAL_BUCKET": "registry", "REGSEAL_MAX_RECEIVE_COUNT": "5"}
    )

    assert settings.max_receive_count == 5


def test_receive_limit_that_is_no_integer_is_named_in_the_error():
    with pytest.raises(SettingsError, match="REGSEAL_MAX_RECEIVE_COUNT: expected an"):
        Settings.from_env(
            {"REGSEAL_BUCKET": "registry", "REGSEAL_MAX_RECEIVE_COUNT": "x"}
        )


def test_plaintext_is_verified_unless_the_environment_says_false():
    default = Settings.from_env({"REGSEAL_BUCKET": "registry"})
    off = Settings.from_env(
        {"REGSEAL_BUCKET": "registry", "REGSEAL_VERIFY_PLAINTEXT": "False"}
    )
    on = Settings.from_env(
        {"REGSEAL_BUCKET": "registry", "REGSEAL_VERIFY_PLAINTEXT": "true"}
    )

    assert default.verify_plaintext is True
    assert off.verify_plaintext is False
    assert on.verify_plaintext is True


def test_verify_plaintext_that_is_no_boolean_is_named_in_the_error():
    with pytest.raises(
        SettingsError, match="REGSEAL_VERIFY_PLAINTEXT: expected 'true' or 'false'"
    ):
        Settings.from_env(
            {"REGSEAL_BUCKET": "registry", "REGSEAL_VERIFY_PLAINTEXT": "0"}
        )
