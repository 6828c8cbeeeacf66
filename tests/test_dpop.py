"""jwtsess.dpop and jwtsess.dpop_jwk: htu normalisation, replay cache, nonces, keys, settings."""

from __future__ import annotations

import pytest
from starlette.types import Scope

from jwtsess.dpop import DPoPSettings, DPoPVerifier
from jwtsess.dpop_checks import ReplayCache, normalize_htu, token_hash
from jwtsess.dpop_jwk import DPoPKey
from jwtsess.errors import DPoPNonceRequired, DPoPProofInvalid
from jwtsess.store.memory import MemoryStore
from tests.support.dpop import ath, thumbprint
from tests.support.kit import T0, MutableClock


@pytest.mark.parametrize(
    ("uri", "normal"),
    [
        ("https://api.example.com/a/b", "https://api.example.com/a/b"),
        ("HTTPS://API.Example.COM:443/a", "https://api.example.com/a"),
        ("http://h:80", "http://h/"),
        ("http://h:8080/x?q=1#frag", "http://h:8080/x"),
        ("wss://h/ws", "https://h/ws"),
        ("ws://h:80/ws", "http://h/ws"),
        ("https://h/%7euser/%2f", "https://h/~user/%2F"),
        ("https://[::1]:8443/p", "https://[::1]:8443/p"),
    ],
)
def test_normalize_htu(uri: str, normal: str) -> None:
    assert normalize_htu(uri) == normal


@pytest.mark.parametrize(
    "uri", ["/relative", "ftp://h/x", "https:///nohost", "https://user:pw@h/x", "https://h:99999/"]
)
def test_normalize_htu_refuses(uri: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError is the contract
        normalize_htu(uri)


def scope_for(path: str, *, host: str = "testserver", scheme: str = "https") -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "scheme": scheme,
        "root_path": "",
        "path": path,
        "headers": [(b"host", host.encode())],
    }


def test_request_htu_uses_the_host_header_or_the_external_origin() -> None:
    assert DPoPVerifier().request_htu(scope_for("/me")) == "https://testserver/me"
    behind_proxy = DPoPVerifier(DPoPSettings(external_origin="https://API.example.com:443"))
    assert behind_proxy.request_htu(scope_for("/me", host="10.0.0.5:8000", scheme="http")) == (
        "https://api.example.com/me"
    )


@pytest.mark.parametrize(
    "origin", ["ftp://x", "https://x/path", "https://x?q", "api.example.com", "https://"]
)
def test_external_origin_must_be_an_origin(origin: str) -> None:
    with pytest.raises(ValueError, match="external_origin"):
        DPoPSettings(external_origin=origin)


def test_settings_refuse_symmetric_algorithms_and_short_nonce_secrets() -> None:
    with pytest.raises(ValueError, match="algorithms"):
        DPoPSettings(algorithms=("HS256",))
    with pytest.raises(ValueError, match="nonce_secret"):
        DPoPSettings(nonce_secret=b"short")


def test_replay_cache_refuses_what_it_could_no_longer_tell_apart() -> None:
    cache = ReplayCache(size=2, window=70)
    assert cache.add("a", T0, T0)
    assert not cache.add("a", T0, T0 + 1)
    assert cache.add("b", T0 + 1, T0 + 1)
    assert cache.add("c", T0 + 2, T0 + 2)  # evicts "a"; proofs issued at or before T0 now refused
    assert len(cache) == 2
    assert not cache.add("a", T0, T0 + 3)  # the evicted proof cannot come back
    assert cache.add("d", T0 + 3, T0 + 3)


def test_replay_cache_forgets_entries_past_the_window() -> None:
    cache = ReplayCache(size=10, window=70)
    assert cache.add("a", T0, T0)
    assert cache.add("b", T0 + 100, T0 + 100)
    assert len(cache) == 1


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_client_key_proofs_verify_and_carry_the_rfc_7638_thumbprint(alg: str) -> None:
    clock = MutableClock()
    key = DPoPKey.generate(alg, clock=clock)
    assert key.jkt == thumbprint(key.public_jwk)  # the test's own RFC 7638 code agrees
    verifier = DPoPVerifier(clock=clock)
    proof = key.proof("POST", "https://h/auth/token?x=1", access_token="tok")
    checked = verifier.verify(proof, method="POST", htu="https://h/auth/token", access_token="tok")
    assert checked.jkt == key.jkt
    assert token_hash("tok") == ath("tok")


def test_nonce_rotates_and_the_previous_one_is_still_accepted() -> None:
    clock = MutableClock()
    verifier = DPoPVerifier(DPoPSettings(nonce_secret=b"s" * 32, nonce_interval=60), clock=clock)
    key = DPoPKey.generate(clock=clock)
    first = verifier.current_nonce()
    assert first is not None
    clock.advance(60)
    assert verifier.current_nonce() != first
    proof = key.proof("GET", "https://h/x", nonce=first)
    verifier.verify(proof, method="GET", htu="https://h/x")
    clock.advance(60)
    with pytest.raises(DPoPNonceRequired) as raised:
        verifier.verify(
            key.proof("GET", "https://h/x", nonce=first), method="GET", htu="https://h/x"
        )
    assert raised.value.nonce == verifier.current_nonce()


async def test_token_endpoint_proofs_are_used_once_across_the_store() -> None:
    clock = MutableClock()
    store = MemoryStore()
    key = DPoPKey.generate(clock=clock)
    scope = {**scope_for("/auth/refresh"), "method": "POST"}
    proof = key.proof("POST", "https://testserver/auth/refresh")
    # Two processes (two verifiers) sharing one store: the second use is refused.
    first = await DPoPVerifier(clock=clock).verify_token_request(proof, scope, store)
    assert first.jkt == key.jkt
    with pytest.raises(DPoPProofInvalid, match="already used"):
        await DPoPVerifier(clock=clock).verify_token_request(proof, scope, store)


async def test_token_endpoint_proof_must_match_the_sessions_key() -> None:
    clock = MutableClock()
    key, other = DPoPKey.generate(clock=clock), DPoPKey.generate(clock=clock)
    scope = {**scope_for("/auth/refresh"), "method": "POST"}
    proof = other.proof("POST", "https://testserver/auth/refresh")
    with pytest.raises(DPoPProofInvalid, match="not bound"):
        await DPoPVerifier(clock=clock).verify_token_request(
            proof, scope, MemoryStore(), jkt=key.jkt
        )


def test_request_htu_counts_the_root_path_once() -> None:
    verifier = DPoPVerifier()
    mounted = {**scope_for("/auth/refresh"), "root_path": "/auth"}  # Starlette's Mount
    assert verifier.request_htu(mounted) == "https://testserver/auth/refresh"
    stripped = {**scope_for("/refresh"), "root_path": "/auth"}  # a server that strips it
    assert verifier.request_htu(stripped) == "https://testserver/auth/refresh"
