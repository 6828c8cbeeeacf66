"""The README's examples run as written, so they stay true as the API grows."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from jwtsess import init_keys

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language: str) -> list[str]:
    pattern = rf"```{language}\n(.*?)```"
    return re.findall(pattern, README.read_text(encoding="utf-8"), re.S)


def _run(block: str) -> dict[str, object]:
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    return namespace


async def test_mounting_example_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    init_keys("keys", "RS256")
    namespace = _run(_blocks("python")[0])
    app, issuer, mirror = namespace["app"], namespace["issuer"], namespace["mirror"]
    await mirror.start()  # type: ignore[attr-defined]
    try:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            anonymous = await client.get("/admin")
            assert anonymous.status_code == 401
            assert anonymous.json()["error"] == "token_missing"
            login = await client.post("/auth/login")
            token = login.json()["access_token"]
            admin = await client.get("/admin", headers={"Authorization": f"Bearer {token}"})
            assert admin.status_code == 200
            assert admin.json()["hello"] == "user-42"
            assert "admin" in admin.json()["scopes"]
            jwks = await client.get("/.well-known/jwks.json")
            assert jwks.json()["keys"][0]["kid"] == issuer.keyring.signing_key().kid  # type: ignore[attr-defined]
    finally:
        await mirror.stop()  # type: ignore[attr-defined]


async def test_library_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    init_keys("keys", "RS256")
    demo = _run(_blocks("python")[1])["demo"]
    assert callable(demo)
    await demo()
