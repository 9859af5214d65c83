import bcrypt
import pytest

from regseal.errors import LocalStackError
from regseal.local.htpasswd import write_htpasswd


def test_htpasswd_has_one_bcrypt_entry_for_the_account(tmp_path):
    path = write_htpasswd(tmp_path, "testing", "testing")

    [line] = path.read_text().splitlines()
    user, hashed = line.split(":", 1)
    assert user == "testing"
    assert hashed.startswith("$2b$04$")
    assert bcrypt.checkpw(b"testing", hashed.encode())
    assert not bcrypt.checkpw(b"other", hashed.encode())
    assert path.stat().st_mode & 0o077 == 0


def test_username_with_a_colon_is_refused(tmp_path):
    with pytest.raises(LocalStackError, match="without ':'"):
        write_htpasswd(tmp_path, "a:b", "x")
