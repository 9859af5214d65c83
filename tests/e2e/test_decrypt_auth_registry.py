"""``regseal decrypt docker://…`` from registries that require an account.

One registry per auth scheme (htpasswd basic auth; token auth with the local
token service), Debian's docker-registry 2.8 on moto. skopeo pushes an image
it encrypts for a JWE key, with the account; ``regseal decrypt`` with the
account from ``--src-creds`` and from the seal's variables must write the
layout ``skopeo copy --src-creds --decryption-key`` writes. A wrong password
or no account ends with an error naming the registry and the refusal, exit
status 1, and no destination.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from regseal.cli import main
from tests.support.auth_registry import KINDS, PASSWORD, USERNAME, running_auth_registry
from tests.support.ocilayout import read_image_layout, sha256_digest, tar_layer
from tests.support.ocilayout import write_image_layout as write_layout

pytestmark = pytest.mark.e2e

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
CREDS = f"{USERNAME}:{PASSWORD}"
ACCOUNT_VARIABLES = (
    "REGSEAL_REGISTRY_USERNAME",
    "REGSEAL_REGISTRY_PASSWORD",
    "REGSEAL_REGISTRY_CREDENTIALS",
)


@pytest.fixture(scope="module", params=KINDS)
def registry(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"decrypt-{request.param}")
    with running_auth_registry(request.param, workdir) as running:
        yield running


@pytest.fixture(scope="module")
def sealed(registry, tmp_path_factory, rsa_keypair):
    """An image skopeo encrypted for ``rsa_keypair``, pushed with the account."""
    directory = tmp_path_factory.mktemp(f"image-{registry.kind}")
    private, public = rsa_keypair.write(directory / "keys")
    layers = [
        tar_layer({"etc/release": b"auth " + registry.kind.encode()}),
        tar_layer({"opt/data.bin": os.urandom(100_000)}),
    ]
    image = write_layout(directory / "img", layers)
    reference = f"docker://{registry.address}/team-a/{registry.kind}:1"
    skopeo(
        "--dest-creds",
        CREDS,
        "--dest-tls-verify=false",
        "--encryption-key",
        f"jwe:{public}",
        image.reference,
        reference,
    )
    return reference, private, layers


@pytest.fixture
def no_account(monkeypatch):
    for name in ACCOUNT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def skopeo(*args):
    result = subprocess.run(
        [SKOPEO, "--insecure-policy", "copy", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def tree(path):
    return {
        str(file.relative_to(path)): (file.stat().st_mode & 0o777, file.read_bytes())
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def regseal_decrypt(*args):
    return main(["decrypt", "--no-progress", *args])


def test_decrypt_with_src_creds_and_with_the_seal_variables_equals_skopeo(
    registry, sealed, tmp_path, no_account, capsys
):
    reference, private, layers = sealed
    skopeo(
        "--src-creds",
        CREDS,
        "--src-tls-verify=false",
        "--decryption-key",
        str(private),
        reference,
        f"oci:{tmp_path / 'sk'}:1",
    )

    by_option = regseal_decrypt(
        "--src-creds", CREDS, "--key", str(private), reference, f"oci:{tmp_path}/a:1"
    )
    no_account.setenv("REGSEAL_REGISTRY_USERNAME", USERNAME)
    no_account.setenv("REGSEAL_REGISTRY_PASSWORD", PASSWORD)
    by_variables = regseal_decrypt(
        "--key", str(private), reference, f"oci:{tmp_path / 'b'}:1"
    )

    assert (by_option, by_variables) == (0, 0)
    expected = tree(tmp_path / "sk")
    assert tree(tmp_path / "a") == expected
    assert tree(tmp_path / "b") == expected
    decrypted = read_image_layout(tmp_path / "a", "1")
    assert list(decrypted.manifests[0].layer_digests) == [
        sha256_digest(x) for x in layers
    ]
    assert f"decrypted {reference} into" in capsys.readouterr().err
    if registry.tokens is not None:
        # The token service was asked for pull access to the repository.
        assert {
            "type": "repository",
            "name": f"team-a/{registry.kind}",
            "actions": ["pull"],
        } in [entry for access in registry.tokens.issued for entry in access]


def test_a_wrong_password_is_refused_by_name_and_writes_nothing(
    registry, sealed, tmp_path, no_account, capsys
):
    reference, private, _ = sealed
    wrong = "not-the-password-7f3a"

    status = regseal_decrypt(
        "--src-creds",
        f"{USERNAME}:{wrong}",
        "--key",
        str(private),
        reference,
        f"oci:{tmp_path / 'out'}:1",
    )

    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith(f"regseal: error: {reference}: registry {registry.address}")
    if registry.kind == "htpasswd":
        assert f"refused the credentials of {USERNAME!r} (from --src-creds)" in error
    else:
        assert "token service http://127.0.0.1:" in error
        assert f"refused {USERNAME!r} (credentials from --src-creds)" in error
    assert wrong not in error
    assert not (tmp_path / "out").exists()


def test_no_account_for_a_registry_that_needs_one_says_where_to_put_it(
    registry, sealed, tmp_path, no_account, capsys
):
    reference, private, _ = sealed

    status = regseal_decrypt(
        "--key", str(private), reference, f"oci:{tmp_path / 'out'}:1"
    )

    error = capsys.readouterr().err
    assert status == 1
    assert f"registry {registry.address}" in error
    assert (
        "--src-creds or $REGSEAL_REGISTRY_USERNAME/$REGSEAL_REGISTRY_PASSWORD" in error
    )
    if registry.kind == "htpasswd":
        assert "requires basic auth" in error
    else:
        assert "refused anonymous access" in error
    assert not (tmp_path / "out").exists()
