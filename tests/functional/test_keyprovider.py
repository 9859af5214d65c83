"""``regseal-keyprovider`` driven as ocicrypt drives it, on moto's KMS server.

Debian's skopeo 1.9.3 (ocicrypt 1.0.3) cannot call keyproviders
(reference/registry-on-s3.md §7), so these protocol tests are the interop
check: each request is the JSON document ocicrypt's Go code sends (base64
bytes, capitalized ``Parameters``/``DecryptConfig``, ``null`` for the unused
param objects) or the one ocicrypt-rs sends (integer arrays), piped into the
installed executable, whose stdout must be exactly one answer document.

The moto server enforces IAM (actions only): the "team-a runtime" user may
call kms:Decrypt, the "no grant" user may not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from regseal.kms import ANNOTATION_KMS, KmsPacket, KmsWrapper, encryption_context
from regseal.ocicrypt import (
    ANNOTATION_PUBOPTS,
    LayerEncryptor,
    PrivateOptions,
    encode_base64,
)
from tests.support.crypto import decrypt_with_options
from tests.support.motoserver import moto_server
from tests.support.registry import random_layer

KEYPROVIDER = str(Path(sys.executable).with_name("regseal-keyprovider"))
REPOSITORY = "team-a/app"
# What `--decryption-key provider:regseal` puts in the parameters: "Enabled".
ENABLED = base64.b64encode(b"Enabled").decode()
# ocicrypt hands every provider the whole DecryptConfig, other keys included.
OTHER_PRIVATE_KEY = (
    "-----BEGIN PRIVATE KEY-----\nTk9UQVJFQUxLRVk=\n-----END PRIVATE KEY-----\n"
)


@pytest.fixture(scope="module")
def kms_server(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto-keyprovider")) as server:
        kms = server.client("kms")
        keys = {
            team: kms.create_key(Description=team)["KeyMetadata"]["Arn"]
            for team in ("team-a", "team-b")
        }
        kms.create_alias(AliasName="alias/team-a", TargetKeyId=keys["team-a"])
        admin = server.user("admin", ["kms:*"])
        users = {
            # DescribeKey: an allow-list that names an alias resolves it.
            "runtime": server.user(
                "team-a-runtime", ["kms:Decrypt", "kms:Encrypt", "kms:DescribeKey"]
            ),
            "no-grant": server.user("no-grant", ["kms:DescribeKey"]),
        }
        server.enforce_iam(admin)
        yield server, keys, users


class Sealed:
    """One layer encrypted and KMS-wrapped as the seal function does it."""

    def __init__(self, server, key_arn: str, repository: str = REPOSITORY):
        self.plaintext = random_layer(2048)
        self.options = PrivateOptions.generate(
            "sha256:" + hashlib.sha256(self.plaintext).hexdigest()
        )
        encryptor = LayerEncryptor(self.options)
        self.ciphertext = encryptor.update(self.plaintext)
        layer = encryptor.finalize()
        self.descriptor = {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "digest": str(layer.digest),
            "size": layer.size,
            "annotations": {ANNOTATION_PUBOPTS: layer.public_options.to_annotation()},
        }
        wrapper = KmsWrapper(server.client("kms"))
        self.item = wrapper.wrap(
            self.options.to_json(),
            key_arn,
            encryption_context(repository, self.options.digest),
        )
        self.descriptor["annotations"][ANNOTATION_KMS] = self.item
        self.key_arn = key_arn

    @property
    def secrets(self) -> list[str]:
        """Strings that must never appear in any output but the answer."""
        return [
            encode_base64(self.options.symkey),
            self.options.symkey.hex(),
            encode_base64(self.options.to_json()),
            "symkey",
        ]


def go_unwrap_request(annotation_item: str) -> dict:
    """The keyunwrap request ocicrypt (Go) sends for one annotation item."""
    return {
        "op": "keyunwrap",
        "keywrapparams": {"ec": None, "optsdata": None},
        "keyunwrapparams": {
            "dc": {
                "Parameters": {
                    "regseal": [ENABLED],
                    "privkeys": [encode_base64(OTHER_PRIVATE_KEY.encode())],
                    "privkeys-passwords": [""],
                }
            },
            # Go base64-decodes the item and marshals the bytes as base64
            # again: the very string of the annotation item.
            "annotation": annotation_item,
        },
    }


def rust_unwrap_request(annotation_item: str) -> dict:
    """The same request as ocicrypt-rs sends it: every byte field an array."""
    return {
        "op": "keyunwrap",
        "keywrapparams": {
            "ec": {"Parameters": {}, "DecryptConfig": {"Parameters": {}}},
            "optsdata": [],
        },
        "keyunwrapparams": {
            "dc": {"Parameters": {"regseal": [list(b"Enabled")]}},
            "annotation": list(base64.b64decode(annotation_item)),
        },
    }


def go_wrap_request(optsdata: bytes, argument: str) -> dict:
    """The keywrap request ocicrypt (Go) sends for --encryption-key provider:…"""
    return {
        "op": "keywrap",
        "keywrapparams": {
            "ec": {
                "Parameters": {
                    "regseal": [encode_base64(argument.encode())],
                    "pubkeys": [encode_base64(b"-----BEGIN PUBLIC KEY-----\n")],
                },
                "DecryptConfig": {"Parameters": {}},
            },
            "optsdata": encode_base64(optsdata),
        },
        "keyunwrapparams": {"dc": None, "annotation": None},
    }


def run(server, request, credentials=None, args=(), env=None):
    data = request if isinstance(request, bytes) else json.dumps(request).encode()
    return subprocess.run(
        [KEYPROVIDER, *args],
        input=data,
        capture_output=True,
        env={**server.env(credentials), **(env or {})},
        timeout=60,
        check=False,
    )


def assert_refused(result, *needles, secrets=()):
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert result.stdout == b""
    assert stderr.startswith("regseal-keyprovider: error: ")
    assert stderr.count("\n") == 1, "one line, no traceback"
    for needle in needles:
        assert needle in stderr
    for secret in (*secrets, "Tk9UQVJFQUxLRVk=", "BEGIN PRIVATE KEY"):
        assert secret not in stderr
    return stderr


def answer(result) -> dict:
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return json.loads(result.stdout)


# --------------------------------------------------------------------------
# keyunwrap


@pytest.mark.parametrize(
    "build", [go_unwrap_request, rust_unwrap_request], ids=["go-base64", "rust-ints"]
)
def test_unwrap_returns_the_options_that_decrypt_the_layer(kms_server, build):
    server, keys, users = kms_server
    sealed = Sealed(server, keys["team-a"])

    reply = answer(run(server, build(sealed.item), users["runtime"]))

    assert list(reply) == ["keyunwrapresults"]
    assert list(reply["keyunwrapresults"]) == ["optsdata"]
    optsdata = reply["keyunwrapresults"]["optsdata"]
    assert all(isinstance(b, int) and 0 <= b <= 255 for b in optsdata)
    assert bytes(optsdata) == sealed.options.to_json()
    assert (
        decrypt_with_options(sealed.descriptor, sealed.ciphertext, bytes(optsdata))
        == sealed.plaintext
    )


def test_unwrap_answer_is_read_by_a_go_client_as_bytes(kms_server):
    # Go's encoding/json fills a []byte from an integer array (reference
    # §5.5); the answer document holds nothing else.
    server, keys, users = kms_server
    sealed = Sealed(server, keys["team-a"])

    result = run(server, go_unwrap_request(sealed.item), users["runtime"])

    assert result.stdout == (
        b'{"keyunwrapresults":{"optsdata":['
        + ",".join(str(b) for b in sealed.options.to_json()).encode()
        + b"]}}"
    )


def test_unwrap_under_a_changed_repository_context_is_refused_by_kms(kms_server):
    server, keys, users = kms_server
    sealed = Sealed(server, keys["team-a"])
    packet = KmsPacket.from_item(sealed.item)
    moved = KmsPacket(
        packet.kid,
        packet.wrapped_data,
        packet.region,
        {**packet.encryption_context, "repository": "team-b/app"},
    )

    result = run(server, go_unwrap_request(moved.to_item()), users["runtime"])

    assert_refused(
        result,
        f"KMS key {keys['team-a']}",
        "repository 'team-b/app'",
        "encryption context does not match",
        secrets=sealed.secrets,
    )


def test_unwrap_of_another_teams_key_is_refused_by_the_allow_list(kms_server):
    server, keys, users = kms_server
    sealed = Sealed(server, keys["team-b"], repository="team-b/app")

    result = run(
        server,
        go_unwrap_request(sealed.item),
        users["runtime"],
        args=["--allow-key", "alias/team-a"],
    )

    assert_refused(
        result,
        f"refused KMS key {keys['team-b']} for repository 'team-b/app'",
        "alias/team-a",
        secrets=sealed.secrets,
    )


def test_allow_list_from_the_environment_admits_the_teams_alias(kms_server):
    server, keys, users = kms_server
    sealed = Sealed(server, keys["team-a"])

    reply = answer(
        run(
            server,
            go_unwrap_request(sealed.item),
            users["runtime"],
            env={
                "REGSEAL_KEYPROVIDER_ALLOW_KEYS": "alias/team-a",
                "REGSEAL_KEYPROVIDER_ALLOW_REPOSITORIES": "team-a/*",
            },
        )
    )

    assert bytes(reply["keyunwrapresults"]["optsdata"]) == sealed.options.to_json()


def test_unwrap_outside_the_allowed_repositories_is_refused(kms_server):
    server, keys, users = kms_server
    sealed = Sealed(server, keys["team-a"], repository="team-c/app")

    result = run(
        server,
        go_unwrap_request(sealed.item),
        users["runtime"],
        env={"REGSEAL_KEYPROVIDER_ALLOW_REPOSITORIES": "team-a/*, team-x/*"},
    )

    assert_refused(
        result,
        f"refused KMS key {keys['team-a']} for repository 'team-c/app'",
        "['team-a/*', 'team-x/*']",
        secrets=sealed.secrets,
    )


def test_unwrap_by_a_principal_without_a_decrypt_grant_is_denied(kms_server):
    server, keys, users = kms_server
    sealed = Sealed(server, keys["team-a"])

    result = run(server, go_unwrap_request(sealed.item), users["no-grant"])

    assert_refused(
        result,
        "KMS Decrypt denied",
        f"KMS key {keys['team-a']} for repository 'team-a/app'",
        secrets=sealed.secrets,
    )


# --------------------------------------------------------------------------
# keywrap


def test_wrap_binds_the_key_to_the_repository_and_layer_and_unwraps_again(
    kms_server,
):
    server, keys, users = kms_server
    options = PrivateOptions.generate("sha256:" + "ab" * 32)
    argument = f"alias/team-a?repository={REPOSITORY}"

    reply = answer(
        run(server, go_wrap_request(options.to_json(), argument), users["runtime"])
    )

    assert list(reply) == ["keywrapresults"]
    annotation = bytes(reply["keywrapresults"]["annotation"])
    packet = KmsPacket.from_item(encode_base64(annotation))
    assert packet.kid == keys["team-a"]
    assert packet.region == "us-east-1"
    assert packet.encryption_context == {
        "repository": REPOSITORY,
        "layer": "sha256:" + "ab" * 32,
    }
    # ocicrypt stores base64(annotation) as the item; unwrapping it again
    # gives back the options.
    unwrapped = answer(
        run(server, go_unwrap_request(encode_base64(annotation)), users["runtime"])
    )
    assert bytes(unwrapped["keyunwrapresults"]["optsdata"]) == options.to_json()


def test_wrap_accepts_integer_arrays_and_a_key_arn_with_its_region(kms_server):
    server, keys, users = kms_server
    options = PrivateOptions.generate("sha256:" + "cd" * 32)
    request = {
        "op": "keywrap",
        "keywrapparams": {
            "ec": {
                "Parameters": {
                    "regseal": [list(f"{keys['team-a']}?repository=team-a/x".encode())]
                },
                "DecryptConfig": {"Parameters": {}},
            },
            "optsdata": list(options.to_json()),
        },
        "keyunwrapparams": {"dc": {"Parameters": {}}, "annotation": []},
    }

    reply = answer(run(server, request, users["runtime"], env={"AWS_REGION": ""}))

    packet = KmsPacket.from_item(
        encode_base64(bytes(reply["keywrapresults"]["annotation"]))
    )
    assert packet.encryption_context["repository"] == "team-a/x"
    assert packet.kid == keys["team-a"]


@pytest.mark.parametrize(
    ("argument", "needle"),
    [
        ("alias/team-a", "expected KEY?repository=NAME"),
        ("alias/team-a?repository=Team-A/app", "expected a repository name"),
        ("alias/team-a?repository=a&repository=b", "expected KEY?repository=NAME"),
        ("alias/team-a?repository=a&colour=red", "expected KEY?repository=NAME"),
    ],
    ids=["no-repository", "bad-name", "two-repositories", "unknown-member"],
)
def test_wrap_argument_errors_name_the_expected_form(kms_server, argument, needle):
    server, _keys, users = kms_server
    options = PrivateOptions.generate("sha256:" + "ef" * 32)

    result = run(server, go_wrap_request(options.to_json(), argument), users["runtime"])

    assert_refused(result, needle, secrets=[encode_base64(options.symkey)])


def test_wrap_without_a_regseal_parameter_is_an_error(kms_server):
    server, _keys, users = kms_server
    options = PrivateOptions.generate("sha256:" + "01" * 32)
    request = go_wrap_request(options.to_json(), "unused")
    del request["keywrapparams"]["ec"]["Parameters"]["regseal"]

    result = run(server, request, users["runtime"])

    assert_refused(
        result,
        "expected one provider:regseal:KEY?repository=NAME argument",
        "got 0",
        secrets=[encode_base64(options.symkey)],
    )


# --------------------------------------------------------------------------
# garbage in


@pytest.mark.parametrize(
    ("request_body", "needle"),
    [
        (b"not json at all", "expected a keyprovider request as a JSON object"),
        (b"[1, 2]", "expected a keyprovider request as a JSON object, got list"),
        (b'{"op":"keyunwrap","op":"keywrap"}', "duplicate JSON member 'op'"),
        (b'{"op":"keysteal"}', "expected op 'keywrap' or 'keyunwrap', got 'keysteal'"),
        (
            b'{"op":"keyunwrap","keyunwrapparams":{"dc":null,"annotation":null}}',
            "keyunwrap request has no keyunwrapparams.annotation",
        ),
        (
            b'{"op":"keyunwrap","keyunwrapparams":{"annotation":"%%%"}}',
            "expected keyunwrapparams.annotation in standard base64",
        ),
        (
            b'{"op":"keyunwrap","keyunwrapparams":{"annotation":[1,256]}}',
            "as a base64 string or an array of integers 0-255",
        ),
        (
            b'{"op":"keyunwrap","keyunwrapparams":{"annotation":"eyJ4IjoxfQ=="}}',
            "KMS packet has unknown members ['x']",
        ),
        (
            b'{"op":"keywrap","keywrapparams":{"ec":null,"optsdata":"e30="}}',
            "expected one provider:regseal",
        ),
    ],
    ids=[
        "not-json",
        "array",
        "duplicate",
        "unknown-op",
        "null-annotation",
        "bad-base64",
        "byte-out-of-range",
        "not-a-packet",
        "no-argument",
    ],
)
def test_garbage_requests_get_one_clear_line_and_status_1(
    kms_server, request_body, needle
):
    server, _keys, users = kms_server

    result = run(server, request_body, users["runtime"])

    assert_refused(result, needle)


def test_private_options_that_are_not_options_are_refused_without_echo(kms_server):
    server, _keys, users = kms_server
    secret = b'{"symkey":"c2VjcmV0","digest":"sha256:00","cipheroptions":{}}'

    result = run(
        server, go_wrap_request(secret, "alias/team-a?repository=a"), users["runtime"]
    )

    assert_refused(result, "cipheroptions.nonce", secrets=["c2VjcmV0", "secret"])
