"""moto's server as the local stack starts it signs KMS digests as AWS does."""

import hashlib
import threading

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import load_der_public_key
from securesystemslib.signer import Signer

from regseal.local.motoserver import MOTO_LAUNCHER, start_moto
from regseal.tuf.signers import import_kms_key

PAYLOAD = b"regseal launcher payload " * 300  # > 4096 bytes, like a big snapshot


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory):
    process, endpoint = start_moto(
        workdir=tmp_path_factory.mktemp("moto"), cancel=threading.Event()
    )
    try:
        yield process, endpoint
    finally:
        process.stop()


@pytest.fixture
def kms(moto_endpoint, monkeypatch):
    _, endpoint = moto_endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return boto3.client("kms")


def test_stack_starts_moto_through_the_launcher(moto_endpoint):
    process, _ = moto_endpoint

    assert process.popen.args[1:3] == ["-m", MOTO_LAUNCHER]


def test_awssigner_signatures_from_the_stacks_moto_verify(kms):
    key_id = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")[
        "KeyMetadata"
    ]["KeyId"]
    uri = f"awskms:{key_id}"
    key = import_kms_key(uri)

    signature = Signer.from_priv_key_uri(uri, key).sign(PAYLOAD)

    key.verify_signature(signature, PAYLOAD)


def test_raw_messages_are_still_hashed_by_moto(kms):
    key_id = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")[
        "KeyMetadata"
    ]["KeyId"]
    public = load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    message = b"short raw message"

    raw = kms.sign(
        KeyId=key_id,
        Message=message,
        MessageType="RAW",
        SigningAlgorithm="ECDSA_SHA_256",
    )["Signature"]
    digest = kms.sign(
        KeyId=key_id,
        Message=hashlib.sha256(message).digest(),
        MessageType="DIGEST",
        SigningAlgorithm="ECDSA_SHA_256",
    )["Signature"]

    public.verify(raw, message, ec.ECDSA(SHA256()))
    public.verify(digest, message, ec.ECDSA(SHA256()))
