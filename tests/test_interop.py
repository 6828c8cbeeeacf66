"""Interoperability: a third party holding only the JWKS verifies jwtsess tokens (joserfc)."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from typing import Any, Literal

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, SecurityWarning
from joserfc.jwk import KeySet, import_key

from jwtsess import rotate_keys
from jwtsess.jwk import thumbprint, to_low_s
from tests.support.kit import AUDIENCE, ISSUER, TokenKit

Kit = Callable[..., TokenKit]
PUBLISHED = ("RS256", "ES256", "EdDSA")
KTY: dict[str, Literal["RSA", "EC", "OKP"]] = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}


def _published_jwks(kit: TokenKit) -> KeySet:
    """What a third party has: the JWKS document, as JSON text."""
    document = json.loads(json.dumps(kit.keyring.jwks()))
    return KeySet.import_key_set(document)


def _joserfc_alg_warning(alg: str) -> contextlib.AbstractContextManager[Any]:
    # joserfc flags EdDSA (the generic name) as deprecated by RFC 9864 in favour
    # of Ed25519; the token is still a valid RFC 8037 EdDSA JWS.
    if alg == "EdDSA":
        return pytest.warns(SecurityWarning, match="EdDSA is deprecated")
    return contextlib.nullcontext()


def _decode(token: str, keys: KeySet, alg: str) -> jwt.Token:
    with _joserfc_alg_warning(alg):
        return jwt.decode(token, keys, algorithms=[alg])


@pytest.mark.parametrize("alg", PUBLISHED)
def test_joserfc_verifies_a_token_with_only_the_jwks(make_kit: Kit, alg: str) -> None:
    kit = make_kit(alg)
    token, issued = kit.signer.issue("user-1", "admin", "sid-7", extra_claims={"org": "acme"})
    decoded = _decode(token, _published_jwks(kit), alg)
    assert decoded.header == {"alg": alg, "kid": issued.kid, "typ": "at+jwt"}
    assert decoded.claims == issued.as_dict()
    assert decoded.claims["org"] == "acme"
    registry = jwt.JWTClaimsRegistry(
        now=int(kit.clock()),
        leeway=kit.settings.leeway,
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True, "value": "user-1"},
        exp={"essential": True},
    )
    registry.validate(decoded.claims)


@pytest.mark.parametrize("alg", PUBLISHED)
def test_joserfc_agrees_on_the_thumbprint_kid(make_kit: Kit, alg: str) -> None:
    kit = make_kit(alg)
    (jwk,) = kit.keyring.jwks()["keys"]
    key = import_key(jwk, KTY[alg])
    assert key.thumbprint() == jwk["kid"] == thumbprint(jwk)
    assert key.kid == jwk["kid"]
    assert not key.is_private


@pytest.mark.parametrize("alg", PUBLISHED)
def test_joserfc_picks_the_key_by_kid_across_a_rotation(make_kit: Kit, alg: str) -> None:
    kit = make_kit(alg)
    before, before_claims = kit.signer.issue("u", "r", "s")
    new = rotate_keys(kit.directory, clock=kit.clock)
    kit.clock.now = new.activates_at
    after, after_claims = kit.signer.issue("u", "r", "s")
    assert after_claims.kid == new.kid != before_claims.kid
    keys = _published_jwks(kit)  # both keys, the retiring one and the new active one
    assert sorted(k.kid or "" for k in keys) == sorted([before_claims.kid, new.kid])
    assert _decode(before, keys, alg).claims["jti"] == before_claims.jti
    assert _decode(after, keys, alg).claims["jti"] == after_claims.jti


@pytest.mark.parametrize("alg", PUBLISHED)
def test_joserfc_rejects_a_tampered_token(make_kit: Kit, alg: str) -> None:
    kit = make_kit(alg)
    token = kit.token()
    header, payload, signature = token.split(".")
    other = kit.signer.issue("someone-else", "admin", "sid-x")[0].split(".")[1]
    with pytest.raises(BadSignatureError), _joserfc_alg_warning(alg):
        jwt.decode(f"{header}.{other}.{signature}", _published_jwks(kit), algorithms=[alg])
    assert payload != other


@pytest.mark.parametrize("alg", PUBLISHED)
def test_jwtsess_verifies_a_token_signed_by_joserfc(make_kit: Kit, alg: str) -> None:
    """The other direction: the same key used by a standard library signs, jwtsess verifies."""
    kit = make_kit(alg)
    signing_key = kit.keyring.signing_key()
    private = import_key((kit.directory / f"{signing_key.kid}.pem").read_bytes(), KTY[alg])
    now = int(kit.clock())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-2",
        "role": "user",
        "sid": "sid-2",
        "jti": "jti-from-joserfc",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    header = {"alg": alg, "kid": signing_key.kid, "typ": "at+jwt"}
    with _joserfc_alg_warning(alg):
        token = jwt.encode(header, claims, private, algorithms=[alg])
    if alg == "ES256":
        # jwtsess accepts one spelling of an ECDSA signature, the low-s one it
        # signs itself; joserfc leaves s as OpenSSL chose it (high half the time).
        head, payload, signature = token.split(".")
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        low = base64.urlsafe_b64encode(to_low_s(raw)).rstrip(b"=").decode("ascii")
        token = f"{head}.{payload}.{low}"
    verified = kit.verifier.verify(token)
    assert verified.as_dict() == claims
    assert verified.kid == signing_key.kid
