"""docs/oauth-clients.md: the page's app serves the OAuth endpoints its clients use."""

from __future__ import annotations

from pathlib import Path

import pytest

from jwtsess import Issuer
from tests.support.docs import run_page


def test_oauth_clients_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_page("oauth-clients", tmp_path)
    metadata = namespace["metadata"]
    assert isinstance(metadata, dict)
    # The page discovered every endpoint it then used, under the issuer it configured.
    assert {
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "jwks_uri",
    } <= metadata.keys()
    saved = namespace["saved"]
    assert isinstance(saved, list)
    assert len(saved) == 1  # Authlib's update_token ran once, for the one refresh
    issuer = namespace["issuer"]
    assert isinstance(issuer, Issuer)
    assert metadata["issuer"] == issuer.settings.issuer
