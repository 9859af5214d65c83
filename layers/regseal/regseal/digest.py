"""Content digests as the OCI image spec defines them (``algorithm:encoded``).

regseal only writes sha256 digests, and the distribution registry only
stores sha256 content, so parsing accepts exactly ``sha256:`` followed by 64
lowercase hex characters.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from regseal.errors import DigestError

_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, order=True)
class Digest:
    """A validated ``sha256:<hex>`` digest."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _SHA256.fullmatch(self.value):
            raise DigestError(
                f"expected a sha256 digest of 64 hex characters, got {self.value!r}"
            )

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse a digest string, rejecting other algorithms and lengths."""
        return cls(text)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The digest of ``data``."""
        return cls("sha256:" + hashlib.sha256(data).hexdigest())

    @classmethod
    def from_hash(cls, hasher: hashlib._Hash) -> Digest:
        """The digest held by a finished sha256 hash object."""
        return cls("sha256:" + hasher.hexdigest())

    @property
    def algorithm(self) -> str:
        return "sha256"

    @property
    def hex(self) -> str:
        return self.value[7:]

    def __str__(self) -> str:
        return self.value
