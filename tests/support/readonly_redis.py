"""A private redis-server with the read-only ACL user a verify-only service uses.

The user's rules are the ones docs/verify-only.md tells operators to use, read
from there (so the documentation and the tested line cannot drift apart).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from tests.support.redis_server import RedisServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "verify-only.md"
READER = "jwtsess-reader"
PASSWORD = "reader-test-password"  # a private test server's password, not a secret


def reader_acl_rules() -> list[str]:
    """The rules of the documented ``ACL SETUSER`` line, without the user name and password."""
    match = re.search(r"^ACL SETUSER jwtsess-reader (.+)$", DOC.read_text("utf-8"), re.M)
    if match is None:
        raise AssertionError("docs/verify-only.md has no 'ACL SETUSER jwtsess-reader' line")
    return [rule for rule in match.group(1).split() if not rule.startswith(">")]


class ReadOnlyRedis(RedisServer):
    """A RedisServer whose config creates the reader user (so it survives a restart)."""

    def __init__(self, directory: Path, *, persist: bool = True) -> None:
        rules = reader_acl_rules()
        super().__init__(
            directory, persist=persist, extra_args=("--user", READER, *rules, f">{PASSWORD}")
        )

    @property
    def reader_url(self) -> str:
        return f"redis://{READER}:{PASSWORD}@127.0.0.1:{self.port}/0"


@contextlib.contextmanager
def running_readonly_redis(directory: Path) -> Iterator[ReadOnlyRedis]:
    server = ReadOnlyRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
