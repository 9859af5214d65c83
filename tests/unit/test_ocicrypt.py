"""The ocicrypt layer format: known answers, strict parsing, tamper detection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from regseal.digest import Digest
from regseal.errors import IntegrityError, OcicryptError
from regseal.ocicrypt import (
    ANNOTATION_JWE,
    ANNOTATION_PUBOPTS,
    CIPHER,
    PROVIDER_ANNOTATION_PREFIX,
    SLICE,
    EncryptedLayer,
    LayerCipher,
    LayerEncryptor,
    PrivateOptions,
    PublicOptions,
    decode_base64,
    decrypt_layer,
    decrypted_media_type,
    encode_base64,
    encrypted_media_type,
    is_encrypted_media_type,
    layer_annotations,
    missing_layer_annotations,
    parse_layer_annotations,
    split_items,
    strip_enc_annotations,
)

# reference/ocicrypt.md §8.1: ocicrypt's test key, 40 bytes 0x00..0x27.
SYMKEY = b"01234567890123456789012345678912"
PLAINTEXT = bytes(range(40))
VECTORS = [
    (
        "000102030405060708090a0b0c0d0e0f",
        "1cf80e9c9bccb9548f1078d2dd307c036e81f669979f9d3cc6ea253e10c32517f5e1833972d0140a",
        "3305571ee7b3cf8b2a791b20ceda393aa2af379df4086fed6c6a1176e60996ed",
    ),
    (  # the counter carries across the 64-bit boundary
        "0000000000000000ffffffffffffffff",
        "0bddf3429d3edd07d7327068f1d5ef6904de48e5e967ee5d3f07df5491e7fb0a192d4358c7d24c25",
        "c118d0ad2bab80c11934d9279cf80ec835115fc1c097add787e56c848c9201ae",
    ),
    (  # the whole 128-bit counter wraps to zero
        "ffffffffffffffffffffffffffffffff",
        "2979dda2ced827bbcdfa648a578cbf53e1d764f63b508eea23db41fe0debb5407f11aad2d43f29a1",
        "a3a3e06b1d6c67a4aa1a97fb32c1408adfe3c57ef29901f318bd8c7c2bd4a638",
    ),
]
VECTOR1_PLAIN_DIGEST = (
    "sha256:5faa4eec3611556812c2d74b437c8c49add3f910f10063d801441f7d75cd5e3b"
)


def options(nonce_hex: str = VECTORS[0][0], data: bytes = PLAINTEXT) -> PrivateOptions:
    return PrivateOptions(SYMKEY, bytes.fromhex(nonce_hex), Digest.of(data))


def encrypt(opts: PrivateOptions, data: bytes) -> tuple[bytes, EncryptedLayer]:
    encryptor = LayerEncryptor(opts)
    ciphertext = encryptor.update(data)
    return ciphertext, encryptor.finalize()


def privopts_json(**changes: object) -> bytes:
    obj: dict[str, object] = {
        "symkey": encode_base64(SYMKEY),
        "digest": VECTOR1_PLAIN_DIGEST,
        "cipheroptions": {"nonce": encode_base64(bytes(16))},
    }
    obj.update(changes)
    return json.dumps(obj).encode()


def pubopts_json(**changes: object) -> bytes:
    obj: dict[str, object] = {
        "cipher": CIPHER,
        "hmac": encode_base64(bytes(32)),
        "cipheroptions": {},
    }
    obj.update(changes)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


# --------------------------------------------------------------------------
# Known answers


def test_aes256_ctr_matches_nist_sp800_38a_f55():
    key = bytes.fromhex(
        "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
    )
    counter = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plaintext = bytes.fromhex(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
    )
    expected = bytes.fromhex(
        "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
        "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6"
    )
    cipher = LayerCipher(PrivateOptions(key, counter, Digest.of(plaintext)))

    assert cipher.update(plaintext[:20]) + cipher.update(plaintext[20:]) == expected


@pytest.mark.parametrize(("nonce_hex", "ciphertext_hex", "hmac_hex"), VECTORS)
def test_layer_vectors_ciphertext_and_hmac_over_ciphertext(
    nonce_hex, ciphertext_hex, hmac_hex
):
    ciphertext, layer = encrypt(options(nonce_hex), PLAINTEXT)

    assert ciphertext.hex() == ciphertext_hex
    assert layer.hmac.hex() == hmac_hex
    assert layer.hmac == hmac.digest(SYMKEY, ciphertext, "sha256")
    assert layer.size == len(ciphertext) == 40
    assert layer.digest == Digest.of(ciphertext)
    assert layer.plaintext_digest == Digest(VECTOR1_PLAIN_DIGEST)


def test_options_json_bytes_for_vector_1_are_go_bytes():
    _, layer = encrypt(options(), PLAINTEXT)

    assert str(layer.digest) == (
        "sha256:2f73f11b8692966ca39fed1c61164fdbba78b4b3ef6f687251cede187c8c41f1"
    )
    assert layer.public_options.to_json() == (
        b'{"cipher":"AES_256_CTR_HMAC_SHA256",'
        b'"hmac":"MwVXHuezz4sqeRsgzto5OqKvN530CG/tbGoRduYJlu0=","cipheroptions":{}}'
    )
    assert layer.public_options.to_annotation() == (
        "eyJjaXBoZXIiOiJBRVNfMjU2X0NUUl9ITUFDX1NIQTI1NiIsImhtYWMiOiJNd1ZYSHVleno0c3"
        "FlUnNnenRvNU9xS3ZONTMwQ0cvdGJHb1JkdVlKbHUwPSIsImNpcGhlcm9wdGlvbnMiOnt9fQ=="
    )
    assert options().to_json() == (
        b'{"symkey":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MTI=",'
        b'"digest":"sha256:5faa4eec3611556812c2d74b437c8c49add3f910f10063d80144'
        b'1f7d75cd5e3b","cipheroptions":{"nonce":"AAECAwQFBgcICQoLDA0ODw=="}}'
    )


def test_coco_sample_kbc_packet_decrypts_to_private_options_we_parse():
    # reference/ocicrypt.md §8.3: an upstream fixture wrapped by another
    # implementation; its payload must parse and re-serialize byte for byte.
    kek = bytes.fromhex(
        "d99b7705b0ba7a168295b3a3367270b0dd9b371bf514ca8b9ba7f0a33711daea"
    )
    wrapped = base64.b64decode(
        "KxAFgXwa0y72Xdygub9lF00RVMtSRbYzvakIEASgi3Gvt1wGLkhKPXf0S033Jdi6vAN6zBM7d0x"
        "ZSDo2JCeew0FeKwTYgdJfdcPhuEpZOpjhwIsidyeiunzp0J/crvI1tSPZJw4DPHZN2eQtg71rDz"
        "IbuDM5ATheiDM9/YJv+k+n6Nv6/pRb8qynNzbWFz7Q8wEo1ZZlL6UftOBJ6j9GuEOTM2k/B+5sM"
        "A2VhGHSzDsKA1mn0qzcn2HJg4GcmxwDpJwzm5n7B4iIJ3A0umrQAjQ="
    )
    payload = AESGCM(kek).decrypt(base64.b64decode("3PQMqtjbR4hxCr83"), wrapped, None)

    opts = PrivateOptions.from_json(payload)

    assert opts.to_json() == payload
    assert opts.digest == Digest(
        "sha256:18be1897f9402f27c8c0eba7c86e0c00f5656db62961b5949d55f9565c42c6e7"
    )
    assert opts.nonce == base64.b64decode("r10F9oaCu+nWFXfod3l83g==")


@pytest.mark.parametrize("offset", [0, 1, 15, 16, 17, 31, 33, 47])
def test_cipher_from_offset_continues_the_keystream_across_64_bit_carry(offset):
    # The nonce's low 64 bits are all ones: block 1 carries into the high half.
    opts = options("0000000000000000fffffffffffffffe", b"")
    data = os.urandom(64)
    whole = LayerCipher(opts).update(data)

    assert LayerCipher(opts, offset).update(data[offset:]) == whole[offset:]


def test_cipher_keystream_wraps_at_2_pow_128_like_reference():
    nonce = bytes.fromhex("ff" * 16)
    data = bytes(48)
    reference = Cipher(algorithms.AES(SYMKEY), modes.CTR(bytes(16))).encryptor()
    # the first keystream block is AES of the counter block itself
    ecb = Cipher(algorithms.AES(SYMKEY), modes.ECB())  # noqa: S305
    block0 = ecb.encryptor().update(nonce)

    stream = LayerCipher(PrivateOptions(SYMKEY, nonce, "")).update(data)

    assert stream[:16] == block0
    assert stream[16:] == reference.update(bytes(32))


# --------------------------------------------------------------------------
# Private and public options


def test_generate_makes_fresh_key_and_nonce_for_the_digest():
    first = PrivateOptions.generate(VECTOR1_PLAIN_DIGEST)
    second = PrivateOptions.generate(Digest(VECTOR1_PLAIN_DIGEST))

    assert len(first.symkey) == 32
    assert len(first.nonce) == 16
    assert first.symkey != second.symkey
    assert first.nonce != second.nonce
    assert first.digest == Digest(VECTOR1_PLAIN_DIGEST)
    assert PrivateOptions.from_json(first.to_json()) == first


def test_private_options_repr_hides_the_symkey():
    opts = options()

    assert encode_base64(SYMKEY) not in repr(opts)
    assert repr(SYMKEY) not in repr(opts)


def test_private_options_from_skopeo_output_parse():
    # registry-on-s3.md §6.3: a payload skopeo 1.9.3 wrote.
    payload = (
        b'{"symkey":"eFFjPLny16YK+XEayedeob3xI9qnpj35E4v0rSfPXfQ=",'
        b'"digest":"sha256:b06fb6d80e841b84af0a96859883a601aab03270e02537108e14b4'
        b'0ee39a9551","cipheroptions":{"nonce":"NEvPKrc2Xh5i1OdQyaf+ww=="}}'
    )

    opts = PrivateOptions.from_json(payload)

    assert opts.nonce == base64.b64decode("NEvPKrc2Xh5i1OdQyaf+ww==")
    assert opts.to_json() == payload


def test_private_options_keep_a_foreign_digest_string():
    opts = PrivateOptions.from_json(privopts_json(digest="", extra="ignored"))

    assert opts.digest == ""
    assert b'"digest":""' in opts.to_json()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (privopts_json(cipheroptions={}), "no 'cipheroptions.nonce'"),
        (
            privopts_json(cipheroptions={"nonce": encode_base64(bytes(12))}),
            "nonce of 16 bytes, got 12",
        ),
        (privopts_json(symkey=encode_base64(bytes(16))), "symkey of 32 bytes"),
        (
            privopts_json(symkey=base64.urlsafe_b64encode(b"\xfb" * 32).decode()),
            "standard padded base64",
        ),
        (
            privopts_json(symkey=encode_base64(SYMKEY).rstrip("=")),
            "standard padded base64",
        ),
        (
            privopts_json(cipheroptions={"nonce": encode_base64(bytes(16)) + "\n"}),
            "standard padded base64",
        ),
        (
            privopts_json(
                cipheroptions={"nonce": encode_base64(bytes(16)), "other": ""}
            ),
            "only 'nonce'",
        ),
        (privopts_json(cipheroptions=None), "'cipheroptions' object"),
        (privopts_json(digest=None), "string 'digest'"),
        (b"[1, 2]", "JSON object, got list"),
        (b"\xff{", "as a JSON object"),
        (b'{"symkey":"a","symkey":"b"}', "duplicate JSON member 'symkey'"),
    ],
)
def test_private_options_reject(payload, message):
    with pytest.raises(OcicryptError, match=message) as caught:
        PrivateOptions.from_json(payload)

    assert encode_base64(SYMKEY) not in str(caught.value)
    assert caught.value.__cause__ is None


def test_private_options_reject_no_symkey():
    obj = json.loads(privopts_json())
    del obj["symkey"]

    with pytest.raises(OcicryptError, match="'symkey' as a base64 string"):
        PrivateOptions.from_json(json.dumps(obj).encode())


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (pubopts_json(cipher="AES_128_GCM"), "expected cipher 'AES_256_CTR"),
        (pubopts_json(cipher=""), "no cipher"),
        (pubopts_json(cipher=...), "string 'cipher'"),
        (pubopts_json(hmac=...), "no 'hmac'"),
        # ocicrypt's tamper vector: an hmac of ten bytes.
        (pubopts_json(hmac=encode_base64(bytes.fromhex("01020304050607080900"))), "32"),
        (
            pubopts_json(hmac=base64.urlsafe_b64encode(b"\xff" * 32).decode()),
            "standard padded base64",
        ),
        (
            pubopts_json(cipheroptions={"nonce": encode_base64(bytes(16))}),
            "empty public cipheroptions",
        ),
        (pubopts_json(cipheroptions={"x": ""}), "empty public cipheroptions"),
        (pubopts_json(cipheroptions=None), "as an object"),
    ],
)
def test_public_options_reject(payload, message):
    with pytest.raises(OcicryptError, match=message):
        PublicOptions.from_json(payload)


def test_public_options_without_cipheroptions_accepted_as_go_does():
    public = PublicOptions.from_json(pubopts_json(cipheroptions=...))

    assert public.to_json().endswith(b',"cipheroptions":{}}')


def test_public_options_annotation_round_trip_and_strict_base64():
    public = PublicOptions(bytes(range(32)))
    value = public.to_annotation()

    assert PublicOptions.from_annotation(value) == public
    with pytest.raises(OcicryptError, match="standard padded base64"):
        PublicOptions.from_annotation(value.rstrip("="))


@pytest.mark.parametrize("text", ["YQ", "YQ==\n", "YQ===", "YR==", "-_8=", " YQ=="])
def test_decode_base64_rejects_non_canonical_standard_base64(text):
    with pytest.raises(OcicryptError, match="standard padded base64"):
        decode_base64(text, "a test value")


def test_decode_base64_accepts_standard_padded():
    assert decode_base64("+/8=", "a test value") == b"\xfb\xff"


# --------------------------------------------------------------------------
# Encryption


def test_chunked_update_into_equals_one_shot_including_in_place():
    # chunks span several cache slices and end off the slice boundaries
    data = os.urandom(3 * SLICE + 123)
    step = SLICE + 7
    opts = PrivateOptions.generate(Digest.of(data))
    expected_ct, expected = encrypt(opts, data)

    encryptor = LayerEncryptor(opts)
    out = bytearray(step + 100)
    pieces = []
    for start in range(0, len(data), step):
        chunk = memoryview(data)[start : start + step]
        ciphertext = encryptor.update_into(chunk, out)
        assert len(ciphertext) == len(chunk)
        pieces.append(bytes(ciphertext))
    in_place = LayerEncryptor(opts)
    buffer = bytearray(data)
    in_place.update_into(buffer, buffer)

    assert b"".join(pieces) == expected_ct
    assert encryptor.finalize() == expected
    assert bytes(buffer) == expected_ct
    assert in_place.finalize() == expected


def test_steps_run_on_separate_threads_give_the_same_layer():
    chunks = [os.urandom(65_536) for _ in range(8)]
    data = b"".join(chunks)
    opts = PrivateOptions.generate(Digest.of(data))
    expected_ct, expected = encrypt(opts, data)

    encryptor = LayerEncryptor(opts)
    with ThreadPoolExecutor(max_workers=3) as pool:
        mac = hashed = plain = pool.submit(lambda: None)
        ciphertexts = []
        for chunk in chunks:
            ciphertext = encryptor.encrypt(chunk)
            # each step waits for its own previous chunk, not for the others
            mac.result(), hashed.result(), plain.result()
            plain = pool.submit(encryptor.hash_plaintext, chunk)
            mac = pool.submit(encryptor.mac_ciphertext, ciphertext)
            hashed = pool.submit(encryptor.hash_ciphertext, ciphertext)
            ciphertexts.append(ciphertext)
        mac.result(), hashed.result(), plain.result()

    assert b"".join(ciphertexts) == expected_ct
    assert encryptor.finalize() == expected


def test_finalize_rejects_steps_out_of_step():
    opts = options()
    encryptor = LayerEncryptor(opts)
    encryptor.hash_plaintext(PLAINTEXT)
    ciphertext = encryptor.encrypt(PLAINTEXT)
    encryptor.mac_ciphertext(ciphertext)

    with pytest.raises(OcicryptError, match="out of step"):
        encryptor.finalize()


def test_finalize_twice_rejected():
    encryptor = LayerEncryptor(options())
    encryptor.update(PLAINTEXT)
    encryptor.finalize()

    with pytest.raises(OcicryptError, match="already finalized"):
        encryptor.finalize()


def test_finalize_fails_when_plaintext_is_not_the_named_blob():
    encryptor = LayerEncryptor(options())
    encryptor.update(PLAINTEXT[:-1] + b"\x00")

    with pytest.raises(IntegrityError, match=VECTOR1_PLAIN_DIGEST):
        encryptor.finalize()


def test_trusting_encryptor_reports_the_named_digest_without_hashing():
    trusting = LayerEncryptor(options(), verify_plaintext=False)
    verifying = LayerEncryptor(options())
    other = PLAINTEXT[:-1] + b"\x00"

    ciphertext = trusting.update(other)
    layer = trusting.finalize()

    assert ciphertext == verifying.update(other)
    assert layer.plaintext_digest == Digest.parse(VECTOR1_PLAIN_DIGEST)
    assert layer.plaintext_verified is False
    assert layer.size == len(other)
    with pytest.raises(IntegrityError):
        verifying.finalize()


def test_trusting_encryptor_refuses_to_hash_the_plaintext():
    encryptor = LayerEncryptor(options(), verify_plaintext=False)

    with pytest.raises(OcicryptError, match="does not hash the plaintext"):
        encryptor.hash_plaintext(PLAINTEXT)


def test_encryptor_needs_a_sha256_plaintext_digest():
    with pytest.raises(OcicryptError, match="sha256 plaintext digest"):
        LayerEncryptor(PrivateOptions(SYMKEY, bytes(16), ""))


def test_update_into_too_small_buffer_is_refused():
    with pytest.raises(ValueError, match="smaller than the 40-byte chunk"):
        LayerEncryptor(options()).update_into(PLAINTEXT, bytearray(39))


# --------------------------------------------------------------------------
# Decryption


class Source:
    """A blob that can be opened repeatedly; records how often."""

    def __init__(self, *versions: bytes, chunk: int = 7) -> None:
        self.versions = list(versions)
        self.chunk = chunk
        self.opened = 0
        self.read = 0

    def __call__(self):
        data = self.versions[min(self.opened, len(self.versions) - 1)]
        self.opened += 1
        for start in range(0, len(data), self.chunk):
            self.read += min(self.chunk, len(data) - start)
            yield data[start : start + self.chunk]


def sealed(size: int = 1000) -> tuple[bytes, bytes, EncryptedLayer, PrivateOptions]:
    data = os.urandom(size)
    opts = PrivateOptions.generate(Digest.of(data))
    ciphertext, layer = encrypt(opts, data)
    return data, ciphertext, layer, opts


def decrypt(source, layer, opts, *, public=None, enforce=True, window=64, **kw):
    kw.setdefault("expected_digest", layer.digest)
    kw.setdefault("expected_size", layer.size)
    return decrypt_layer(
        source,
        public or layer.public_options,
        opts,
        enforce_plaintext_digest=enforce,
        window=window,
        **kw,
    )


@pytest.mark.parametrize(("chunk", "window"), [(7, 64), (1000, 64), (64, 64), (3, 1)])
def test_decrypt_round_trip_after_full_verification(chunk, window):
    data, ciphertext, layer, opts = sealed()
    source = Source(ciphertext, chunk=chunk)

    plaintext = decrypt(source, layer, opts, window=window)
    assert source.opened == 1  # verified before anything is returned

    assert b"".join(plaintext) == data
    assert source.opened == 2


def test_decrypt_empty_layer():
    _, ciphertext, layer, opts = sealed(0)

    assert list(decrypt(Source(ciphertext), layer, opts)) == []


def tampered(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 1]) + data[position + 1 :]


def assert_refused(source, layer, opts, **kw):
    with pytest.raises(IntegrityError) as caught:
        decrypt(source, layer, opts, **kw)
    assert str(caught.value) == "integrity check failed"
    assert source.opened == 1


def test_flipped_ciphertext_byte_fails_the_descriptor_digest():
    _, ciphertext, layer, opts = sealed()

    assert_refused(Source(tampered(ciphertext, 500)), layer, opts)


def test_flipped_ciphertext_byte_with_matching_descriptor_fails_the_hmac():
    _, ciphertext, layer, opts = sealed()
    bad = tampered(ciphertext, 999)

    assert_refused(Source(bad), layer, opts, expected_digest=Digest.of(bad))


def test_changed_hmac_fails():
    _, ciphertext, layer, opts = sealed()
    public = PublicOptions(tampered(layer.hmac, 0))

    assert_refused(Source(ciphertext), layer, opts, public=public)


def test_wrong_symkey_fails_the_hmac():
    _, ciphertext, layer, opts = sealed()
    other = PrivateOptions(os.urandom(32), opts.nonce, opts.digest)

    assert_refused(Source(ciphertext), layer, other)


def test_truncated_blob_with_matching_descriptor_fails():
    _, ciphertext, layer, opts = sealed()
    short = ciphertext[:-1]

    assert_refused(
        Source(short),
        layer,
        opts,
        expected_digest=Digest.of(short),
        expected_size=len(short),
    )


def test_oversized_blob_stops_reading_early():
    _, ciphertext, layer, opts = sealed()
    source = Source(ciphertext + os.urandom(100_000), chunk=64)

    assert_refused(source, layer, opts)
    assert source.read < len(ciphertext) + 200


def test_changed_nonce_fails_the_plaintext_digest_when_enforced():
    _, ciphertext, layer, opts = sealed()
    other = PrivateOptions(opts.symkey, tampered(opts.nonce, 15), opts.digest)

    assert_refused(Source(ciphertext), layer, other)


def test_plaintext_digest_mismatch_only_warns_for_foreign_images(caplog):
    data, ciphertext, layer, opts = sealed()
    stale = PrivateOptions(opts.symkey, opts.nonce, Digest.of(b"recompressed source"))

    with caplog.at_level(logging.WARNING, logger="regseal.ocicrypt"):
        plaintext = b"".join(decrypt(Source(ciphertext), layer, stale, enforce=False))

    assert plaintext == data
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert str(Digest.of(data)) in warnings[0].getMessage()
    assert encode_base64(opts.symkey) not in caplog.text


def test_blob_changed_between_passes_releases_only_verified_windows():
    data, ciphertext, layer, opts = sealed(256)
    source = Source(ciphertext, tampered(ciphertext, 100), chunk=256)

    released: list[bytes] = []
    with pytest.raises(IntegrityError):
        released.extend(decrypt(source, layer, opts, window=64))

    assert b"".join(released) == data[:64]


def test_blob_grown_between_passes_fails_before_the_extra_window():
    data, ciphertext, layer, opts = sealed(128)
    source = Source(ciphertext, ciphertext + b"x" * 64)

    released: list[bytes] = []
    with pytest.raises(IntegrityError):
        released.extend(decrypt(source, layer, opts, window=64))

    assert b"".join(released) == data


def test_blob_shrunk_between_passes_fails():
    _, ciphertext, layer, opts = sealed(128)
    source = Source(ciphertext, ciphertext[:64])

    with pytest.raises(IntegrityError):
        list(decrypt(source, layer, opts, window=64))


# --------------------------------------------------------------------------
# Media types


@pytest.mark.parametrize(
    ("plain", "encrypted"),
    [
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        ),
        (
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+encrypted",
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd+encrypted",
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip+encrypted",
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.oci.image.layer.v1.tar+encrypted",
        ),
    ],
)
def test_encrypted_media_type_normalizes_docker_types(plain, encrypted):
    assert encrypted_media_type(plain) == encrypted
    assert is_encrypted_media_type(encrypted)
    assert not is_encrypted_media_type(plain)


@pytest.mark.parametrize(
    ("media_type", "message"),
    [
        ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "foreign"),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar", "foreign"),
        ("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", "already"),
        ("application/vnd.oci.image.config.v1+json", "expected an OCI or docker"),
        ("application/vnd.in-toto+json", "expected an OCI or docker"),
    ],
)
def test_encrypted_media_type_refuses(media_type, message):
    with pytest.raises(OcicryptError, match=message):
        encrypted_media_type(media_type)


@pytest.mark.parametrize(
    ("encrypted", "plain"),
    [
        (
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (  # what skopeo writes for an OCI manifest holding a docker layer
            "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
    ],
)
def test_decrypted_media_type_strips_the_suffix(encrypted, plain):
    assert decrypted_media_type(encrypted) == plain


@pytest.mark.parametrize(
    "media_type",
    [
        # a descriptor whose "+encrypted" was edited away is not decrypted
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "+encrypted",
    ],
)
def test_decrypted_media_type_refuses_tampered_or_plain_types(media_type):
    with pytest.raises(OcicryptError, match="ending in '\\+encrypted'"):
        decrypted_media_type(media_type)


# --------------------------------------------------------------------------
# Annotations

KMS_KEY = PROVIDER_ANNOTATION_PREFIX + "regseal"


def test_layer_annotations_join_items_and_parse_back():
    public = PublicOptions(bytes(range(32)))
    wrapped = {ANNOTATION_JWE: ["YQ==", "Yg=="], KMS_KEY: ["Yw=="]}

    annotations = layer_annotations(public, wrapped)

    assert annotations == {
        ANNOTATION_PUBOPTS: public.to_annotation(),
        ANNOTATION_JWE: "YQ==,Yg==",
        KMS_KEY: "Yw==",
    }
    assert parse_layer_annotations({**annotations, "foo": "bar"}) == (
        public,
        {ANNOTATION_JWE: ["YQ==", "Yg=="], KMS_KEY: ["Yw=="]},
    )
    assert split_items("YQ==,Yg==") == ["YQ==", "Yg=="]


@pytest.mark.parametrize(
    ("wrapped", "message"),
    [
        ({"org.opencontainers.image.enc.pubopts": ["YQ=="]}, "under"),
        ({"org.opencontainers.image.enc.keys.": ["YQ=="]}, "under"),
        ({ANNOTATION_JWE: []}, "no wrapped key items"),
        ({ANNOTATION_JWE: ["YQ"]}, "standard padded base64"),
        ({ANNOTATION_JWE: ["YQ==,Yg=="]}, "standard padded base64"),
    ],
)
def test_layer_annotations_refuse(wrapped, message):
    with pytest.raises(OcicryptError, match=message):
        layer_annotations(PublicOptions(bytes(32)), wrapped)


def test_parse_layer_annotations_needs_pubopts_and_a_key():
    public = PublicOptions(bytes(32)).to_annotation()

    with pytest.raises(OcicryptError, match=re.escape(f"no {ANNOTATION_PUBOPTS}")):
        parse_layer_annotations({ANNOTATION_JWE: "YQ=="})
    with pytest.raises(
        OcicryptError, match=re.escape("no org.opencontainers.image.enc.keys.")
    ):
        parse_layer_annotations({ANNOTATION_PUBOPTS: public})


def test_strip_enc_annotations_keeps_the_rest():
    annotations = {ANNOTATION_PUBOPTS: "x", ANNOTATION_JWE: "y", "foo": "bar"}

    assert strip_enc_annotations(annotations) == {"foo": "bar"}


def test_sha256_of_ciphertext_is_the_descriptor_digest():
    data, ciphertext, layer, _ = sealed(4096)

    assert layer.digest.hex == hashlib.sha256(ciphertext).hexdigest()
    assert layer.plaintext_digest == Digest.of(data)


@pytest.mark.parametrize(
    ("annotations", "missing"),
    [
        (
            {
                "org.opencontainers.image.enc.pubopts": "e30=",
                "org.opencontainers.image.enc.keys.provider.regseal": "eA==",
            },
            (),
        ),
        (
            {"org.opencontainers.image.enc.keys.jwe": "eA=="},
            ("org.opencontainers.image.enc.pubopts",),
        ),
        (
            {
                "org.opencontainers.image.enc.pubopts": "e30=",
                "org.opencontainers.image.enc.keys.": "eA==",
            },
            ("org.opencontainers.image.enc.keys.*",),
        ),
        (
            {"org.example.other": "x"},
            (
                "org.opencontainers.image.enc.pubopts",
                "org.opencontainers.image.enc.keys.*",
            ),
        ),
    ],
    ids=["complete", "no-pubopts", "keys-prefix-alone", "none"],
)
def test_missing_layer_annotations_names_what_ocicrypt_needs(annotations, missing):
    assert missing_layer_annotations(annotations) == missing
