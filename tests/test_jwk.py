"""Key material: RFC 7638 thumbprints, generated keys, and what load_signing_key refuses."""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from jwtsess import KeyringError
from jwtsess.jwk import (
    HMAC_SECRET_BYTES,
    RSA_BITS,
    SigningKey,
    b64url,
    generate_key_material,
    kid_for,
    load_signing_key,
    public_jwk_of,
    thumbprint,
)
from tests.support.kit import ALGORITHMS

ASYMMETRIC = ("RS256", "ES256", "EdDSA")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")

# RFC 7638 section 3.1: the example RSA key (RFC 7517 appendix A.1) and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
        "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

# RFC 8037 appendix A.3: the Ed25519 example key and its thumbprint.
RFC8037_JWK = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@functools.cache
def _material(alg: str) -> bytes:
    """One generated key per algorithm, shared by the tests that only inspect it."""
    return generate_key_material(alg)


@functools.cache
def _loaded(alg: str) -> SigningKey:
    material = _material(alg)
    return load_signing_key(kid_for(alg, material), alg, material, source=f"shared-{alg}")


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


# -- thumbprints -------------------------------------------------------------------


def test_rfc7638_example_thumbprint() -> None:
    assert thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT


def test_rfc7638_thumbprint_ignores_optional_members_and_order() -> None:
    required_only = {"n": RFC7638_JWK["n"], "e": "AQAB", "kty": "RSA"}
    assert thumbprint(required_only) == RFC7638_THUMBPRINT
    extended = {**RFC7638_JWK, "use": "sig", "kid": "something-else"}
    assert thumbprint(dict(reversed(list(extended.items())))) == RFC7638_THUMBPRINT


def test_rfc7638_thumbprint_depends_on_the_key() -> None:
    altered = {**RFC7638_JWK, "e": "AQAC"}
    assert thumbprint(altered) != RFC7638_THUMBPRINT


def test_rfc8037_okp_example_thumbprint() -> None:
    assert thumbprint(RFC8037_JWK) == RFC8037_THUMBPRINT


def test_thumbprint_refuses_unknown_kty() -> None:
    with pytest.raises(ValueError, match="unsupported kty"):
        thumbprint({"kty": "XYZ", "x": "abc"})
    with pytest.raises(ValueError, match="unsupported kty"):
        thumbprint({"x": "abc"})


def test_b64url_is_unpadded() -> None:
    assert b64url(b"\xff\xfe") == "__4"
    assert b64url(b"") == ""


# -- generated keys ----------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_generated_key_loads_and_signs(alg: str) -> None:
    material = _material(alg)
    kid = kid_for(alg, material)
    key = load_signing_key(kid, alg, material, source=f"test-{alg}")
    assert key.kid == kid
    assert key.alg == alg
    signature = key.algorithm.sign(b"payload", key.sign_key)
    assert key.algorithm.verify(b"payload", key.verify_key, signature)
    assert not key.algorithm.verify(b"payload!", key.verify_key, signature)
    header = json.loads(_b64decode(key.header_b64.decode("ascii")))
    assert header == {"alg": alg, "kid": kid, "typ": "at+jwt"}


def test_generated_rsa_key_has_at_least_2048_bits() -> None:
    private = serialization.load_pem_private_key(_material("RS256"), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size >= RSA_BITS >= 2048
    assert private.public_key().public_numbers().e == 65537


def test_generated_ec_key_is_p256_and_eddsa_is_ed25519() -> None:
    ec_key = serialization.load_pem_private_key(generate_key_material("ES256"), password=None)
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey)
    assert isinstance(ec_key.curve, ec.SECP256R1)
    ed_key = serialization.load_pem_private_key(generate_key_material("EdDSA"), password=None)
    assert isinstance(ed_key, ed25519.Ed25519PrivateKey)


def test_generated_hmac_secret_is_32_random_bytes() -> None:
    first, second = generate_key_material("HS256"), generate_key_material("HS256")
    assert HMAC_SECRET_BYTES == 32
    assert len(first) == 32
    assert len(second) == 32
    assert first != second


def test_hmac_key_publishes_nothing_and_gets_a_random_kid() -> None:
    material = generate_key_material("HS256")
    kid = kid_for("HS256", material)
    assert kid.startswith("hs-")
    assert kid != kid_for("HS256", material)  # random, never derived from the secret
    key = load_signing_key(kid, "HS256", material, source="hs")
    assert key.public_jwk is None
    assert key.sign_key == material


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_asymmetric_kid_is_the_thumbprint_of_the_public_jwk(alg: str) -> None:
    key = _loaded(alg)
    kid = kid_for(alg, _material(alg))
    assert key.kid == kid
    assert key.public_jwk is not None
    assert key.public_jwk["kid"] == kid
    assert thumbprint(key.public_jwk) == kid
    assert key.public_jwk["alg"] == alg
    assert key.public_jwk["use"] == "sig"


