"""DPoP proof verification (RFC 9449): sender-constrained tokens.

A DPoP proof is a JWS the client signs with its own key for one request. The
checks run in this order (RFC 9449 section 4.3), cheapest first, and every
failure is ``DPoPProofInvalid`` (``invalid_dpop_proof``):

1. size limit and shape before any decoding: one compact JWS of three
   segments;
2. header (parsed once per key and cached by its text): canonical base64url,
   strict JSON, only ``typ``, ``alg`` and ``jwk``; ``typ`` is
   ``dpop+jwt``; ``alg`` is in the allow-list (asymmetric only: never
   ``none``, never an HMAC); ``jwk`` is a public key of the type ``alg`` needs
   (private members refused), from which the key is built (``dpop_jwk``);
3. the signature, with the algorithm pinned by that key (the payload is parsed
   only after it verified);
4. claims: ``jti`` (a short string), ``htm`` equal to the request method,
   ``htu`` equal to the request URI after normalisation, ``iat`` within the
   window, ``nonce`` when the server requires one (``DPoPNonceRequired``,
   ``use_dpop_nonce``), ``ath`` equal to the hash of the access token it
   travels with;
5. the key: its RFC 7638 thumbprint must equal the token's ``cnf.jkt``;
6. replay: the ``jti`` (per key) must be new. Resource requests use a bounded
   per-process cache (``ReplayCache``); the token endpoints (login, refresh,
   ``/auth/token``) use the session store, so a proof is used once across
   processes where a session is created or rotated.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from starlette.types import Scope

from .clock import Clock, system_clock
from .dpop_checks import ReplayCache, normalize_htu, token_hash
from .dpop_jwk import PROOF_ALGORITHMS, ProofKey, proof_key
from .errors import AuthError, DPoPNonceRequired, DPoPProofInvalid
from .jwk import b64url
from .verifier import _json_object, _segment

PROOF_TYP: Final = "dpop+jwt"
_CACHE_SIZE: Final = 4096  # per-process caches of derived values; cleared when full
_HEADER_MEMBERS: Final = frozenset({"typ", "alg", "jwk"})
_MAX_JTI_LENGTH: Final = 256
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True, slots=True, kw_only=True)
class DPoPSettings:
    """How DPoP proofs are checked.

    :param algorithms: the proof algorithms accepted (a subset of ES256,
        EdDSA, RS256, PS256; symmetric algorithms are never accepted).
    :param max_age: a proof is accepted for this many seconds after its ``iat``.
    :param leeway: clock skew allowed, both ways, for ``iat``.
    :param max_proof_bytes: longer proofs are refused before any decoding.
    :param external_origin: the scheme, host and port clients use to reach this
        service (``"https://api.example.com"``). Behind a proxy that rewrites
        ``Host`` or terminates TLS, set it: ``htu`` is then checked against this
        origin plus the request's root path and path. None: the request's own
        scheme and ``Host`` header.
    :param nonce_secret: when set, every proof must carry a server nonce (RFC
        9449 sections 8 and 9). Nonces are stateless: an HMAC of the current
        ``nonce_interval`` under this secret, so every process sharing the
        secret issues and accepts the same ones. At least 32 bytes.
    :param nonce_interval: a nonce is current for this many seconds and still
        accepted for one interval after.
    :param replay_cache_size: proofs remembered per process for resource requests.
    """

    algorithms: Sequence[str] = PROOF_ALGORITHMS
    max_age: int = 60
    leeway: int = 5
    max_proof_bytes: int = 4096
    external_origin: str | None = None
    nonce_secret: bytes | None = None
    nonce_interval: int = 300
    replay_cache_size: int = 100_000

    def __post_init__(self) -> None:
        unknown = set(self.algorithms) - set(PROOF_ALGORITHMS)
        if unknown or not self.algorithms:
            raise ValueError(f"algorithms must be a non-empty subset of {PROOF_ALGORITHMS}")
        if not 1 <= self.max_age <= 3600 or not 0 <= self.leeway <= 300:
            raise ValueError("max_age must be 1..3600 and leeway 0..300 seconds")
        if not 512 <= self.max_proof_bytes <= 65536:
            raise ValueError("max_proof_bytes must be between 512 and 65536")
        if self.nonce_secret is not None and len(self.nonce_secret) < 32:
            raise ValueError("nonce_secret must be at least 32 bytes")
        if self.nonce_interval < 10:
            raise ValueError("nonce_interval must be at least 10 seconds")
        if self.replay_cache_size < 1:
            raise ValueError("replay_cache_size must be positive")
        if self.external_origin is not None:
            origin = urlsplit(self.external_origin)
            if (
                origin.scheme not in ("http", "https")
                or not origin.hostname
                or origin.path not in ("", "/")
                or origin.query
                or origin.fragment
            ):
                raise ValueError("external_origin must be 'https://host[:port]', nothing more")


_FROM_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
_PADDING: Final = (b"", b"===", b"==", b"=")


def _b64decode(segment: str) -> bytes:
    """Unpadded base64url to bytes (ASCII already checked)."""
    raw = segment.encode("ascii").translate(_FROM_URLSAFE)
    return binascii.a2b_base64(raw + _PADDING[len(raw) % 4])


class OneTimeKeys(Protocol):
    """Where the token endpoints record proof ``jti``s: a ``SessionStore``, or an
    ``Issuer`` (which asks its store)."""

    async def claim_once(self, key: str, *, now: float, until: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class DPoPProof:
    """A verified proof: the key's thumbprint and what the replay check needs."""

    jkt: str
    jti: str
    iat: float
    htm: str
    htu: str


