"""Authlib's own OAuth 2.0 clients against the demo app (examples/app.py) as shipped.

No glue code: the clients are configured from the demo's RFC 8414 metadata
(token and revocation endpoints), given the login answer as their token, and
left to do what they do with any OAuth server: refresh when the access token
has expired (``ensure_active_token``), call ``update_token``, and revoke at
sign-out. Time is frozen with freezegun for both sides (Authlib reads
``time.time()``, the demo its system clock); ``real_asyncio`` keeps event
loops on real monotonic time. ``AsyncOAuth2Client`` talks to the app
in-process (httpx's ASGI transport, lifespan entered by hand);
``OAuth2Client`` talks over a socket to uvicorn serving the same app in a thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory, StepTickTimeFactory
from starlette.applications import Starlette

from examples.app import DemoConfig, create_app
from tests.support.redis_server import free_port

FROZEN_AT = "2027-01-15 08:00:00"
ACCESS_TTL = 900
GRACE = 10  # SessionPolicy's default grace window
LEEWAY = 10  # TokenSettings' default leeway
BOB = {"username": "bob", "password": "bob-demo-password"}

Frozen = FrozenDateTimeFactory | StepTickTimeFactory


def demo(tmp_path: Path, port: int, introspection_secret: str | None = None) -> Starlette:
    return create_app(
        DemoConfig(
            host="127.0.0.1",
            port=port,
            keys_dir=str(tmp_path / "keys"),
            alg="ES256",
            access_ttl=ACCESS_TTL,
            secure_cookies=False,
            redis_url=None,
            introspection_secret=introspection_secret,
        )
    )


@contextlib.asynccontextmanager
async def in_process(
    tmp_path: Path, introspection_secret: str | None = None
) -> AsyncIterator[tuple[Starlette, str]]:
    port = 8000
    app = demo(tmp_path, port, introspection_secret)
    async with app.router.lifespan_context(app):
        yield app, f"http://127.0.0.1:{port}"


class _SignallingServer(uvicorn.Server):
    """uvicorn in a thread that says when its start-up is over (started or failed)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[Any] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()

    def run_and_signal(self) -> None:
        try:
            self.run()
        finally:
            self.ready.set()  # start-up never reached (e.g. the port was taken)


@contextlib.contextmanager
def over_a_socket(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        demo(tmp_path, port), host="127.0.0.1", port=port, loop="asyncio", log_level="warning"
    )
    server = _SignallingServer(config)
    thread = threading.Thread(target=server.run_and_signal, daemon=True)
    thread.start()
    try:
        # An event, not a poll: time is frozen here, and a sleep loop would only guess.
        assert server.ready.wait(timeout=60), "uvicorn did not finish starting"
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _login(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_async_oauth2_client_refreshes_across_expiry_and_revokes_at_sign_out(
    tmp_path: Path,
) -> None:
    with freeze_time(FROZEN_AT, real_asyncio=True) as frozen:
        async with in_process(tmp_path) as (app, base):
            transport = httpx2.ASGITransport(app=app)  # Authlib's clients are httpx2's
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url=base
            ) as plain:
                login = _login(await plain.post("/auth/login", json=BOB))
                meta = (await plain.get("/.well-known/oauth-authorization-server")).json()
                updates: list[dict[str, Any]] = []

                async def update_token(token: dict[str, Any], **_: Any) -> None:
                    updates.append(dict(token))

                async with AsyncOAuth2Client(
                    client_id="demo-cli",
                    token=login,
                    token_endpoint=meta["token_endpoint"],
                    update_token=update_token,
                    transport=transport,
                    base_url=base,
                ) as client:
                    assert (await client.get("/me")).json()["sub"] == "bob"
                    assert updates == []

                    frozen.tick(timedelta(seconds=ACCESS_TTL + LEEWAY + 1))
                    expired = await plain.get("/me", headers=_bearer(login["access_token"]))
                    assert expired.json()["error"] == "token_expired"
                    me = await client.get("/me")  # Authlib refreshes first, by itself
                    assert me.status_code == 200, me.text
                    assert me.json()["sub"] == "bob"
                    assert len(updates) == 1
                    assert updates[0]["refresh_token"] != login["refresh_token"]
                    assert updates[0]["scope"] == "authenticated user"

                    # Sign-out: revoke the refresh token; the session ends everywhere.
                    access = client.token["access_token"]
                    revoked = await client.revoke_token(
                        meta["revocation_endpoint"],
                        token=client.token["refresh_token"],
                        token_type_hint="refresh_token",
                    )
                    assert revoked.status_code == 200
                    after = await plain.get("/me", headers=_bearer(access))
                    assert after.status_code == 401
                    assert after.json()["error"] == "token_revoked"
                    with pytest.raises(OAuthError) as refused:
                        await client.refresh_token(meta["token_endpoint"])
                    assert refused.value.error == "invalid_grant"


