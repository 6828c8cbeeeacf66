"""Fuzz targets shared by tests/test_fuzz.py (hypothesis, bounded) and scripts/fuzz.py (long).

Each target is one function ``example(env, chooser) -> outcome``: it draws its
input through a ``Chooser`` and checks the properties, raising
``PropertyFailure`` when one breaks. The same function runs under hypothesis
(``HypothesisChooser`` over ``st.data()``: shrinking, a replayable database)
and in a plain seeded loop (``RandomChooser``: fast enough for a million
inputs), so both explore the same input space.

The properties (docs/errors.md, docs/http.md):

* verifier: any input either verifies or raises an ``AuthError`` of a
  documented class and code (never another exception), whose ``detail`` can
  be sent as an HTTP answer; a string that verifies is byte-identical to a
  token we issued and yields exactly its claims; the caching and the
  non-caching verifier agree. Tokens signed by any other key (random
  headers and claims, public keys used as HMAC secrets, transplanted
  signatures, ``none``) never verify.
* refresh tokens: ``decode_refresh_token`` raises only ``TokenMalformed`` /
  ``TokenInvalid``, and decodes only a refresh token we issued, to its own
  ``(sid, gen)``.
* HTTP, through the real ASGI app of tests/support/web_app.py on a MemoryStore
  (driven directly, no httpx): never an exception out of the app, never a 500,
  never a traceback; every jwtsess error is ``{"error", "detail"}`` with a
  documented code and status (and a challenge on 401); a protected route
  answers 2xx only after the verifier accepted a token, and every token the
  verifier accepts carries exactly the claims of a token the issuer signed.

Modules, in dependency order: ``core`` (failures, choosers), ``values`` (JSON
values, interesting constants), ``mutations`` (edits of a compact JWS),
``verifier`` and ``refresh`` (their targets), ``http_app`` (the app, driven
by ASGI calls), ``http_requests`` (random requests), ``http_checks`` (the
HTTP properties and target).
"""

from .core import Chooser as Chooser
from .core import HypothesisChooser as HypothesisChooser
from .core import PropertyFailure as PropertyFailure
from .core import RandomChooser as RandomChooser
from .core import exception_summary as exception_summary
from .core import make_rng as make_rng
from .core import origin as origin
from .http_app import HttpEnv as HttpEnv
from .http_app import HttpKeys as HttpKeys
from .http_app import build_http_env as build_http_env
from .http_app import load_http_keys as load_http_keys
from .http_checks import http_example as http_example
from .refresh import refresh_garbage_example as refresh_garbage_example
from .refresh import refresh_mutation_example as refresh_mutation_example
from .verifier import VerifierEnv as VerifierEnv
from .verifier import build_key_directory as build_key_directory
from .verifier import build_verifier_env as build_verifier_env
from .verifier import verifier_forgery_example as verifier_forgery_example
from .verifier import verifier_garbage_example as verifier_garbage_example
from .verifier import verifier_mutation_example as verifier_mutation_example
from .verifier import verifier_signed_claims_example as verifier_signed_claims_example

__all__ = [
    "Chooser",
    "HttpEnv",
    "HttpKeys",
    "HypothesisChooser",
    "PropertyFailure",
    "RandomChooser",
    "VerifierEnv",
    "build_http_env",
    "build_key_directory",
    "build_verifier_env",
    "exception_summary",
    "http_example",
    "load_http_keys",
    "make_rng",
    "origin",
    "refresh_garbage_example",
    "refresh_mutation_example",
    "verifier_forgery_example",
    "verifier_garbage_example",
    "verifier_mutation_example",
    "verifier_signed_claims_example",
]