@pytest.mark.parametrize(
    ("alg", "kty", "members"),
    [
        ("RS256", "RSA", {"n", "e"}),
        ("ES256", "EC", {"crv", "x", "y"}),
        ("EdDSA", "OKP", {"crv", "x"}),
    ],
)
def test_public_jwk_has_no_private_members(alg: str, kty: str, members: set[str]) -> None:
    jwk: Any = _loaded(alg).public_jwk
    assert jwk["kty"] == kty
    assert set(jwk) == members | {"kty", "kid", "alg", "use"}
    for member in PRIVATE_MEMBERS:
        assert member not in jwk
    if kty == "EC":
        assert jwk["crv"] == "P-256"
    if kty == "OKP":
        assert jwk["crv"] == "Ed25519"


def test_public_jwk_of_matches_the_loaded_key() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk_of("ES256", private.public_key())
    assert jwk["kid"] == load_signing_key(jwk["kid"], "ES256", _pem(private), source="k").kid


# -- what load_signing_key refuses --------------------------------------------------


def test_rejects_a_kid_that_is_not_the_thumbprint() -> None:
    material = generate_key_material("ES256")
    source = "/keys/wrong-kid.pem"
    with pytest.raises(KeyringError, match="RFC 7638 thumbprint") as err:
        load_signing_key("not-the-thumbprint", "ES256", material, source=source)
    assert source in str(err.value)
    assert "not-the-thumbprint" in str(err.value)


def test_rejects_a_kid_of_another_key() -> None:
    material, other = generate_key_material("EdDSA"), generate_key_material("EdDSA")
    with pytest.raises(KeyringError, match="thumbprint") as err:
        load_signing_key(kid_for("EdDSA", other), "EdDSA", material, source="/keys/swapped.pem")
    assert "/keys/swapped.pem" in str(err.value)


def test_rejects_a_1024_bit_rsa_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    kid = public_jwk_of("RS256", private.public_key())["kid"]  # a correct kid, still refused
    with pytest.raises(KeyringError, match="1024 bits") as err:
        load_signing_key(kid, "RS256", _pem(private), source="/keys/small.pem")
    assert "/keys/small.pem" in str(err.value)
    assert "2048" in str(err.value)


def test_rejects_a_p384_key_for_es256() -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(KeyringError, match="P-256") as err:
        load_signing_key("any", "ES256", _pem(private), source="/keys/p384.pem")
    assert "/keys/p384.pem" in str(err.value)
    assert "secp384r1" in str(err.value)


@pytest.mark.parametrize(
    "material",
    [
        b"garbage",
        b"",
        b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    ],
    ids=["text", "empty", "bad-der"],
)
@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_rejects_garbage_pem(alg: str, material: bytes) -> None:
    with pytest.raises(KeyringError, match="not a readable unencrypted PEM") as err:
        load_signing_key("kid", alg, material, source="/keys/garbage.pem")
    assert "/keys/garbage.pem" in str(err.value)


def test_rejects_an_encrypted_pem() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    encrypted = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(KeyringError, match="unencrypted") as err:
        load_signing_key("kid", "ES256", encrypted, source="/keys/locked.pem")
    assert "/keys/locked.pem" in str(err.value)


@pytest.mark.parametrize(
    ("alg", "other"),
    [("RS256", "ES256"), ("ES256", "EdDSA"), ("EdDSA", "RS256")],
)
def test_rejects_a_key_of_another_type(alg: str, other: str) -> None:
    material = _material(other)
    with pytest.raises(KeyringError, match=f"not a private key for {alg}") as err:
        load_signing_key(kid_for(other, material), alg, material, source="/keys/mixed.pem")
    assert "/keys/mixed.pem" in str(err.value)


def test_rejects_a_short_hmac_secret() -> None:
    with pytest.raises(KeyringError, match="shorter than 32 bytes") as err:
        load_signing_key("hs-1", "HS256", b"x" * 31, source="/keys/hs-1.secret")
    assert "/keys/hs-1.secret" in str(err.value)


@pytest.mark.parametrize("alg", ["none", "HS512", "RS384", "PS256", "hs256"])
def test_rejects_unsupported_algorithms(alg: str) -> None:
    with pytest.raises(KeyringError, match="unsupported algorithm") as err:
        load_signing_key("kid", alg, b"x" * 64, source="/keys/odd")
    assert "/keys/odd" in str(err.value)
    with pytest.raises(KeyringError, match="unsupported algorithm"):
        generate_key_material(alg)
