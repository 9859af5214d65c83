"""Catch secrets in log records: keys, nonces, KMS plaintext, layer bytes.

Every test runs with :class:`LeakWatch` installed (tests/conftest.py). It
records the secrets the test makes, in the textual forms a careless log
line would carry them (hex, standard and URL-safe base64, Python's bytes
repr), and keeps every log record emitted meanwhile: regseal's own loggers
at DEBUG, everything else at the root logger's level. When the test ends,
any secret found in any record (message, extra fields, exception text)
fails it, naming the kind of secret and the logger, never the secret.

Recorded secrets:

- each layer's symmetric key and nonce (``PrivateOptions.generate``);
- the private options JSON handed to KMS and returned by it;
- KMS ciphertext blobs and JWE items (wrapped keys: STYLE.md says never log
  them either);
- the private keys tests generate (PEM body lines, the private scalar);
- slices of every layer a test pushes through FakeRegistry or ocilayout.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

MIN_FORM = 16  # shorter forms would match by chance
_PROBE = 12
_STANDARD_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime"}


def forms(data: bytes) -> set[str]:
    """The ways ``data`` could be spelled in a log line."""
    found = {
        data.hex(),
        base64.b64encode(data).decode(),
        base64.b64encode(data).decode().rstrip("="),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
        *_repr_bodies(data),
    }
    return {f for f in found if len(f) >= MIN_FORM}


def _repr_bodies(data: bytes) -> tuple[str, str]:
    """``data`` as it appears inside a bytes repr, in both quoting styles.

    A repr quotes with ``"`` when the bytes hold a ``'`` and no ``"``, and then
    leaves ``'`` unescaped; a longer slice around ``data`` can make the other
    choice, so both spellings of a ``'`` are kept.
    """
    single = repr(data + b'"')[2:-2]  # a '"' forces single quotes: \' escaped
    return single, single.replace("\\'", "'")


def _distinct_enough(data: bytes) -> bool:
    return len(set(data)) >= 8


@dataclass
class Finding:
    kind: str
    logger: str
    level: str

    def __str__(self) -> str:
        return f"{self.kind} in a {self.level} record of logger {self.logger!r}"


class LeakWatch(logging.Handler):
    """Collects secrets and log records; :meth:`scan` matches them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._guard = threading.Lock()
        self.secrets: dict[str, str] = {}  # form -> kind
        self._probes: dict[str, list[str]] = {}  # a form's first characters
        self.records: list[logging.LogRecord] = []
        self._seen: set[int] = set()

    # -- collecting ------------------------------------------------------------

    def add(self, kind: str, data: bytes) -> None:
        with self._guard:
            for form in forms(data):
                self.secrets.setdefault(form, kind)
                self._probes.setdefault(form[:_PROBE], []).append(form)

    def add_text(self, kind: str, text: str) -> None:
        if len(text) >= MIN_FORM:
            with self._guard:
                if text not in self.secrets:
                    self.secrets[text] = kind
                    self._probes.setdefault(text[:_PROBE], []).append(text)

    def add_layer(self, data: bytes) -> None:
        """Remember slices of a layer's bytes (the whole blob is not needed)."""
        for start in (16, len(data) // 2, max(len(data) - 40, 0)):
            piece = data[start : start + 24]
            if len(piece) == 24 and _distinct_enough(piece):
                self.add("layer content", piece)

    def add_private_key_pem(self, pem: bytes, scalar: int | None = None) -> None:
        for line in pem.decode().splitlines():
            if not line.startswith("-----") and len(line) >= 40:
                self.add_text("a private key", line)
        if scalar is not None:
            self.add_text("a private key", str(scalar)[:40])
            self.add_text("a private key", f"{scalar:x}"[:40])

    # -- logging.Handler ---------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        self.collect(record)

    def collect(self, record: logging.LogRecord) -> None:
        with self._guard:
            if id(record) not in self._seen:
                self._seen.add(id(record))
                self.records.append(record)

    def addFilter(self, filter: object) -> None:
        """Take no filters.

        Powertools' Logger adds one to every root handler when it starts,
        dropping its own service's records (``regseal``, and so every
        ``regseal.*`` module) to avoid duplicates; the watch must see them.
        A handler on the ``regseal`` logger itself is no way out: Powertools
        takes that logger's first handler for its own.
        """

    # -- matching ------------------------------------------------------------------

    def forget(self) -> None:
        """Start a new test: drop the records seen so far (secrets stay)."""
        with self._guard:
            self.records.clear()
            self._seen.clear()

    def scan(self) -> list[Finding]:
        """Every record of this test that holds a secret of the session."""
        with self._guard:
            findings = []
            for record in self.records:
                form = _first_match(_record_text(record), self._probes)
                if form is not None:
                    findings.append(
                        Finding(self.secrets[form], record.name, record.levelname)
                    )
        return findings


def _first_match(text: str, probes: dict[str, list[str]]) -> str | None:
    for i in range(len(text) - _PROBE + 1):
        candidates = probes.get(text[i : i + _PROBE])
        if candidates:
            for form in candidates:
                if text.startswith(form, i):
                    return form
    return None


def _record_text(record: logging.LogRecord) -> str:
    parts: list[str] = []
    try:
        parts.append(record.getMessage())
    except Exception:  # a broken format string is not this check's business
        parts.append(str(record.msg))
    for key, value in record.__dict__.items():
        if key not in _STANDARD_RECORD_FIELDS:
            parts.append(f"{key}={value!r}")
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


def kinds(findings: Iterable[Finding]) -> list[str]:
    return sorted({str(f) for f in findings})


WATCH = LeakWatch()


def install_recorders(monkeypatch, watch: LeakWatch) -> None:
    """Wrap the places where tests and regseal make secrets, for one test."""
    from regseal import jwe, ocicrypt
    from regseal.kms import KmsPacket, KmsWrapper
    from tests.support import ocilayout
    from tests.support.registry import FakeRegistry

    generate = ocicrypt.PrivateOptions.generate.__func__

    def recorded_generate(cls, digest):
        options = generate(cls, digest)
        watch.add("a layer's symmetric key", options.symkey)
        watch.add("a layer's nonce", options.nonce)
        watch.add("a layer's private options", options.to_json())
        return options

    monkeypatch.setattr(
        ocicrypt.PrivateOptions, "generate", classmethod(recorded_generate)
    )

    wrap, unwrap = KmsWrapper.wrap, KmsWrapper.unwrap

    def recorded_wrap(self, privopts_json, key_id, context):
        watch.add("KMS plaintext", privopts_json)
        item = wrap(self, privopts_json, key_id, context)
        watch.add("a KMS-wrapped key", KmsPacket.from_item(item).wrapped_data)
        return item

    def recorded_unwrap(self, item, **kwargs):
        plaintext = unwrap(self, item, **kwargs)
        watch.add("KMS plaintext", plaintext)
        return plaintext

    monkeypatch.setattr(KmsWrapper, "wrap", recorded_wrap)
    monkeypatch.setattr(KmsWrapper, "unwrap", recorded_unwrap)

    jwe_wrap = jwe.wrap

    def recorded_jwe_wrap(privopts_json, recipient):
        item = jwe_wrap(privopts_json, recipient)
        watch.add_text("a JWE-wrapped key", item[-48:])
        return item

    monkeypatch.setattr(jwe, "wrap", recorded_jwe_wrap)

    image_manifest = FakeRegistry.image_manifest

    def recorded_image_manifest(self, repository, layers, **options):
        for layer in layers:
            watch.add_layer(layer)
        return image_manifest(self, repository, layers, **options)

    monkeypatch.setattr(FakeRegistry, "image_manifest", recorded_image_manifest)

    tar_layer = ocilayout.tar_layer

    def recorded_tar_layer(*args, **kwargs):
        data = tar_layer(*args, **kwargs)
        watch.add_layer(data)
        return data

    monkeypatch.setattr(ocilayout, "tar_layer", recorded_tar_layer)


def install_key_recorders(monkeypatch, watch: LeakWatch) -> None:
    """Record every RSA and EC private key made while the session runs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def remember(key, scalar: int) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        watch.add_private_key_pem(pem, scalar)

    rsa_generate, ec_generate = rsa.generate_private_key, ec.generate_private_key

    def recorded_rsa(*args, **kwargs):
        key = rsa_generate(*args, **kwargs)
        remember(key, key.private_numbers().d)
        return key

    def recorded_ec(*args, **kwargs):
        key = ec_generate(*args, **kwargs)
        remember(key, key.private_numbers().private_value)
        return key

    monkeypatch.setattr(rsa, "generate_private_key", recorded_rsa)
    monkeypatch.setattr(ec, "generate_private_key", recorded_ec)


def ocicrypt_options():
    """The PrivateOptions class (its ``generate`` is wrapped while tests run)."""
    from regseal import ocicrypt

    return ocicrypt.PrivateOptions


def ocicrypt_generate():
    """The wrapped ``PrivateOptions.generate`` as a plain function."""
    return ocicrypt_options().generate.__func__
