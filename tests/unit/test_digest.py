import pytest

from regseal.digest import Digest
from regseal.errors import DigestError


def test_digest_of_known_bytes():
    # sha256("") is the well-known empty digest.
    assert Digest.of(b"").value == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(
    "text",
    [
        "sha256:zz",
        "sha512:" + "a" * 128,
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 64 + "\n",
        "",
    ],
)
def test_digest_rejects_malformed(text):
    with pytest.raises(DigestError, match="expected a sha256 digest"):
        Digest.parse(text)


def test_digest_parts():
    d = Digest.parse("sha256:" + "ab" * 32)
    assert d.hex == "ab" * 32
    assert str(d) == "sha256:" + "ab" * 32
