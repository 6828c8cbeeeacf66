"""HTTP: the real ASGI app of tests/support/web_app.py, driven directly."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from starlette.types import Message, Scope

from jwtsess import (
    AccessClaims,
    AccessTokenSigner,
    KeyRing,
    SessionPolicy,
    TokenSettings,
    Verifier,
)
from jwtsess.store.memory import MemoryStore
from jwtsess.verifier import RevocationCheck
from jwtsess.web import WebConfig
from tests.support.kit import AUDIENCE, ISSUER, MutableClock, TokenKit
from tests.support.web_app import WebApp, start_web

from .core import NOW
from .verifier import load_ring

# -- HTTP: the real ASGI app, driven directly ---------------------------------------------------


class AcceptRecorder:
    """The verifier's revocation check, recording every claims it lets through."""

    def __init__(self, inner: RevocationCheck) -> None:
        self.inner = inner
        self.accepted: list[AccessClaims] = []

    def check(self, claims: AccessClaims) -> None:
        self.inner.check(claims)
        self.accepted.append(claims)


class RecordingSigner(AccessTokenSigner):
    """The issuer's signer, remembering every access token it issued (by jti)."""

    def __init__(
        self,
        keyring: KeyRing,
        settings: TokenSettings,
        *,
        clock: MutableClock,
        issued: dict[str, AccessClaims],
        sids: dict[str, int],
    ) -> None:
        super().__init__(keyring, settings, clock=clock)
        self.issued = issued
        self.sids = sids  # sid -> how many tokens had been issued when it first appeared

    def issue(
        self,
        sub: str,
        role: str,
        sid: str,
        *,
        extra_claims: Mapping[str, Any] | None = None,
        not_before_us: int = 0,
        jkt: str | None = None,
    ) -> tuple[str, AccessClaims]:
        token, claims = super().issue(
            sub, role, sid, extra_claims=extra_claims, not_before_us=not_before_us, jkt=jkt
        )
        self.issued[claims.jti] = claims
        self.sids.setdefault(sid, len(self.issued))
        return token, claims


HTTP_CONFIG: Final = WebConfig()
HTTP_POLICY: Final = SessionPolicy(refresh_limit=200)


class HttpKeys:
    """What every HTTP env shares: a loaded ring, and genuine tokens of another ring."""

    def __init__(self, directory: Path, foreign: Sequence[str]) -> None:
        self.directory = directory
        self.keyring, _ = load_ring(directory)
        self.foreign = foreign

    def __repr__(self) -> str:
        return f"<HttpKeys {self.directory.name}>"


class HttpEnv:
    """One app under fuzz, with its signer and its verifier's acceptances wiretapped."""

    def __init__(
        self,
        web: WebApp,
        recorder: AcceptRecorder,
        issued: dict[str, AccessClaims],
        sids: dict[str, int],
        foreign: Sequence[str],
    ) -> None:
        self.web = web
        self.recorder = recorder
        self.issued = issued  # jti -> claims of every access token the app signed
        self.sids = sids  # every session id the app signed a token for -> when first seen
        self.foreign = foreign
        self.examples = 0

    def __repr__(self) -> str:
        return f"<HttpEnv examples={self.examples} tokens={len(self.issued)}>"


def load_http_keys(directory: Path, foreign: Sequence[str]) -> HttpKeys:
    return HttpKeys(directory, foreign)


async def build_http_env(keys: HttpKeys, config: WebConfig = HTTP_CONFIG) -> HttpEnv:
    """A fresh app (MemoryStore, clock at ``NOW``) with its signer and verifier wiretapped."""
    clock = MutableClock(NOW)
    settings = TokenSettings(issuer=ISSUER, audience=AUDIENCE)
    kit = TokenKit(
        directory=keys.directory,
        clock=clock,
        keyring=keys.keyring,
        settings=settings,
        signer=AccessTokenSigner(keys.keyring, settings, clock=clock),
        verifier=Verifier(keys.keyring, settings, clock=clock),
    )
    web = await start_web(kit, MemoryStore(), config=config, policy=HTTP_POLICY)
    issued: dict[str, AccessClaims] = {}
    sids: dict[str, int] = {}
    web.issuer._signer = RecordingSigner(  # wiretap the private signer
        keys.keyring, settings, clock=clock, issued=issued, sids=sids
    )
    recorder = AcceptRecorder(web.mirror)
    web.verifier.revocation = recorder
    return HttpEnv(web, recorder, issued, sids, keys.foreign)


ASGI_TIMEOUT: Final = 10.0  # seconds; a request taking longer is reported as a hang


@dataclass
class HttpResult:
    status: int | None
    headers: list[tuple[bytes, bytes]]
    body: bytes
    messages: list[Message]
    error: BaseException | None

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def header_list(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name]


async def call_asgi(app: Any, scope: Scope, incoming: list[Message]) -> HttpResult:
    """One ASGI call; ``incoming`` is what the client sends, then it disconnects."""
    sent: list[Message] = []
    pending = list(incoming)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        disconnect = "http.disconnect" if scope["type"] == "http" else "websocket.disconnect"
        return {"type": disconnect, "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    error: BaseException | None = None
    try:
        await asyncio.wait_for(app(scope, receive, send), timeout=ASGI_TIMEOUT)
    except Exception as exc:
        error = exc
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = []
    body = b""
    for message in sent:
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")
    return HttpResult(status=status, headers=headers, body=body, messages=sent, error=error)


# The request model. Tokens are named by where they come from and resolved per example.
