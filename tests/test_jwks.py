"""parse_jwks: a JWKS document becomes public keys, or a KeyringError naming the problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jwtsess import KeyringError
from jwtsess.jwk import b64url, public_jwk_of
from jwtsess.jwks import MAX_JWKS_BYTES, parse_jwks
from jwtsess.jwks_source import cache_lifetime
from jwtsess.verifier import _segment
from tests.support.kit import TokenKit

Kit = Callable[..., TokenKit]


def doc(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


@pytest.fixture(scope="module")
def small_rsa_jwk() -> dict[str, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
    return public_jwk_of("RS256", private.public_key())


def jwk_of(kit: TokenKit) -> dict[str, Any]:
    jwks = kit.keyring.jwks()
    return dict(jwks["keys"][0])


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_the_issuers_own_jwks_parses_to_its_keys(make_kit: Kit, alg: str) -> None:
    kit = make_kit(alg)
    keys = parse_jwks(json.dumps(kit.keyring.jwks()).encode(), source="test")
    signing = kit.keyring.signing_key()
    assert list(keys) == [signing.kid]
    key = keys[signing.kid]
    assert key.alg == alg
    token = kit.token()
    head, payload, signature = token.split(".")
    assert key.algorithm.verify(
        f"{head}.{payload}".encode(), key.verify_key, _segment(signature, "signature")
    )


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda j: {**j, "kty": "oct", "k": "c2VjcmV0"}, id="oct"),
        pytest.param(lambda j: {**j, "alg": "HS256"}, id="hs256-alg"),
    ],
)
def test_a_symmetric_key_is_a_configuration_error(
    make_kit: Kit, mutate: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    with pytest.raises(KeyringError, match=r"symmetric key .* public-only"):
        parse_jwks(doc(mutate(jwk_of(make_kit("ES256")))), source="test")


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth"])
def test_private_members_are_refused(make_kit: Kit, member: str) -> None:
    jwk = {**jwk_of(make_kit("RS256")), member: "AQAB"}
    with pytest.raises(KeyringError, match="private key members"):
        parse_jwks(doc(jwk), source="test")


def test_rsa_below_2048_bits_is_refused(small_rsa_jwk: dict[str, str]) -> None:
    with pytest.raises(KeyringError, match="1024 bits; 2048"):
        parse_jwks(doc(small_rsa_jwk), source="test")


@pytest.mark.parametrize(
    ("alg", "changes", "message"),
    [
        ("ES256", {"alg": "RS256"}, "alg RS256 needs kty RSA"),
        ("ES256", {"crv": "P-384"}, "needs kty EC and crv P-256"),
        ("EdDSA", {"crv": "X25519"}, "needs kty OKP and crv Ed25519"),
        ("RS256", {"alg": "EdDSA"}, "alg EdDSA needs kty OKP"),
        ("ES256", {"y": b64url(b"\x01" * 32)}, "not on the P-256 curve"),
        ("ES256", {"x": b64url(b"\x01" * 31)}, "32 bytes each"),
        ("EdDSA", {"x": b64url(b"\x01" * 31)}, "32 bytes"),
        ("RS256", {"n": "not base64!"}, "not base64url"),
        ("RS256", {"e": "AQAB="}, "not"),
        ("RS256", {"kid": ""}, "'kid' is missing"),
        ("RS256", {"kid": 7}, "'kid' is missing"),
        ("EdDSA", {"kid": "k" * 129}, "'kid' is missing"),
    ],
)
def test_inconsistent_or_malformed_keys_are_refused(
    make_kit: Kit, alg: str, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(KeyringError, match=message):
        parse_jwks(doc({**jwk_of(make_kit(alg)), **changes}), source="test")


def test_keys_not_for_signing_or_not_ours_are_skipped(make_kit: Kit) -> None:
    good = jwk_of(make_kit("ES256"))
    other = jwk_of(make_kit("RS256"))
    keys = parse_jwks(
        doc(
            {**other, "kid": "enc", "use": "enc"},
            {**other, "kid": "ps", "alg": "PS256"},
            {**other, "kid": "no-alg", "alg": None},
            {**other, "kid": "ops", "key_ops": ["encrypt"]},
            good,
        ),
        source="test",
    )
    assert list(keys) == [good["kid"]]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>hello</html>", "not a JSON document"),
        (b'{"keys": [{"kty": "EC"', "not a JSON document"),
        (b"\xff\xfe", "not a JSON document"),
        (b'{"keys": {}}', "no 'keys' array"),
        (b"[]", "no 'keys' array"),
        (b'{"keys": []}', "no RS256, ES256 or EdDSA signing key"),
        (b'{"keys": [1]}', "not a JSON object"),
        (b'{"keys": [], "keys": []}', "duplicate member"),
        (b" " * (MAX_JWKS_BYTES + 1), "larger than"),
    ],
)
def test_bad_documents_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(KeyringError, match=message):
        parse_jwks(raw, source="test")


def test_a_kid_twice_is_refused(make_kit: Kit) -> None:
    jwk = jwk_of(make_kit("EdDSA"))
    with pytest.raises(KeyringError, match="appears twice"):
        parse_jwks(doc(jwk, jwk), source="test")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("public, max-age=300", 300.0),
        ("max-age=0", 0.0),
        ('max-age="60", public', 60.0),
        ("no-store", 0.0),
        ("public, no-cache", 0.0),
        ("s-maxage=10", None),
        ("max-age=abc", None),
    ],
)
def test_cache_control_lifetime(header: str | None, seconds: float | None) -> None:
    assert cache_lifetime(header) == seconds
