"""``dpop_login`` / ``adpop_login``: sign in with a new DPoP key and get a ``JWTSessAuth``.

The key is made here (ES256 or EdDSA), its proof goes with the login request
(once more with the server's nonce if it answers ``use_dpop_nonce``), and the
returned ``JWTSessAuth`` keeps that key for the session's whole life.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ..clock import Clock, system_clock
from ..dpop_jwk import DPoPKey
from .auth import JWTSessAuth

__all__ = ["adpop_login", "dpop_login"]


def _challenge(response: httpx.Response) -> str | None:
    """The nonce of a ``use_dpop_nonce`` answer (RFC 9449 section 8), else None."""
    nonce = response.headers.get("dpop-nonce")
    if nonce is None or response.status_code not in (400, 401):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return nonce if isinstance(body, dict) and body.get("error") == "use_dpop_nonce" else None


def _request(
    client: httpx.Client | httpx.AsyncClient,
    url: httpx.URL | str,
    body: Mapping[str, Any],
    key: DPoPKey,
    nonce: str | None,
) -> httpx.Request:
    request = client.build_request("POST", url, json=dict(body))
    request.headers["DPoP"] = key.proof("POST", str(request.url), nonce=nonce)
    return request


def _auth(
    response: httpx.Response, key: DPoPKey, clock: Clock, options: Mapping[str, Any]
) -> JWTSessAuth:
    response.raise_for_status()
    return JWTSessAuth.from_token_response(response.json(), clock=clock, dpop_key=key, **options)


def dpop_login(
    client: httpx.Client,
    url: httpx.URL | str,
    *,
    json: Mapping[str, Any],
    alg: str = "ES256",
    clock: Clock = system_clock,
    **options: Any,
) -> JWTSessAuth:
    """POST ``json`` to the login ``url`` with a proof from a new key; the bound session.

    :param alg: ``ES256`` or ``EdDSA``.
    :param options: more keyword arguments of ``JWTSessAuth`` (``refresh_url``, ...).
    :raises httpx.HTTPStatusError: the login was refused.
    :raises ValueError: the answer is not a token pair.
    """
    key = DPoPKey.generate(alg, clock=clock)
    response = client.send(_request(client, url, json, key, None))
    nonce = _challenge(response)
    if nonce is not None:
        response = client.send(_request(client, url, json, key, nonce))
    return _auth(response, key, clock, options)


async def adpop_login(
    client: httpx.AsyncClient,
    url: httpx.URL | str,
    *,
    json: Mapping[str, Any],
    alg: str = "ES256",
    clock: Clock = system_clock,
    **options: Any,
) -> JWTSessAuth:
    """``dpop_login`` for an ``httpx.AsyncClient``."""
    key = DPoPKey.generate(alg, clock=clock)
    response = await client.send(_request(client, url, json, key, None))
    nonce = _challenge(response)
    if nonce is not None:
        response = await client.send(_request(client, url, json, key, nonce))
    return _auth(response, key, clock, options)
