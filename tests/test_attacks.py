"""Security regressions: every known JWT attack, forged by hand, must be refused.

Each test builds its token itself (base64url + JSON + a signature made with
``cryptography`` or ``hmac``), so the attack is exactly what the test name
says and does not depend on the library's own signer. Each asserts the exact
exception class (not a subclass) and its stable ``code``.

The positive controls at the top prove the forging helpers make tokens the
verifier accepts; without them a broken helper would make every attack test
pass for the wrong reason.

The keyrings are built once per module (RSA key generation is the slow part);
every test gets a fresh ``Verifier``, so no verified-token cache is shared, and
nobody moves the shared clock.

Every test that uses ``kit`` runs twice: against the ``KeyRing`` (the issuing
side) and against a ``JWKSKeySource`` holding only that ring's published JWKS
(a service that only verifies). A JWKS holds no HMAC key, so HS256 cases run
against the keyring only (tests/conftest.py deselects the other combination);
that a JWKS source refuses HS256 outright is tested in tests/test_jwks.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt.algorithms
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from jwtsess import (
    AccessClaims,
    AccessTokenSigner,
    AuthError,
    JWKSKeySource,
    KeyRing,
    KeySource,
    TokenInvalid,
    TokenMalformed,
    TokenSettings,
    UnknownKeyId,
    VerificationKey,
    Verifier,
    init_keys,
    rotate_keys,
)
from jwtsess.jwk import SigningKey, public_jwk_of, to_low_s
from jwtsess.refresh_token import encode_refresh_token, new_session_id
from tests.support.kit import ALGORITHMS, AUDIENCE, ISSUER, T0, MutableClock, TokenKit

NOW: Final = int(T0)
LEEWAY: Final = 10  # TokenSettings' default, which every kit here uses
BIG_LIMIT: Final = 65536  # the largest max_token_bytes TokenSettings allows
# The order of the P-256 group (FIPS 186-4, D.1.2.3).
P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_B64_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

Json = Mapping[str, object]
KitFactory = Callable[..., TokenKit]


# -- forging helpers ---------------------------------------------------------------


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    """Lenient base64url decoding (ignores non-zero trailing bits)."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def to_json(value: Json | str) -> str:
    """``str`` is raw JSON text, used verbatim; a mapping is serialised compactly."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


_SHA: Final[Mapping[str, Callable[[], hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_HASHLIB: Final[Mapping[str, str]] = {"256": "sha256", "384": "sha384", "512": "sha512"}


def sign(alg: str, key: Any, message: bytes) -> bytes:
    """Sign ``message`` as JWS ``alg`` would, with whatever ``key`` the attack uses.

    ``HS*`` uses ``key`` (bytes) as the raw HMAC secret; ``ES*`` signs with the
    key's own curve and returns raw ``r || s`` of that curve's size, so an
    ``ES384`` signature can be made with a P-256 key.
    """
    if alg.lower() == "none":
        return b""
    if alg == "EdDSA":
        return bytes(key.sign(message))
    family, bits = alg[:2], alg[2:]
    if family == "HS":
        return hmac.new(key, message, _HASHLIB[bits]).digest()
    hash_alg = _SHA[bits]()
    if family == "RS":
        return bytes(key.sign(message, padding.PKCS1v15(), hash_alg))
    if family == "PS":
        pss = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        return bytes(key.sign(message, pss, hash_alg))
    if family == "ES":
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hash_alg)))
        size = (int(key.curve.key_size) + 7) // 8
        raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        # Canonical low s, as jwtsess signs (jwk.is_low_s): a valid forgery must
        # fail for the attack's reason, not for a high s.
        return to_low_s(raw) if alg == "ES256" else raw
    raise ValueError(f"cannot sign with {alg!r}")


def forge(
    header: Json | str,
    payload: Json | str,
    key: Any,
    alg: str,
    *,
    signature: bytes | None = None,
) -> str:
    """A compact JWS: ``header`` and ``payload`` (raw JSON text if ``str``) signed
    with ``key`` under ``alg`` (``signature`` replaces the real one if given)."""
    signing_input = f"{b64(to_json(header).encode())}.{b64(to_json(payload).encode())}"
    if signature is None:
        signature = sign(alg, key, signing_input.encode("ascii"))
    return f"{signing_input}.{b64(signature)}"


_DROP: Final = object()  # pass as a value to remove a member


def _merge(base: dict[str, object], overrides: Mapping[str, object]) -> dict[str, object]:
    for name, value in overrides.items():
        if value is _DROP:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def claims(**overrides: object) -> dict[str, object]:
    """Valid access-token claims at ``NOW`` (fresh ``jti``, so every token is new)."""
    base: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "role": "user",
        "sid": "sid-1",
        "jti": secrets.token_urlsafe(16),
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 900,
    }
    return _merge(base, overrides)


def header_for(key: SigningKey, **overrides: object) -> dict[str, object]:
    """The header the real signer writes for ``key``, with changes."""
    return _merge({"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}, overrides)


def with_raw_member(obj: Json, name: str, raw: str) -> str:
    """``obj`` as JSON text with ``"name": <raw>`` appended verbatim."""
    text = to_json(obj)
    return f'{text[:-1]},"{name}":{raw}}}'


def valid_token(key: SigningKey, **claim_overrides: object) -> str:
    return forge(header_for(key), claims(**claim_overrides), key.sign_key, key.alg)


def rejects(verifier: Verifier, token: str, exc_type: type[AuthError], code: str) -> AuthError:
    """Assert ``verify(token)`` raises exactly ``exc_type`` (no subclass) with ``code``."""
    with pytest.raises(exc_type) as info:
        verifier.verify(token)
    assert type(info.value) is exc_type, f"expected {exc_type.__name__}, got {info.value!r}"
    assert info.value.code == code
    return info.value


def invalid(verifier: Verifier, token: str) -> None:
    rejects(verifier, token, TokenInvalid, "token_invalid")


def malformed(verifier: Verifier, token: str) -> None:
    rejects(verifier, token, TokenMalformed, "token_malformed")


def unknown_kid(verifier: Verifier, token: str) -> None:
    rejects(verifier, token, UnknownKeyId, "token_invalid")


# -- fixtures -----------------------------------------------------------------------


Rings = tuple[MutableClock, dict[str, KeyRing], dict[str, JWKSKeySource]]


@pytest.fixture(scope="module")
def _shared_rings(tmp_path_factory: pytest.TempPathFactory) -> Rings:
    clock = MutableClock()  # stays at T0: no test here moves it
    rings: dict[str, KeyRing] = {}
    published: dict[str, JWKSKeySource] = {}
    for alg in ALGORITHMS:
        directory = tmp_path_factory.mktemp(f"attack-ring-{alg}") / "keys"
        init_keys(directory, alg, clock=clock)
        rings[alg] = KeyRing(directory, clock=clock, monotonic=clock)
        if alg != "HS256":
            jwks = directory.parent / "jwks.json"
            jwks.write_text(json.dumps(rings[alg].jwks()))
            published[alg] = JWKSKeySource.from_file(jwks, monotonic=clock)
    return clock, rings, published


@pytest.fixture(params=["keyring", "jwks"])
def key_source(request: pytest.FixtureRequest) -> str:
    """Which key source the verifier of ``kit`` uses."""
    return str(request.param)


@pytest.fixture
def kit(_shared_rings: Rings, key_source: str) -> KitFactory:
    """``kit(alg, max_token_bytes=None)``: the module's ``alg`` ring, a fresh verifier
    on that ring or on its published JWKS (``key_source``)."""
    clock, rings, published = _shared_rings

    def make(alg: str, max_token_bytes: int | None = None) -> TokenKit:
        ring = rings[alg]
        settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE)
        assert settings.leeway == LEEWAY
        if max_token_bytes is not None:
            settings = replace(settings, max_token_bytes=max_token_bytes)
        keys: KeySource = ring if key_source == "keyring" else published[alg]
        return TokenKit(
            directory=ring.directory,
            clock=clock,
            keyring=ring,
            settings=settings,
            signer=AccessTokenSigner(ring, settings, clock=clock),
            verifier=Verifier(keys, settings, clock=clock),
        )

    return make


def active_key(kit: TokenKit) -> SigningKey:
    return kit.keyring.signing_key()


_ALGORITHM_CLASSES: Final[tuple[type[jwt.algorithms.Algorithm], ...]] = (
    jwt.algorithms.NoneAlgorithm,
    jwt.algorithms.HMACAlgorithm,
    jwt.algorithms.RSAAlgorithm,
    jwt.algorithms.RSAPSSAlgorithm,
    jwt.algorithms.ECAlgorithm,
    jwt.algorithms.OKPAlgorithm,
)


def _verify_spy(name: str, original: Callable[..., bool], calls: list[str]) -> Callable[..., bool]:
    def verify(self: Any, msg: bytes, key: Any, sig: bytes) -> bool:
        calls.append(name)
        return original(self, msg, key, sig)

    return verify


@pytest.fixture
def crypto_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the PyJWT algorithm classes whose ``verify`` ran during the test."""
    calls: list[str] = []
    for cls in _ALGORITHM_CLASSES:
        monkeypatch.setattr(cls, "verify", _verify_spy(cls.__name__, cls.verify, calls))
    return calls


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call the returned function to make any base64 decoding fail the test."""

    def forbid() -> None:
        def boom(*args: object, **kwargs: object) -> bytes:
            raise AssertionError("base64 decoding ran for a token that is over the limit")

        for name in ("urlsafe_b64decode", "b64decode", "standard_b64decode"):
            monkeypatch.setattr(base64, name, boom)

    return forbid


# -- positive controls --------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_control_forged_token_verifies(kit: KitFactory, alg: str) -> None:
    k = kit(alg)
    key = active_key(k)
    token = valid_token(key, sub="control-user")
    # The forged header is byte-for-byte the one the real signer writes.
    assert token.split(".")[0].encode("ascii") == key.header_b64
    result = k.verifier.verify(token)
    assert isinstance(result, AccessClaims)
    assert (result.sub, result.kid, result.iss, result.aud) == (
        "control-user",
        key.kid,
        ISSUER,
        AUDIENCE,
    )


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_control_forged_raw_json_verifies(kit: KitFactory, alg: str) -> None:
    k = kit(alg)
    key = active_key(k)
    header = f'{{"alg":"{key.alg}","kid":"{key.kid}","typ":"at+jwt"}}'
    payload = with_raw_member(claims(), "extra", "[1, 2.5, {}]")
    result = k.verifier.verify(forge(header, payload, key.sign_key, alg))
    assert result.extra == {"extra": [1, 2.5, {}]}


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_control_signer_token_verifies(kit: KitFactory, alg: str) -> None:
    k = kit(alg)
    assert k.verifier.verify(k.token(sub="signed-by-signer")).sub == "signed-by-signer"


# -- alg "none" ---------------------------------------------------------------------


@pytest.mark.parametrize("ring_alg", ALGORITHMS)
@pytest.mark.parametrize(
    "signature",
    [pytest.param(b"", id="empty-sig"), pytest.param(b"\x01" * 32, id="some-sig")],
)
@pytest.mark.parametrize("none", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(
    kit: KitFactory, crypto_calls: list[str], ring_alg: str, signature: bytes, none: str
) -> None:
    # The key pins the algorithm before the signature segment is even decoded, so
    # an unsecured JWS (empty signature, as RFC 7515 writes it) is token_invalid.
    k = kit(ring_alg)
    key = active_key(k)
    token = forge(header_for(key, alg=none), claims(), None, "none", signature=signature)
    assert token.endswith(".") == (not signature)
    invalid(k.verifier, token)
    assert crypto_calls == []  # the alg pin refused it before any signature check


@pytest.mark.parametrize("none", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_a_real_signature_is_refused(kit: KitFactory, none: str) -> None:
    # The signature verifies under the key's real algorithm: only the label lies.
    k = kit("RS256")
    key = active_key(k)
    invalid(k.verifier, forge(header_for(key, alg=none), claims(), key.sign_key, "RS256"))


# -- algorithm confusion: HS256 keyed with the RSA public key ----------------------


def _rsa_public_secret(key: SigningKey, form: str) -> bytes:
    public: rsa.RSAPublicKey = key.verify_key
    pem, der = serialization.Encoding.PEM, serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pkcs1 = serialization.PublicFormat.PKCS1
    assert key.public_jwk is not None
    secrets_by_form = {
        "spki-pem": public.public_bytes(pem, spki),
        "spki-pem-no-newline": public.public_bytes(pem, spki).rstrip(b"\n"),
        "pkcs1-pem": public.public_bytes(pem, pkcs1),
        "pkcs1-pem-no-newline": public.public_bytes(pem, pkcs1).rstrip(b"\n"),
        "spki-der": public.public_bytes(der, spki),
        "jwk-json": json.dumps(dict(key.public_jwk)).encode(),
    }
    return secrets_by_form[form]


@pytest.mark.parametrize(
    "form",
    [
        "spki-pem",
        "spki-pem-no-newline",
        "pkcs1-pem",
        "pkcs1-pem-no-newline",
        "spki-der",
        "jwk-json",
    ],
)
def test_hs256_keyed_with_rsa_public_key_is_refused(
    kit: KitFactory, crypto_calls: list[str], form: str
) -> None:
    k = kit("RS256")
    key = active_key(k)
    secret = _rsa_public_secret(key, form)
    assert secret.endswith(b"\n") == (form in {"spki-pem", "pkcs1-pem"})
    token = forge(header_for(key, alg="HS256"), claims(), secret, "HS256")
    invalid(k.verifier, token)
    assert crypto_calls == []  # never MACed with the public key


# -- header alg that differs from the key's -----------------------------------------


@pytest.mark.parametrize(
    ("ring_alg", "header_alg", "sign_alg", "key_kind"),
    [
        pytest.param("RS256", "RS512", "RS512", "private", id="RS512-on-RS256-key"),
        pytest.param("RS256", "RS384", "RS384", "private", id="RS384-on-RS256-key"),
        pytest.param("RS256", "PS256", "PS256", "private", id="PS256-on-RS256-key"),
        pytest.param("RS256", "rs256", "RS256", "private", id="lowercase-rs256-label"),
        pytest.param("ES256", "ES384", "ES384", "private", id="ES384-label-on-ES256-key"),
        pytest.param("ES256", "ES512", "ES512", "private", id="ES512-label-on-ES256-key"),
        pytest.param("EdDSA", "HS256", "HS256", "public-raw", id="HS256-on-EdDSA-key"),
        pytest.param("ES256", "HS256", "HS256", "public-pem", id="HS256-on-ES256-key"),
        pytest.param("HS256", "HS512", "HS512", "private", id="HS512-on-HS256-key"),
    ],
)
def test_header_alg_other_than_the_keys_is_refused(
    kit: KitFactory,
    crypto_calls: list[str],
    ring_alg: str,
    header_alg: str,
    sign_alg: str,
    key_kind: str,
) -> None:
    k = kit(ring_alg)
    key = active_key(k)
    signing_key: Any
    if key_kind == "private":
        signing_key = key.sign_key
    elif key_kind == "public-raw":
        signing_key = key.verify_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        signing_key = key.verify_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    token = forge(header_for(key, alg=header_alg), claims(), signing_key, sign_alg)
    invalid(k.verifier, token)
    assert crypto_calls == []


def test_rs512_forgery_really_is_an_rs512_signature(kit: KitFactory) -> None:
    # Guards the test above: its RS512 token is a genuine RS512 signature by the
    # ring's key, so only the algorithm pin can be what refuses it.
    key = active_key(kit("RS256"))
    token = forge(header_for(key, alg="RS512"), claims(), key.sign_key, "RS512")
    head, payload, sig = token.split(".")
    rs512 = jwt.get_algorithm_by_name("RS512")
    assert rs512.verify(f"{head}.{payload}".encode(), key.verify_key, unb64(sig))


# -- kid injection and unknown kids -------------------------------------------------


@pytest.mark.parametrize(
    ("kid", "expected"),
    [
        pytest.param("../../etc/passwd", UnknownKeyId, id="path-traversal"),
        pytest.param("../../../../dev/null", UnknownKeyId, id="path-traversal-dev-null"),
        pytest.param("' OR 1=1 --", UnknownKeyId, id="sql-injection"),
        pytest.param("x\u0000y", UnknownKeyId, id="nul-byte"),
        pytest.param(1, TokenInvalid, id="integer"),
        pytest.param(["REAL-KID"], TokenInvalid, id="list-with-real-kid"),
        pytest.param({"kid": "REAL-KID"}, TokenInvalid, id="object"),
        pytest.param(None, TokenInvalid, id="null"),
        pytest.param(True, TokenInvalid, id="bool"),
        pytest.param("", TokenInvalid, id="empty-string"),
        pytest.param("k" * 10 * 1024, TokenInvalid, id="10KB-string"),
    ],
)
def test_kid_injection_is_refused(
    kit: KitFactory, crypto_calls: list[str], kid: object, expected: type[AuthError]
) -> None:
    # A large limit, so the 10 KB kid reaches the kid check rather than the size limit.
    k = kit("RS256", max_token_bytes=BIG_LIMIT)
    key = active_key(k)
    kid = json.loads(json.dumps(kid).replace("REAL-KID", key.kid))
    token = forge(header_for(key, kid=kid), claims(), key.sign_key, key.alg)
    assert len(token) <= BIG_LIMIT
    rejects(k.verifier, token, expected, "token_invalid")
    assert crypto_calls == []


def test_missing_kid_is_refused(kit: KitFactory) -> None:
    k = kit("RS256")
    key = active_key(k)
    invalid(k.verifier, forge(header_for(key, kid=_DROP), claims(), key.sign_key, key.alg))


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_unknown_kid_on_a_validly_signed_token_is_refused_without_a_search(
    kit: KitFactory, crypto_calls: list[str], monkeypatch: pytest.MonkeyPatch, alg: str
) -> None:
    k = kit(alg)
    key = active_key(k)
    unknown = b64(secrets.token_bytes(32))  # shaped like a real RFC 7638 thumbprint
    looked_up: list[str] = []
    source = k.verifier.keys
    real_lookup = source.verification_key

    def lookup(kid: str) -> VerificationKey | None:
        looked_up.append(kid)
        return real_lookup(kid)

    monkeypatch.setattr(source, "verification_key", lookup)
    token = forge(header_for(key, kid=unknown), claims(), key.sign_key, key.alg)
    unknown_kid(k.verifier, token)
    assert looked_up == [unknown]  # asked once, for that kid only
    assert crypto_calls == []  # and no key was tried


def test_unknown_kid_with_several_keys_in_the_ring_tries_none_of_them(
    make_kit: KitFactory, crypto_calls: list[str]
) -> None:
    k = make_kit("ES256")
    rotate_keys(k.directory, immediate=True, clock=k.clock)
    assert k.keyring.reload()
    keys = [k.keyring.verification_key(record.kid) for record in k.keyring.manifest.keys]
    assert len(keys) == 2
    for key in keys:
        assert key is not None
        unknown = b64(hashlib.sha256(key.kid.encode()).digest())
        token = forge(header_for(key, kid=unknown), claims(), key.sign_key, key.alg)
        unknown_kid(k.verifier, token)
    assert crypto_calls == []


# -- embedded keys and key URLs in the header ---------------------------------------


_ATTACKER_KEYS: dict[str, rsa.RSAPrivateKey] = {}


def attacker_rsa_key() -> rsa.RSAPrivateKey:
    if "rsa" not in _ATTACKER_KEYS:
        _ATTACKER_KEYS["rsa"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _ATTACKER_KEYS["rsa"]


def self_signed_cert_der(private: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auth.example.test")])
    start = datetime.fromtimestamp(T0, tz=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(start - timedelta(days=1))
        .not_valid_after(start + timedelta(days=30))
        .sign(private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("member", "signer"),
    [
        pytest.param("jwk", "real", id="jwk-real-key-signed-by-real-key"),
        pytest.param("jwk", "attacker", id="jwk-attacker-key-signed-by-attacker"),
        pytest.param("jwk", "attacker-real-kid", id="jwk-attacker-key-with-real-kid"),
        pytest.param("jku", "real", id="jku-signed-by-real-key"),
        pytest.param("jku", "attacker", id="jku-signed-by-attacker"),
        pytest.param("x5u", "real", id="x5u-signed-by-real-key"),
        pytest.param("x5c", "real", id="x5c-signed-by-real-key"),
        pytest.param("x5c", "attacker", id="x5c-attacker-cert-signed-by-attacker"),
        pytest.param("x5t#S256", "real", id="x5t-S256-signed-by-real-key"),
    ],
)
def test_embedded_key_or_key_url_in_header_is_refused(
    kit: KitFactory, member: str, signer: str
) -> None:
    k = kit("RS256")
    key = active_key(k)
    attacker = attacker_rsa_key()
    attacker_jwk = public_jwk_of("RS256", attacker.public_key())
    use_attacker = signer.startswith("attacker")
    assert key.public_jwk is not None
    values: dict[str, object] = {
        "jwk": dict(attacker_jwk) if use_attacker else dict(key.public_jwk),
        "jku": "https://attacker.example/.well-known/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": [base64.b64encode(self_signed_cert_der(attacker)).decode("ascii")],
        "x5t#S256": b64(hashlib.sha256(b"certificate").digest()),
    }
    kid = attacker_jwk["kid"] if signer == "attacker" else key.kid
    header = header_for(key, kid=kid)
    header[member] = values[member]
    token = forge(header, claims(), attacker if use_attacker else key.sign_key, "RS256")
    invalid(k.verifier, token)


# -- crit and b64 -------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"crit": ["urn:example:attack"], "urn:example:attack": True}, id="unknown"),
        pytest.param({"crit": ["urn:example:attack"]}, id="unknown-name-not-present"),
        pytest.param({"crit": []}, id="empty-list"),
        pytest.param({"crit": ["exp"]}, id="registered-claim-name"),
    ],
)
def test_crit_header_is_refused(kit: KitFactory, extra: dict[str, object]) -> None:
    k = kit("RS256")
    key = active_key(k)
    invalid(k.verifier, forge({**header_for(key), **extra}, claims(), key.sign_key, key.alg))


@pytest.mark.parametrize(
    ("extra", "unencoded_signing_input"),
    [
        pytest.param({"b64": False, "crit": ["b64"]}, False, id="b64-false-with-crit"),
        pytest.param({"b64": False}, False, id="b64-false-without-crit"),
        pytest.param({"b64": False, "crit": ["b64"]}, True, id="b64-false-rfc7797-signed"),
    ],
)
def test_b64_false_is_refused(
    kit: KitFactory, extra: dict[str, object], unencoded_signing_input: bool
) -> None:
    k = kit("RS256")
    key = active_key(k)
    header = {**header_for(key), **extra}
    payload = to_json(claims())
    if unencoded_signing_input:
        # RFC 7797: the signature covers the payload bytes themselves.
        header_seg = b64(to_json(header).encode())
        sig = sign(key.alg, key.sign_key, f"{header_seg}.{payload}".encode())
        token = forge(header, payload, None, "none", signature=sig)
    else:
        token = forge(header, payload, key.sign_key, key.alg)
    invalid(k.verifier, token)


# -- ECDSA zero and group-order signatures ------------------------------------------


@pytest.mark.parametrize(
    "value",
    [pytest.param(0, id="r=s=0"), pytest.param(P256_ORDER, id="r=s=n")],
)
def test_ecdsa_degenerate_signature_is_refused(kit: KitFactory, value: int) -> None:
    k = kit("ES256")
    key = active_key(k)
    signature = value.to_bytes(32, "big") * 2
    assert len(signature) == 64
    invalid(k.verifier, forge(header_for(key), claims(), None, "none", signature=signature))


# -- signature segment shape --------------------------------------------------------


def non_canonical(segment: str) -> str:
    """``segment`` with its unused trailing bits set: a second spelling of the same bytes."""
    unused_bits = {2: 4, 3: 2}[len(segment) % 4]
    last = _B64_ALPHABET.index(segment[-1])
    assert last & ((1 << unused_bits) - 1) == 0
    other = segment[:-1] + _B64_ALPHABET[last | 1]
    assert other != segment
    assert unb64(other) == unb64(segment)
    return other


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_empty_signature_is_malformed(kit: KitFactory, alg: str) -> None:
    k = kit(alg)
    key = active_key(k)
    token = forge(header_for(key), claims(), None, "none", signature=b"")
    assert token.endswith(".")
    malformed(k.verifier, token)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_missing_signature_segment_is_malformed(kit: KitFactory, alg: str) -> None:
    k = kit(alg)
    token = valid_token(active_key(k))
    malformed(k.verifier, token.rsplit(".", 1)[0])


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_non_canonical_base64url_signature_is_malformed(kit: KitFactory, alg: str) -> None:
    k = kit(alg)
    head, payload, sig = valid_token(active_key(k)).split(".")
    malformed(k.verifier, f"{head}.{payload}.{non_canonical(sig)}")


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s + "=" * (-len(s) % 4), id="padded"),
        pytest.param(lambda s: s[:10] + "!" + s[10:], id="stray-character"),
        pytest.param(lambda s: s + "\n", id="trailing-newline"),
    ],
)
def test_non_base64url_signature_is_malformed(
    kit: KitFactory, mangle: Callable[[str], str]
) -> None:
    k = kit("RS256")
    head, payload, sig = valid_token(active_key(k)).split(".")
    assert len(sig) % 4, "needs a signature whose encoding takes padding"
    malformed(k.verifier, f"{head}.{payload}.{mangle(sig)}")


# -- duplicate JSON members ---------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        pytest.param('{"alg":"ALG","alg":"none","kid":"KID","typ":"at+jwt"}', id="alg-then-none"),
        pytest.param('{"alg":"none","alg":"ALG","kid":"KID","typ":"at+jwt"}', id="none-then-alg"),
        pytest.param('{"alg":"ALG","kid":"other","kid":"KID","typ":"at+jwt"}', id="kid"),
        pytest.param('{"alg":"ALG","kid":"KID","typ":"JWT","typ":"at+jwt"}', id="typ"),
    ],
)
def test_duplicate_header_member_is_refused(kit: KitFactory, template: str) -> None:
    k = kit("RS256")
    key = active_key(k)
    header = template.replace("ALG", key.alg).replace("KID", key.kid)
    invalid(k.verifier, forge(header, claims(), key.sign_key, key.alg))


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        pytest.param("sub", '"admin"', id="sub"),
        pytest.param("role", '"admin"', id="role"),
        pytest.param("exp", str(NOW + 900), id="exp"),
        pytest.param("aud", '"other.example.test"', id="aud"),
        pytest.param("iss", '"https://evil.example.test"', id="iss"),
    ],
)
def test_duplicate_payload_member_is_refused(kit: KitFactory, name: str, raw: str) -> None:
    k = kit("RS256")
    key = active_key(k)
    first = claims(**{name: NOW - 3600} if name == "exp" else {})
    payload = with_raw_member(first, name, raw)
    assert payload.count(f'"{name}":') == 2
    invalid(k.verifier, forge(header_for(key), payload, key.sign_key, key.alg))


# -- NumericDate claims -------------------------------------------------------------


_DATE_CASES: Final = [
    pytest.param(f'"{NOW}"', TokenInvalid, id="string"),
    pytest.param("true", TokenInvalid, id="bool-true"),
    pytest.param("false", TokenInvalid, id="bool-false"),
    pytest.param("null", TokenInvalid, id="null"),
    pytest.param("-1", TokenInvalid, id="negative"),
    pytest.param("-1.5", TokenInvalid, id="negative-float"),
    pytest.param("[1800000000]", TokenInvalid, id="list"),
    # Not JSON numbers, or numbers the strict JSON reader refuses outright:
    pytest.param("NaN", TokenMalformed, id="NaN"),
    pytest.param("Infinity", TokenMalformed, id="Infinity"),
    pytest.param("-Infinity", TokenMalformed, id="minus-Infinity"),
    pytest.param("1e400", TokenMalformed, id="1e400"),
    pytest.param("9" * 5000, TokenMalformed, id="5000-digit-integer"),
    # Below CPython's own 4300-digit int() limit: only the verifier's guard stops it.
    pytest.param("9" * 4000, TokenMalformed, id="4000-digit-integer"),
]


@pytest.mark.parametrize(("raw", "expected"), _DATE_CASES)
@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_bad_numeric_date_is_refused(
    kit: KitFactory, name: str, raw: str, expected: type[AuthError]
) -> None:
    # A large limit, so the long integers reach the JSON reader, not the size limit.
    k = kit("RS256", max_token_bytes=BIG_LIMIT)
    key = active_key(k)
    payload = with_raw_member(claims(**{name: _DROP}), name, raw)
    token = forge(header_for(key), payload, key.sign_key, key.alg)
    assert len(token) <= BIG_LIMIT
    code = "token_malformed" if expected is TokenMalformed else "token_invalid"
    rejects(k.verifier, token, expected, code)


@pytest.mark.parametrize("name", ["exp", "iat"])
def test_missing_time_claim_is_refused(kit: KitFactory, name: str) -> None:
    k = kit("RS256")
    invalid(k.verifier, valid_token(active_key(k), **{name: _DROP}))


@pytest.mark.parametrize(
    "offset",
    [pytest.param(LEEWAY + 1, id="just-beyond-leeway"), pytest.param(86400, id="a-day-ahead")],
)
@pytest.mark.parametrize("name", ["nbf", "iat"])
def test_future_nbf_or_iat_is_refused(kit: KitFactory, name: str, offset: int) -> None:
    k = kit("RS256")
    invalid(k.verifier, valid_token(active_key(k), **{name: NOW + offset}))


@pytest.mark.parametrize(
    "iat_us",
    [
        pytest.param((NOW - 60) * 1_000_000, id="a-minute-before-iat"),
        pytest.param((NOW + 1) * 1_000_000, id="the-next-second"),
        pytest.param(float(NOW * 1_000_000), id="a-float"),
        pytest.param(str(NOW * 1_000_000), id="a-string"),
        pytest.param(True, id="a-bool"),
    ],
)
def test_iat_us_disagreeing_with_iat_is_refused(kit: KitFactory, iat_us: object) -> None:
    """``iat_us`` orders user revocations: a token whose ``iat_us`` claims an earlier
    (or any other) instant than its ``iat`` must not slip under a not-before."""
    k = kit("RS256")
    invalid(k.verifier, valid_token(active_key(k), iat=NOW, iat_us=iat_us))
    accepted = k.verifier.verify(valid_token(active_key(k), iat=NOW, iat_us=NOW * 1_000_000 + 7))
    assert accepted.issued_us == NOW * 1_000_000 + 7


# -- issuer and audience ------------------------------------------------------------


@pytest.mark.parametrize(
    "iss",
    [
        pytest.param("https://evil.example.test", id="other-issuer"),
        pytest.param(ISSUER[:-5], id="proper-prefix"),
        pytest.param(ISSUER + "/", id="trailing-slash"),
        pytest.param(ISSUER.upper(), id="upper-case"),
        pytest.param(ISSUER + "\u0000", id="nul-suffix"),
        pytest.param([ISSUER], id="list"),
        pytest.param(_DROP, id="missing"),
    ],
)
def test_wrong_issuer_is_refused(kit: KitFactory, iss: object) -> None:
    assert ISSUER.startswith(ISSUER[:-5])
    assert ISSUER[:-5] != ISSUER
    k = kit("RS256")
    invalid(k.verifier, valid_token(active_key(k), iss=iss))


@pytest.mark.parametrize(
    "aud",
    [
        pytest.param("api.evil.test", id="other-string"),
        pytest.param(AUDIENCE[:-5], id="string-prefix"),
        pytest.param(["api.evil.test", "other.example.test"], id="list-without-it"),
        pytest.param([], id="empty-list"),
        pytest.param([AUDIENCE, 7], id="list-with-non-string"),
        pytest.param({"aud": AUDIENCE}, id="object"),
        pytest.param(_DROP, id="missing"),
    ],
)
def test_wrong_audience_is_refused(kit: KitFactory, aud: object) -> None:
    k = kit("RS256")
    invalid(k.verifier, valid_token(active_key(k), aud=aud))


# -- oversized and deeply nested tokens ---------------------------------------------


def test_8kb_token_is_malformed_before_any_decoding(
    kit: KitFactory, no_decoding: Callable[[], None]
) -> None:
    key = active_key(kit("RS256"))
    token = valid_token(key, pad="A" * 6 * 1024)
    assert 8 * 1024 <= len(token) <= BIG_LIMIT
    # Control: the token is otherwise valid; only its size is wrong.
    assert kit("RS256", max_token_bytes=BIG_LIMIT).verifier.verify(token).sub == "user-1"
    verifier = kit("RS256").verifier
    no_decoding()
    malformed(verifier, token)


def test_1mb_token_is_malformed_before_any_decoding(
    kit: KitFactory, no_decoding: Callable[[], None]
) -> None:
    key = active_key(kit("EdDSA"))
    token = valid_token(key, pad="A" * 768 * 1024)
    assert len(token) >= 1024 * 1024
    verifier = kit("EdDSA", max_token_bytes=BIG_LIMIT).verifier
    no_decoding()
    malformed(verifier, token)


def test_100k_nested_arrays_beyond_the_limit_are_malformed_before_decoding(
    kit: KitFactory, no_decoding: Callable[[], None]
) -> None:
    k = kit("EdDSA", max_token_bytes=BIG_LIMIT)
    key = active_key(k)
    depth = 100_000
    payload = with_raw_member(claims(), "x", "[" * depth + "]" * depth)
    token = forge(header_for(key), payload, key.sign_key, key.alg)
    assert len(token) > BIG_LIMIT
    no_decoding()
    malformed(k.verifier, token)


@pytest.mark.parametrize(
    ("where", "nesting"),
    [
        pytest.param("payload", "[" * 24_000 + "]" * 24_000, id="payload-balanced"),
        pytest.param("payload", "[" * 48_000, id="payload-unclosed"),
        pytest.param("payload", '{"a":' * 7_000 + "1" + "}" * 7_000, id="payload-objects"),
        pytest.param("header", "[" * 24_000 + "]" * 24_000, id="header-balanced"),
    ],
)
def test_deeply_nested_json_within_the_limit_is_malformed(
    kit: KitFactory, where: str, nesting: str
) -> None:
    k = kit("EdDSA", max_token_bytes=BIG_LIMIT)
    key = active_key(k)
    header: Json | str = header_for(key)
    payload: Json | str = claims()
    if where == "header":
        header = with_raw_member(header_for(key), "x", nesting)
    else:
        payload = with_raw_member(claims(), "x", nesting)
    token = forge(header, payload, key.sign_key, key.alg)
    assert len(token) <= BIG_LIMIT
    malformed(k.verifier, token)


# -- other serializations and token kinds -------------------------------------------


def test_five_segment_jwe_is_malformed(kit: KitFactory) -> None:
    k = kit("RS256")
    key = active_key(k)
    protected = b64(to_json({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": key.kid}).encode())
    parts = [b64(secrets.token_bytes(n)) for n in (256, 12, 64, 16)]
    jwe = ".".join([protected, *parts])
    assert jwe.count(".") == 4
    malformed(k.verifier, jwe)


def test_valid_jws_with_two_extra_segments_is_malformed(kit: KitFactory) -> None:
    k = kit("RS256")
    token = valid_token(active_key(k))
    malformed(k.verifier, f"{token}.{b64(b'iv')}.{b64(b'tag')}")


@pytest.mark.parametrize("shape", ["general", "flattened"])
def test_json_serialization_jws_is_malformed(kit: KitFactory, shape: str) -> None:
    k = kit("RS256")
    head, payload, sig = valid_token(active_key(k)).split(".")
    body: dict[str, object]
    if shape == "general":
        body = {"payload": payload, "signatures": [{"protected": head, "signature": sig}]}
    else:
        body = {"payload": payload, "protected": head, "signature": sig}
    malformed(k.verifier, json.dumps(body))


@pytest.mark.parametrize("alg", ["HS256", "EdDSA"])
@pytest.mark.parametrize("gen", [0, 7])
def test_refresh_token_presented_as_access_token_is_refused(
    kit: KitFactory, gen: int, alg: str
) -> None:
    k = kit(alg)
    token = encode_refresh_token(k.keyring.refresh_secret, new_session_id("u1"), gen)
    invalid(k.verifier, token)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_token_from_another_keyring_is_refused(
    kit: KitFactory, make_kit: KitFactory, alg: str
) -> None:
    ours, theirs = kit(alg), make_kit(alg)
    assert active_key(ours).kid != active_key(theirs).kid
    unknown_kid(ours.verifier, theirs.token())


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_token_from_another_keyring_wearing_our_kid_is_refused(
    kit: KitFactory, make_kit: KitFactory, alg: str
) -> None:
    ours, theirs = kit(alg), make_kit(alg)
    their_key = active_key(theirs)
    header = header_for(active_key(ours))
    invalid(ours.verifier, forge(header, claims(), their_key.sign_key, alg))


@pytest.mark.parametrize(
    "typ",
    [
        pytest.param("JWT", id="JWT"),
        pytest.param("jwt", id="lower-jwt"),
        pytest.param("application/jwt", id="application-jwt"),
        pytest.param(None, id="null"),
        pytest.param(["at+jwt"], id="list"),
        pytest.param(_DROP, id="missing"),
    ],
)
def test_wrong_or_missing_typ_is_refused(kit: KitFactory, typ: object) -> None:
    k = kit("RS256")
    key = active_key(k)
    invalid(k.verifier, forge(header_for(key, typ=typ), claims(), key.sign_key, key.alg))


@pytest.mark.parametrize(
    "sub",
    [
        pytest.param(12345, id="integer"),
        pytest.param(None, id="null"),
        pytest.param(True, id="bool"),
        pytest.param(["user-1"], id="list"),
        pytest.param({"id": "user-1"}, id="object"),
        pytest.param("", id="empty-string"),
        pytest.param(_DROP, id="missing"),
    ],
)
def test_non_string_sub_is_refused(kit: KitFactory, sub: object) -> None:
    k = kit("RS256")
    invalid(k.verifier, valid_token(active_key(k), sub=sub))


def test_es256_high_s_twin_of_a_valid_signature_is_refused(kit: KitFactory) -> None:
    """(r, n - s) verifies under plain ECDSA; jwtsess accepts only the low-s spelling."""
    k = kit("ES256")
    key = active_key(k)
    token = forge(header_for(key), claims(), key.sign_key, "ES256")  # low s
    head, payload, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    twin = raw[:32] + (P256_ORDER - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    assert k.verifier.verify(token).sub
    invalid(k.verifier, f"{head}.{payload}.{b64(twin)}")
