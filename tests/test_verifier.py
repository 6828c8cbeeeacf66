"""The verifier's normal path: round trips, time checks, the verified-token cache."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from freezegun import freeze_time

from jwtsess import (
    AccessClaims,
    AccessTokenSigner,
    KeyRing,
    TokenExpired,
    TokenInvalid,
    TokenMalformed,
    TokenRevoked,
    TokenSettings,
    Verifier,
)
from tests.support.kit import ALGORITHMS, AUDIENCE, ISSUER, TokenKit


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_round_trip(make_kit: Callable[..., TokenKit], alg: str) -> None:
    kit = make_kit(alg)
    token, issued = kit.signer.issue("user-1", "admin", "sid-9", extra_claims={"org": "acme"})
    claims = kit.verifier.verify(token)
    assert claims == issued
    assert claims.extra == {"org": "acme"}


def test_expiry_respects_leeway(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256")
    token = kit.token()
    kit.clock.advance(900 + 9)  # exp passed, but within the 10 s leeway
    assert kit.verifier.verify(token).sub == "user-1"
    kit.clock.advance(1)
    with pytest.raises(TokenExpired) as err:
        kit.verifier.verify(token)
    assert err.value.code == "token_expired"


def test_cache_hit_still_checks_expiry(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("RS256")
    token = kit.token()
    kit.verifier.verify(token)  # now cached
    kit.clock.advance(2000)
    with pytest.raises(TokenExpired):
        kit.verifier.verify(token)
    with pytest.raises(TokenExpired):  # and is not resurrected by the cache
        kit.verifier.verify(token)


def test_cache_hit_still_checks_revocation(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256")
    token = kit.token()
    revoked: set[str] = set()

    class Denylist:
        def check(self, claims: AccessClaims) -> None:
            if claims.jti in revoked:
                raise TokenRevoked()

    kit.verifier.revocation = Denylist()
    claims = kit.verifier.verify(token)
    revoked.add(claims.jti)
    with pytest.raises(TokenRevoked) as err:
        kit.verifier.verify(token)
    assert err.value.code == "token_revoked"


def test_cache_is_bounded(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256", verified_cache_size=5)
    tokens = [kit.token(sub=f"u{i}") for i in range(20)]
    for token in tokens:
        kit.verifier.verify(token)
    assert len(kit.verifier._cache) == 5
    assert set(kit.verifier._cache) == set(tokens[-5:])


def test_cache_disabled_still_verifies(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256", verified_cache_size=0)
    token = kit.token()
    assert kit.verifier.verify(token).sub == kit.verifier.verify(token).sub
    assert kit.verifier._cache == {}


def test_failed_verification_is_not_cached(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256")
    token = kit.token()
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises((TokenInvalid, TokenMalformed)):
            kit.verifier.verify(tampered)
    assert tampered not in kit.verifier._cache


@pytest.mark.parametrize("value", [None, 123, b"bytes", ""])
def test_non_string_or_empty_token_is_malformed(
    make_kit: Callable[..., TokenKit], value: object
) -> None:
    kit = make_kit("HS256")
    with pytest.raises(TokenMalformed) as err:
        kit.verifier.verify(value)  # type: ignore[arg-type]
    assert err.value.code == "token_malformed"


def test_audience_list_containing_ours_is_accepted(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256")
    other = TokenSettings(issuer=ISSUER, audience="other-api")
    token, _ = AccessTokenSigner(kit.keyring, other, clock=kit.clock).issue("u", "r", "s")
    with pytest.raises(TokenInvalid):
        kit.verifier.verify(token)
    assert Verifier(kit.keyring, other, clock=kit.clock).verify(token).aud == "other-api"
    assert AUDIENCE != "other-api"


def test_default_clock_follows_freezegun(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256")
    keyring = KeyRing(kit.directory)
    with freeze_time("2030-01-01 00:00:00") as frozen:
        signer = AccessTokenSigner(keyring, kit.settings)
        verifier = Verifier(keyring, kit.settings)
        token, claims = signer.issue("u", "user", "s")
        assert claims.iat == 1893456000
        frozen.tick(899)
        assert verifier.verify(token).sub == "u"
        frozen.tick(20)
        with pytest.raises(TokenExpired):
            verifier.verify(token)