async def test_async_oauth2_client_reusing_a_refresh_token_revokes_the_session(
    tmp_path: Path,
) -> None:
    with freeze_time(FROZEN_AT, real_asyncio=True) as frozen:
        async with in_process(tmp_path) as (app, base):
            transport = httpx2.ASGITransport(app=app)  # Authlib's clients are httpx2's
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url=base
            ) as plain:
                login = _login(await plain.post("/auth/login", json=BOB))
                meta = (await plain.get("/.well-known/oauth-authorization-server")).json()
            async with AsyncOAuth2Client(
                client_id="demo-cli",
                token=login,
                token_endpoint=meta["token_endpoint"],
                transport=transport,
                base_url=base,
            ) as client:
                await client.refresh_token(meta["token_endpoint"])
                current = client.token["access_token"]
                assert (await client.get("/me")).status_code == 200
                frozen.tick(timedelta(seconds=GRACE + 1))
                # A thief replays the first refresh token through the standard endpoint.
                async with AsyncOAuth2Client(
                    client_id="thief", transport=transport, base_url=base
                ) as thief:
                    with pytest.raises(OAuthError) as stolen:
                        await thief.refresh_token(
                            meta["token_endpoint"], refresh_token=login["refresh_token"]
                        )
                assert stolen.value.error == "invalid_grant"
                me = await client.get("/me")
                assert me.status_code == 401
                assert me.json()["error"] == "token_revoked"
                assert client.token["access_token"] == current
                with pytest.raises(OAuthError):
                    await client.refresh_token(meta["token_endpoint"])


@pytest.mark.system  # uvicorn in a thread (not tests/support's running_uvicorn: a
# subprocess would not share the frozen clock)
def test_oauth2_client_over_a_socket_refreshes_across_expiry_and_revokes(tmp_path: Path) -> None:
    with freeze_time(FROZEN_AT, real_asyncio=True) as frozen, over_a_socket(tmp_path) as base:
        login = _login(httpx.post(f"{base}/auth/login", json=BOB))
        meta = httpx.get(f"{base}/.well-known/oauth-authorization-server").json()
        assert meta["issuer"] == base  # RFC 8414 §3.3: where the metadata was fetched
        updates: list[dict[str, Any]] = []

        def update_token(token: dict[str, Any], **_: Any) -> None:
            updates.append(dict(token))

        with OAuth2Client(
            client_id="demo-cli",
            token=login,
            token_endpoint=meta["token_endpoint"],
            update_token=update_token,
        ) as client:
            assert client.get(f"{base}/me").json()["sub"] == "bob"
            frozen.tick(timedelta(seconds=ACCESS_TTL + LEEWAY + 1))
            me = client.get(f"{base}/me")
            assert me.status_code == 200, me.text
            assert len(updates) == 1
            access = client.token["access_token"]
            assert access != login["access_token"]
            # Sign-out revoking the access token: it is refused at once.
            revoked = client.revoke_token(
                meta["revocation_endpoint"], token=access, token_type_hint="access_token"
            )
            assert revoked.status_code == 200
            after = httpx.get(f"{base}/me", headers=_bearer(access))
            assert after.json()["error"] == "token_revoked"
            revoked = client.revoke_token(
                meta["revocation_endpoint"], token=client.token["refresh_token"]
            )
            assert revoked.status_code == 200
            with pytest.raises(OAuthError):
                client.refresh_token(meta["token_endpoint"])


async def test_a_resource_server_introspects_with_authlib(tmp_path: Path) -> None:
    """The demo's JWTSESS_INTROSPECTION_SECRET lets ``resource-server`` in by HTTP Basic."""
    secret = "rs-" + "s" * 29
    async with in_process(tmp_path, introspection_secret=secret) as (app, base):
        transport = httpx2.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base) as plain:
            login = _login(await plain.post("/auth/login", json=BOB))
            meta = (await plain.get("/.well-known/oauth-authorization-server")).json()
        assert meta["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic"]
        async with AsyncOAuth2Client(
            client_id="resource-server", client_secret=secret, transport=transport
        ) as service:
            answer = await service.introspect_token(
                meta["introspection_endpoint"], token=login["access_token"]
            )
            assert answer.json()["active"] is True
            assert answer.json()["sub"] == "bob"
        async with AsyncOAuth2Client(
            client_id="resource-server", client_secret="wrong-" + "x" * 20, transport=transport
        ) as impostor:
            refused = await impostor.introspect_token(
                meta["introspection_endpoint"], token=login["access_token"]
            )
            assert refused.status_code == 401
            assert refused.json()["error"] == "invalid_client"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
