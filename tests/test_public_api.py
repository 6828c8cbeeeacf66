"""The public surface is exactly ``jwtsess.__all__``, and every name in it is documented."""

from __future__ import annotations

import inspect

import jwtsess


def test_all_matches_exports() -> None:
    exported = {
        name
        for name, value in vars(jwtsess).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert exported == set(jwtsess.__all__)


def test_every_public_name_has_a_docstring() -> None:
    for name in jwtsess.__all__:
        obj = getattr(jwtsess, name)
        if name in ("Clock", "ClaimsLoader"):  # type aliases, documented in their modules
            continue
        assert inspect.getdoc(obj), name


def test_every_error_code_is_documented() -> None:
    with open("docs/errors.md", encoding="utf-8") as handle:
        doc = handle.read()
    for name in jwtsess.__all__:
        obj = getattr(jwtsess, name)
        if inspect.isclass(obj) and issubclass(obj, jwtsess.JWTSessError):
            if obj in (jwtsess.JWTSessError, jwtsess.AuthError, jwtsess.TokenRejected):
                assert name in doc, name  # parents: documented, never raised themselves
                continue
            assert f"`{obj.code}`" in doc, obj
            assert f"`{name}`" in doc, name


def test_token_rejected_is_the_parent_of_the_verifiers_errors() -> None:
    """One family the middleware, the error answers and the refresh route treat alike."""
    rejected = {
        cls
        for name in jwtsess.__all__
        if inspect.isclass(cls := getattr(jwtsess, name)) and issubclass(cls, jwtsess.TokenRejected)
    }
    assert {cls.code for cls in rejected - {jwtsess.TokenRejected}} == {
        "token_malformed",
        "token_expired",
        "token_invalid",
        "token_revoked",
        "dpop_required",  # a DPoP-bound token presented as Bearer or in the cookie
    }
    for cls in (jwtsess.TokenMissing, jwtsess.SessionNotFound, jwtsess.RefreshReused):
        assert not issubclass(cls, jwtsess.TokenRejected), cls
