"""Property-based fuzzing of the verifier, refresh tokens, the middleware and the routes.

The targets live in tests/fuzz_targets/ (scripts/fuzz.py runs the same ones
for a million inputs, ``make fuzz``). Here hypothesis drives them with a
bounded budget so the file stays well under 30 s inside ``make test``;
``JWTSESS_FUZZ_EXAMPLES=<n>`` gives every property ``n`` examples instead::

    JWTSESS_FUZZ_EXAMPLES=20000 .venv/bin/pytest tests/test_fuzz.py

Failing examples are kept in hypothesis' database (.hypothesis/, which
hypothesis git-ignores itself) and replayed first on the next run. Keyrings
are built once per module (RSA key generation is the slow part); every HTTP
example gets a fresh app and MemoryStore, so examples do not depend on each
other and hypothesis can shrink them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz_targets import (
    HttpEnv,
    HttpKeys,
    HypothesisChooser,
    VerifierEnv,
    build_http_env,
    build_key_directory,
    build_verifier_env,
    http_example,
    load_http_keys,
    refresh_garbage_example,
    refresh_mutation_example,
    verifier_forgery_example,
    verifier_garbage_example,
    verifier_mutation_example,
    verifier_signed_claims_example,
)

EXAMPLES_ENV = "JWTSESS_FUZZ_EXAMPLES"

settings.register_profile(
    "jwtsess-fuzz",
    deadline=None,  # timing varies (RSA, first calls); a deadline would only make CI flaky
    # No "explain" phase: on the HTTP property it reruns thousands of variations of a
    # failure (30-60 s); shrinking alone takes seconds, and our messages show the input.
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
FUZZ_SETTINGS = settings.get_profile("jwtsess-fuzz")

F = TypeVar("F", bound=Callable[..., None])


def examples(ci: int) -> int:
    """``ci`` examples in ``make test``; ``$JWTSESS_FUZZ_EXAMPLES`` for a long campaign."""
    raw = os.environ.get(EXAMPLES_ENV, "").strip()
    return int(raw) if raw else ci


def fuzz(ci_examples: int) -> Callable[[F], F]:
    """The fuzz profile with this property's example budget."""
    return settings(FUZZ_SETTINGS, max_examples=examples(ci_examples))


@pytest.fixture(scope="module")
def key_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-keys")
    build_key_directory(root / "ring")
    build_key_directory(root / "http", ("HS256",))
    return root


@pytest.fixture(scope="module")
def verifier_env(key_root: Path) -> VerifierEnv:
    return build_verifier_env(key_root / "ring")


@pytest.fixture(scope="module")
def http_keys(key_root: Path, verifier_env: VerifierEnv) -> HttpKeys:
    # The verifier's genuine tokens are foreign to the HTTP app: another ring signed them.
    return load_http_keys(key_root / "http", verifier_env.tokens)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


# -- the verifier ------------------------------------------------------------------------------


@fuzz(400)
@given(data=st.data())
def test_verifier_refuses_garbage_with_documented_errors(
    verifier_env: VerifierEnv, data: st.DataObject
) -> None:
    verifier_garbage_example(verifier_env, HypothesisChooser(data))


@fuzz(1000)
@given(data=st.data())
def test_mutated_tokens_verify_only_if_byte_identical_to_an_issued_one(
    verifier_env: VerifierEnv, data: st.DataObject
) -> None:
    verifier_mutation_example(verifier_env, HypothesisChooser(data))


@fuzz(300)
@given(data=st.data())
def test_tokens_signed_by_any_other_key_never_verify(
    verifier_env: VerifierEnv, data: st.DataObject
) -> None:
    verifier_forgery_example(verifier_env, HypothesisChooser(data))


@fuzz(300)
@given(data=st.data())
def test_random_claims_signed_by_our_keys_are_checked_without_crashing(
    verifier_env: VerifierEnv, data: st.DataObject
) -> None:
    verifier_signed_claims_example(verifier_env, HypothesisChooser(data))


# -- refresh tokens ----------------------------------------------------------------------------


@fuzz(400)
@given(data=st.data())
def test_refresh_decoding_refuses_garbage_with_documented_errors(
    verifier_env: VerifierEnv, data: st.DataObject
) -> None:
    refresh_garbage_example(verifier_env, HypothesisChooser(data))


@fuzz(600)
@given(data=st.data())
def test_mutated_refresh_tokens_never_decode_to_another_session(
    verifier_env: VerifierEnv, data: st.DataObject
) -> None:
    refresh_mutation_example(verifier_env, HypothesisChooser(data))


# -- the middleware and the routes -------------------------------------------------------------


async def _fresh_http_example(keys: HttpKeys, data: st.DataObject) -> None:
    env: HttpEnv = await build_http_env(keys)
    await http_example(env, HypothesisChooser(data))


@fuzz(800)
@given(data=st.data())
def test_http_answers_are_never_500_and_authenticate_only_genuine_tokens(
    http_keys: HttpKeys, runner: asyncio.Runner, data: st.DataObject
) -> None:
    runner.run(_fresh_http_example(http_keys, data))