class DPoPVerifier:
    """Checks DPoP proofs; one per process (it holds the resource replay cache).

    :param settings: algorithms, time window, nonces, the external origin.
    :param clock: wall-clock seconds.
    """

    def __init__(
        self, settings: DPoPSettings | None = None, *, clock: Clock = system_clock
    ) -> None:
        self.settings = settings = settings or DPoPSettings()
        self._clock = clock
        self._algorithms = frozenset(settings.algorithms)
        self._window = settings.max_age + 2 * settings.leeway
        self._replay = ReplayCache(settings.replay_cache_size, self._window)
        self._keys: dict[str, ProofKey] = {}  # header segment -> key (clients reuse theirs)
        self._htus: dict[str, str] = {}  # request URI -> normalised htu
        self._aths: dict[str, bytes] = {}  # access token -> its ath (the same token is reused)
        self._origin = (
            normalize_htu(settings.external_origin).rstrip("/")
            if settings.external_origin
            else None
        )
        #: The ``algs`` of a DPoP challenge (RFC 9449 section 7.1).
        self.algs = " ".join(a for a in PROOF_ALGORITHMS if a in self._algorithms)

    # -- nonces (RFC 9449 sections 8, 9) ------------------------------------------------

    def _nonce_for(self, counter: int) -> str:
        secret = self.settings.nonce_secret or b""  # callers check it is set
        raw = counter.to_bytes(8, "big")
        mac = hmac.new(secret, b"jwtsess-dpop-nonce" + raw, hashlib.sha256).digest()[:16]
        return b64url(raw + mac)

    def current_nonce(self) -> str | None:
        """The nonce clients should use now, or None when nonces are off."""
        if self.settings.nonce_secret is None:
            return None
        return self._nonce_for(int(self._clock() // self.settings.nonce_interval))

    def _check_nonce(self, nonce: object) -> None:
        current = self.current_nonce()
        if current is None:
            return
        if isinstance(nonce, str) and len(nonce) == len(current):
            counter = int(self._clock() // self.settings.nonce_interval)
            for accepted in (current, self._nonce_for(counter - 1)):
                if hmac.compare_digest(nonce.encode("ascii", "replace"), accepted.encode()):
                    return
        detail = "The DPoP proof needs the server's nonce." if nonce is None else None
        raise DPoPNonceRequired(detail or "The DPoP proof's nonce is not current.", nonce=current)

    # -- the request's URI ------------------------------------------------------------------

    def request_htu(self, scope: Scope) -> str:
        """The normalised ``htu`` a proof for this request must carry.

        :raises DPoPProofInvalid: the request has no usable ``Host``.
        """
        path, root = scope["path"], scope.get("root_path", "")
        if root and not path.startswith(root):  # ASGI servers differ on whether path has it
            path = root + path
        if self._origin is not None:
            return self._origin + (path or "/")
        host = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                break
        if not host and scope.get("server"):
            server_host, server_port = scope["server"]
            host = f"{server_host}:{server_port}"
        uri = f"{scope.get('scheme', 'http')}://{host}{path}"
        htu = self._htus.get(uri)
        if htu is None:
            try:
                htu = normalize_htu(uri)
            except ValueError:
                raise DPoPProofInvalid(
                    "The request's Host cannot be checked against htu."
                ) from None
            if len(self._htus) >= _CACHE_SIZE:
                self._htus.clear()
            self._htus[uri] = htu
        return htu

    # -- verification -------------------------------------------------------------------------

    def verify(
        self,
        proof: object,
        *,
        method: str,
        htu: str,
        access_token: str | None = None,
        jkt: str | None = None,
    ) -> DPoPProof:
        """Check one proof against a request, without the replay check.

        :param method: the request method (``htm`` must equal it exactly).
        :param htu: the request's normalised URI (``request_htu`` or ``normalize_htu``).
        :param access_token: the token the proof travels with: ``ath`` must be its hash.
        :param jkt: the thumbprint the token is bound to: the proof's key must have it.
        :raises DPoPProofInvalid: any check failed.
        :raises DPoPNonceRequired: nonces are on and the proof lacks the current one.
        """
        settings = self.settings
        if not isinstance(proof, str) or not proof:
            raise DPoPProofInvalid("A DPoP proof header is required.")
        if len(proof) > settings.max_proof_bytes:
            raise DPoPProofInvalid(f"The DPoP proof is longer than {settings.max_proof_bytes}.")
        if not proof.isascii() or proof.count(".") != 2:
            raise DPoPProofInvalid("The DPoP proof is not a compact JWS.")
        header_seg, payload_seg, signature_seg = proof.split(".")
        key = self._keys.get(header_seg)
        if key is None:
            try:
                key = self._header_key(header_seg)
            except AuthError as error:
                raise DPoPProofInvalid(error.detail.replace("token", "DPoP proof")) from None
        # The header is parsed strictly once per key (above); the per-request parts
        # are signed by the client's own key, so plain decoding is enough for them.
        signing_input = proof[: len(header_seg) + 1 + len(payload_seg)].encode("ascii")
        try:
            signature = _b64decode(signature_seg)
        except (binascii.Error, ValueError):
            raise DPoPProofInvalid("The DPoP proof's signature is not base64url.") from None
        if not signature or not key.verify(signing_input, signature):
            raise DPoPProofInvalid("The DPoP proof's signature does not verify.")
        try:
            payload = json.loads(_b64decode(payload_seg).decode("utf-8"))
        except (binascii.Error, ValueError, RecursionError):  # UnicodeDecodeError too
            raise DPoPProofInvalid("The DPoP proof's payload is not a JSON object.") from None
        if not isinstance(payload, dict):
            raise DPoPProofInvalid("The DPoP proof's payload is not a JSON object.")
        return self._check_claims(payload, key, method, htu, access_token, jkt)

    def _header_key(self, header_seg: str) -> ProofKey:
        header = _json_object(_segment(header_seg, "header"), "header")
        if not header.keys() <= _HEADER_MEMBERS:
            raise DPoPProofInvalid("The DPoP proof's header has an unsupported parameter.")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() != PROOF_TYP:
            raise DPoPProofInvalid("The DPoP proof's typ is not dpop+jwt.")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise DPoPProofInvalid(f"The DPoP proof's alg is not one of: {self.algs}.")
        try:
            key = proof_key(alg, header.get("jwk"))
        except ValueError as exc:
            raise DPoPProofInvalid(f"The DPoP proof's jwk is not usable: {exc}.") from None
        if len(self._keys) >= _CACHE_SIZE:
            del self._keys[next(iter(self._keys))]
        self._keys[header_seg] = key
        return key

    def _check_claims(
        self,
        payload: dict[str, Any],
        key: ProofKey,
        method: str,
        htu: str,
        access_token: str | None,
        jkt: str | None,
    ) -> DPoPProof:
        get = payload.get
        jti, htm, claimed_htu, iat = get("jti"), get("htm"), get("htu"), get("iat")
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI_LENGTH:
            raise DPoPProofInvalid("The DPoP proof has no usable 'jti'.")
        if htm != method:
            raise DPoPProofInvalid("The DPoP proof is for another HTTP method.")
        if not isinstance(claimed_htu, str):
            raise DPoPProofInvalid("The DPoP proof has no 'htu'.")
        if claimed_htu != htu:  # most clients send the normal form: no parsing then
            try:
                same_uri = normalize_htu(claimed_htu) == htu
            except ValueError:
                same_uri = False
            if not same_uri:
                raise DPoPProofInvalid("The DPoP proof is for another URI.")
        if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
            raise DPoPProofInvalid("The DPoP proof has no numeric 'iat'.")
        now = self._clock()
        if iat > now + self.settings.leeway:
            raise DPoPProofInvalid("The DPoP proof was issued in the future.")
        if iat < now - self.settings.max_age - self.settings.leeway:
            raise DPoPProofInvalid("The DPoP proof is too old.")
        self._check_nonce(payload.get("nonce"))
        if access_token is not None:
            ath = payload.get("ath")
            expected = self._aths.get(access_token)
            if expected is None:
                if len(self._aths) >= _CACHE_SIZE:
                    self._aths.clear()
                expected = self._aths[access_token] = token_hash(access_token).encode("ascii")
            if not isinstance(ath, str) or not hmac.compare_digest(
                ath.encode("ascii", "replace"), expected
            ):
                raise DPoPProofInvalid("The DPoP proof's 'ath' is not the access token's hash.")
        if jkt is not None and not hmac.compare_digest(key.jkt, jkt):
            raise DPoPProofInvalid("The DPoP proof is signed by a key the token is not bound to.")
        return DPoPProof(jkt=key.jkt, jti=jti, iat=float(iat), htm=method, htu=htu)

    def verify_resource_request(
        self, proof: object, scope: Scope, *, access_token: str, jkt: str
    ) -> DPoPProof:
        """A proof sent with a DPoP-bound access token (RFC 9449 section 7), replay
        checked against this process's cache.

        :raises DPoPProofInvalid: a check failed, or the proof was seen before.
        """
        method = "GET" if scope["type"] == "websocket" else scope["method"]
        checked = self.verify(
            proof,
            method=method,
            htu=self.request_htu(scope),
            access_token=access_token,
            jkt=jkt,
        )
        if not self._replay.add(f"{checked.jkt}.{checked.jti}", checked.iat, self._clock()):
            raise DPoPProofInvalid("The DPoP proof was already used.")
        return checked

    async def verify_token_request(
        self, proof: object, scope: Scope, store: OneTimeKeys, *, jkt: str | None = None
    ) -> DPoPProof:
        """A proof sent to a token endpoint (login, refresh, ``/auth/token``), replay
        checked in the session store (once across every process).

        :param jkt: the key the session is bound to, if known already.
        :raises DPoPProofInvalid: a check failed, or the proof was seen before.
        :raises StoreUnavailable: the replay check could not be made.
        """
        checked = self.verify(proof, method=scope["method"], htu=self.request_htu(scope), jkt=jkt)
        now = self._clock()
        key = "dpop:" + b64url(
            hashlib.sha256(f"{checked.jkt}.{checked.jti}".encode()).digest()[:18]
        )
        if not await store.claim_once(key, now=now, until=checked.iat + self._window):
            raise DPoPProofInvalid("The DPoP proof was already used.")
        return checked
