"""Fixtures shared by every test tier."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

# Make `tests.support` importable and the handlers loadable by path.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import secrets  # noqa: E402
from tests.support.keys import KeyPair, generate_keypair  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _leak_watch_session():
    """Listen to every log record of the session (see tests/support/secrets.py)."""
    watch = secrets.WATCH
    logging.getLogger().addHandler(watch)
    with pytest.MonkeyPatch.context() as monkeypatch:
        secrets.install_key_recorders(monkeypatch, watch)
        secrets.install_recorders(monkeypatch, watch)
        yield watch
    logging.getLogger().removeHandler(watch)


@pytest.fixture(autouse=True)
def leak_watch(_leak_watch_session):
    """Fail the test if a secret of the session shows up in its log records."""
    watch = _leak_watch_session
    watch.forget()
    regseal_logger = logging.getLogger("regseal")
    level = regseal_logger.level
    regseal_logger.setLevel(logging.DEBUG)
    yield watch
    regseal_logger.setLevel(level)
    findings = watch.scan()
    watch.forget()
    if findings:
        pytest.fail(
            "secrets in log records: " + "; ".join(secrets.kinds(findings)),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def rsa_keypair() -> KeyPair:
    return generate_keypair("rsa")


@pytest.fixture(scope="session")
def ec_keypair() -> KeyPair:
    return generate_keypair("p256")


@pytest.fixture(scope="session")
def other_rsa_keypair() -> KeyPair:
    return generate_keypair("rsa")
