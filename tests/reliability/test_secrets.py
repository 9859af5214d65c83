"""The leak watch (tests/support/secrets.py) sees what it must, and finds leaks.

Every test of the suite runs under the watch; these tests prove it is not
blind: a seal's own DEBUG records reach it, Powertools' filter does not hide
them, and each kind of secret planted in a record is found.
"""

from __future__ import annotations

import base64
import importlib.util
import logging
from pathlib import Path

import pytest

from regseal.digest import Digest
from regseal.seal import Outcome
from tests.support import secrets
from tests.support.registry import random_layer

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "seal" / "app.py"
log = logging.getLogger("regseal.seal")


@pytest.fixture
def sealed(rig):
    reg = rig.registry()
    layer = random_layer(5000)
    reg.registry.push_image("team-a/app", "1", [layer])
    options = []
    generate = secrets.ocicrypt_generate()

    def spy(cls, digest):
        made = generate(cls, digest)
        options.append(made)
        return made

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(secrets.ocicrypt_options(), "generate", classmethod(spy))
        result = rig.sealer(reg.store).handle(reg.tag_event("team-a/app", "1"))
    assert result.outcome is Outcome.SEALED
    return reg, layer, options[0], result


def planted(leak_watch, plant):
    """Findings for one planted record; the records are dropped afterwards."""
    plant()
    found = secrets.kinds(leak_watch.scan())
    leak_watch.forget()
    return found


def test_a_seal_logs_at_debug_into_the_watch_and_leaks_nothing(sealed, leak_watch):
    names = {r.name for r in leak_watch.records if r.levelno == logging.DEBUG}
    assert {"regseal.ocicrypt", "regseal.kms"} <= names
    assert leak_watch.scan() == []


def test_symmetric_key_in_base64_is_found(sealed, leak_watch):
    _, _, options, _ = sealed
    found = planted(
        leak_watch,
        lambda: log.debug("key %s", base64.b64encode(options.symkey).decode()),
    )
    assert found == [
        "a layer's symmetric key in a DEBUG record of logger 'regseal.seal'"
    ]


def test_nonce_in_hex_is_found_even_after_powertools_starts(
    sealed, leak_watch, monkeypatch
):
    _, _, options, _ = sealed
    monkeypatch.setenv("REGSEAL_BUCKET", "registry")
    spec = importlib.util.spec_from_file_location("seal_app_secrets", HANDLER)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    logging.getLogger("regseal").setLevel(logging.DEBUG)

    found = planted(leak_watch, lambda: log.info("nonce=%s", options.nonce.hex()))

    assert found == ["a layer's nonce in a INFO record of logger 'regseal.seal'"]


def test_kms_plaintext_in_an_exception_is_found(sealed, leak_watch):
    _, _, options, _ = sealed

    def plant():
        try:
            raise ValueError(options.to_json().decode())
        except ValueError:
            logging.getLogger("regseal.kms").warning("unwrap failed", exc_info=True)

    assert planted(leak_watch, plant) == [
        "a layer's private options in a WARNING record of logger 'regseal.kms'"
    ]


def test_layer_bytes_as_repr_are_found(sealed, leak_watch):
    _, layer, _, _ = sealed
    found = planted(
        leak_watch, lambda: log.debug("read %r", layer[len(layer) // 2 - 8 :][:64])
    )
    assert found == ["layer content in a DEBUG record of logger 'regseal.seal'"]


def test_private_key_in_an_extra_field_is_found(rsa_keypair, leak_watch):
    line = rsa_keypair.private_pem.decode().splitlines()[5]
    found = planted(
        leak_watch,
        lambda: logging.getLogger("other").warning("loaded", extra={"key": line}),
    )
    assert found == ["a private key in a WARNING record of logger 'other'"]


def test_wrapped_keys_are_found(sealed, leak_watch):
    reg, _, _, result = sealed
    descriptor = reg.registry.manifest(Digest.parse(result.sealed_digest))["layers"][0]
    item = descriptor["annotations"]["org.opencontainers.image.enc.keys.jwe"]
    found = planted(leak_watch, lambda: log.debug("jwe %s", item.split(",")[0]))
    assert found == ["a JWE-wrapped key in a DEBUG record of logger 'regseal.seal'"]


@pytest.mark.parametrize(
    "around",
    [b'"', b""],  # the longer slice quotes with ' (escaping it), or with "
)
def test_a_slice_is_found_in_the_repr_of_a_longer_slice_whatever_its_quoting(around):
    # Found flaky: a random 24-byte slice holding a ' but no " is spelled
    # with an unescaped ' in its own repr, but escaped in the repr of a
    # longer slice that also holds a ".
    piece = b"ab'cdefghij\x00klmnopqrstu\xff"
    watch = secrets.LeakWatch()
    watch.add("layer content", piece)
    record = logging.LogRecord(
        "regseal.seal", logging.DEBUG, "", 0, "read %r", (around + piece,), None
    )
    watch.collect(record)

    assert [str(f) for f in watch.scan()] == [
        "layer content in a DEBUG record of logger 'regseal.seal'"
    ]
