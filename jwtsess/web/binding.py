"""The binding a login or refresh request asks for: its DPoP proof's key, if it sent one."""

from __future__ import annotations

from starlette.requests import Request

from ..dpop import DPoPVerifier, OneTimeKeys
from ..errors import DPoPProofInvalid
from ..sessions import key_binding


async def dpop_binding(request: Request, store: OneTimeKeys, dpop: DPoPVerifier) -> str | None:
    """``key_binding(jkt)`` of the request's verified ``DPoP`` proof, or None without one.

    For ``issuer.login(binding=...)`` and ``issuer.refresh(binding=...)``: the
    proof is checked for this request (method and URI) and its ``jti`` recorded
    in ``store`` (the ``Issuer`` or the ``SessionStore``), so it opens or
    rotates a session once across every process.

    :raises DPoPProofInvalid: the proof is bad, already used, or there are two.
    :raises DPoPNonceRequired: nonces are on and the proof lacks the current one.
    :raises StoreUnavailable: the replay check could not be made.
    """
    proofs = request.headers.getlist("dpop")
    if not proofs:
        return None
    if len(proofs) > 1:
        raise DPoPProofInvalid("The request has more than one DPoP header.")
    checked = await dpop.verify_token_request(proofs[0], request.scope, store)
    return key_binding(checked.jkt)
