"""Fixtures shared by every test tier."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Make `tests.support` importable and the handlers loadable by path.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.keys import KeyPair, generate_keypair  # noqa: E402


@pytest.fixture(scope="session")
def rsa_keypair() -> KeyPair:
    return generate_keypair("rsa")


@pytest.fixture(scope="session")
def ec_keypair() -> KeyPair:
    return generate_keypair("p256")


@pytest.fixture(scope="session")
def other_rsa_keypair() -> KeyPair:
    return generate_keypair("rsa")
