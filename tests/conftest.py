"""Fixtures shared by every test tier."""

from __future__ import annotations

import pytest
from tests.support.keys import KeyPair, generate_keypair


@pytest.fixture(scope="session")
def rsa_keypair() -> KeyPair:
    return generate_keypair("rsa")


@pytest.fixture(scope="session")
def ec_keypair() -> KeyPair:
    return generate_keypair("p256")


@pytest.fixture(scope="session")
def other_rsa_keypair() -> KeyPair:
    return generate_keypair("rsa")
