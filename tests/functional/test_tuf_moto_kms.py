"""Why regseal.local.motokms exists, and a canary for when it can go."""

import hashlib

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import load_der_public_key
from moto import mock_aws
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Timestamp

from regseal.errors import TufError
from regseal.tuf.signers import import_kms_key, with_online_uri
from tests.support.moto_kms import kms_digest_signing

PAYLOAD = b"regseal canary payload " * 300  # > 4096 bytes, like a big snapshot


@pytest.fixture
def kms(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


def _key(kms, spec="ECC_NIST_P256"):
    key_id = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=spec)["KeyMetadata"][
        "KeyId"
    ]
    return f"awskms:{key_id}"


def test_without_the_fix_moto_signs_the_hash_of_the_digest(kms):
    # Canary: when moto implements MessageType=DIGEST (getmoto/moto#10202) this
    # test fails, and regseal.local.motokms (with the moto launcher
    # regseal.local.motoserver_main and tests/support/moto_kms.py) should go.
    uri = _key(kms)
    key = import_kms_key(uri)
    signature = Signer.from_priv_key_uri(uri, key).sign(PAYLOAD)

    with pytest.raises(UnverifiedSignatureError):
        key.verify_signature(signature, PAYLOAD)
    digest = hashlib.sha256(PAYLOAD).digest()
    public = load_der_public_key(kms.get_public_key(KeyId=uri[7:])["PublicKey"])
    public.verify(bytes.fromhex(signature.signature), digest, ec.ECDSA(SHA256()))


@pytest.mark.parametrize("spec", ["ECC_NIST_P256", "ECC_NIST_P384", "RSA_2048"])
def test_with_the_fix_kms_signatures_verify_through_the_tuf_chain(kms, spec):
    with kms_digest_signing():
        uri = _key(kms, spec)
        key = with_online_uri(import_kms_key(uri), uri)
        signer = Signer.from_priv_key_uri(uri, key)
        root = Root()
        root.add_key(key, "timestamp")
        md = Metadata(Timestamp())
        md.sign(signer)
        root.verify_delegate("timestamp", md.signed_bytes, md.signatures)

        # The key survives a JSON round trip (as it does inside root.json).
        again = Key.from_dict(key.keyid, key.to_dict())
        again.verify_signature(md.signatures[key.keyid], md.signed_bytes)

        md.signed.version += 1
        with pytest.raises(UnsignedMetadataError):
            root.verify_delegate("timestamp", md.signed_bytes, md.signatures)


def test_unsupported_kms_key_specs_are_refused_before_import(kms):
    with pytest.raises(TufError, match="ECC_SECG_P256K1"):
        import_kms_key(_key(kms, "ECC_SECG_P256K1"))
    symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(TufError, match="SIGN_VERIFY"):
        import_kms_key(f"awskms:{symmetric}")
