"""The access-token signer: header shape, claims, reserved-claim protection."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.kit import ALGORITHMS, AUDIENCE, ISSUER, T0, TokenKit


def _segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_header_is_alg_kid_typ(make_kit: Callable[..., TokenKit], alg: str) -> None:
    kit = make_kit(alg)
    token = kit.token()
    assert _segment(token, 0) == {
        "alg": alg,
        "kid": kit.keyring.signing_key().kid,
        "typ": "at+jwt",
    }


def test_claims_have_rfc9068_shape(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256")
    token, claims = kit.signer.issue("user-7", "admin", "sid-7", extra_claims={"tenant": "t1"})
    payload = _segment(token, 1)
    assert payload == {
        "tenant": "t1",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-7",
        "role": "admin",
        "sid": "sid-7",
        "jti": claims.jti,
        "iat": int(T0),
        "nbf": int(T0),
        "exp": int(T0) + 900,
        "iat_us": int(T0) * 1_000_000,  # the issue instant user revocations are ordered by
    }
    assert claims.as_dict() == payload


def test_jti_carries_at_least_128_random_bits(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256")
    jtis = {kit.signer.issue("u", "r", "s")[1].jti for _ in range(200)}
    assert len(jtis) == 200
    sample = next(iter(jtis))
    assert len(base64.urlsafe_b64decode(sample + "=" * (-len(sample) % 4))) >= 16


@pytest.mark.parametrize(
    "claim", ["iss", "aud", "sub", "role", "sid", "jti", "iat", "iat_us", "nbf", "exp"]
)
def test_extra_claims_cannot_override_reserved(
    make_kit: Callable[..., TokenKit], claim: str
) -> None:
    kit = make_kit("HS256")
    with pytest.raises(ValueError, match="reserved"):
        kit.signer.issue("u", "user", "s", extra_claims={claim: "x"})


def test_access_ttl_setting_sets_exp(make_kit: Callable[..., TokenKit]) -> None:
    kit = make_kit("HS256", access_ttl=60)
    _, claims = kit.signer.issue("u", "user", "s")
    assert claims.exp - claims.iat == 60
