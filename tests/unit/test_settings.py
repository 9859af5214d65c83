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


def test_bad_input_comes_back_in_ten_seconds_when_the_queue_is_known():
    unset = Settings.from_env({"REGSEAL_BUCKET": "registry"})
    queue = "https://sqs.us-east-1.amazonaws.com/111122223333/regseal-events"
    wired = Settings.from_env(
        {
            "REGSEAL_BUCKET": "registry",
            "REGSEAL_QUEUE_URL": queue,
            "REGSEAL_BAD_INPUT_RETRY_SECONDS": "3",
        }
    )

    assert (unset.queue_url, unset.bad_input_retry_seconds) == (None, 10)
    assert (wired.queue_url, wired.bad_input_retry_seconds) == (queue, 3)
    with pytest.raises(SettingsError, match="REGSEAL_BAD_INPUT_RETRY_SECONDS"):
        Settings.from_env(
            {"REGSEAL_BUCKET": "registry", "REGSEAL_BAD_INPUT_RETRY_SECONDS": "soon"}
        )
