"""A second OS process for tests/test_propagation.py: a verifier following the revocation feed.

Run as ``python -m tests.support.propagation_peer --keys DIR --redis URL --issuer ISS
--audience AUD`` (cwd: the repository root). It builds a KeyRing, a RedisStore,
a RevocationMirror with a listener and a Verifier on that mirror, all on the
real system clock, then reads commands from stdin, one a line:

``token <user> <access_token>``
    watch this token: verify it now and print ``ok <user>`` (or
    ``error <user> <code>`` if it does not verify).
``quit``
    stop the mirror and exit (so does the end of stdin).

It prints ``ready`` once the mirror has loaded the live window and follows the
feed. Whenever the mirror applies a revocation that affects a watched token
(by user, session or token id), the listener verifies that token at once and
prints ``revoked <user> <time.monotonic()>`` if the verifier refuses it with
TokenRevoked (``error <user> <code>`` otherwise). CLOCK_MONOTONIC is
system-wide on Linux, so the parent compares that instant with its own.
Every line is flushed as it is written.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass

from jwtsess import AccessClaims, AuthError, KeyRing, TokenRevoked, TokenSettings, Verifier
from jwtsess.mirror import RevocationMirror
from jwtsess.store.base import REVOKE_SESSION, REVOKE_TOKEN, Revocation
from jwtsess.store.redis import RedisStore


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Watched:
    user: str
    token: str
    claims: AccessClaims


class Peer:
    """The watched tokens and the listener that checks them as revocations arrive."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self.watched: dict[str, Watched] = {}  # user -> watched token

    def register(self, user: str, token: str) -> None:
        try:
            claims = self.verifier.verify(token)
        except AuthError as exc:
            emit(f"error {user} {exc.code}")
            return
        self.watched[user] = Watched(user, token, claims)
        emit(f"ok {user}")

    def _affects(self, entry: Revocation, watched: Watched) -> bool:
        if entry.kind == REVOKE_TOKEN:
            return entry.subject == watched.claims.jti
        if entry.kind == REVOKE_SESSION:
            return entry.subject == watched.claims.sid
        return entry.subject == watched.claims.sub

    def listener(self, entries: list[Revocation]) -> None:
        for watched in list(self.watched.values()):
            if not any(self._affects(entry, watched) for entry in entries):
                continue
            try:
                self.verifier.verify(watched.token)
            except TokenRevoked:
                emit(f"revoked {watched.user} {time.monotonic():.9f}")
                del self.watched[watched.user]
            except AuthError as exc:
                emit(f"error {watched.user} {exc.code}")
            else:
                emit(f"error {watched.user} not_revoked")


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(args: argparse.Namespace) -> int:
    keyring = KeyRing(args.keys)
    settings = TokenSettings(issuer=args.issuer, audience=args.audience)
    store = RedisStore.from_url(
        args.redis, socket_timeout=args.socket_timeout, cluster=args.cluster
    )
    mirror = RevocationMirror(store, stale_after=args.stale_after, block=args.block)
    verifier = Verifier(keyring, settings, revocation=mirror)
    peer = Peer(verifier)
    mirror.add_listener(peer.listener)
    try:
        await mirror.start()
        emit("ready")
        reader = await stdin_reader()
        while raw := await reader.readline():
            words = raw.decode("utf-8").split()
            if not words:
                continue
            if words[0] == "quit":
                break
            if words[0] == "token" and len(words) == 3:
                peer.register(words[1], words[2])
            else:
                emit(f"error unknown-command {words[0]}")
    finally:
        await mirror.stop()
        await store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--keys", required=True, help="key directory")
    parser.add_argument("--redis", required=True, help="redis:// URL of the store")
    parser.add_argument("--cluster", action="store_true", help="the URL names a cluster node")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--stale-after", type=float, default=5.0)
    parser.add_argument("--block", type=float, default=1.0)
    parser.add_argument("--socket-timeout", type=float, default=5.0)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
