"""Audit records (jwtsess/audit.py): the log line says who, which session and from where."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import get_args

import pytest

from jwtsess import AuditEvent, ClientMetadata, MemoryStore, RefreshReused, SessionStore
from jwtsess.audit import AuditEventName, Auditor, log_value
from jwtsess.keytool import init_keys, prune_keys, rotate_keys
from tests.support.kit import IssuerKit

MakeIssuer = Callable[..., IssuerKit]

PLAIN_FORMAT = "%(levelname)s %(name)s: %(message)s"  # the example format


@pytest.fixture
def store() -> SessionStore:
    """The log line does not depend on the backend (tests/test_issuer.py runs them all)."""
    return MemoryStore()


@pytest.fixture
def audit_log() -> Iterator[io.StringIO]:
    """The jwtsess.audit logger through a plain, standard formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    logger = logging.getLogger("jwtsess.audit")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_the_line_carries_event_user_session_and_address(
    make_issuer: MakeIssuer, audit_log: io.StringIO
) -> None:
    env = make_issuer()
    audit_log.seek(0)
    audit_log.truncate()  # the key_created line of the test's key directory
    meta = ClientMetadata(user_agent="curl/8.5.0", ip="198.51.100.7")
    pair = await env.issuer.login("alice", "user", metadata=meta)
    await env.issuer.logout_all("alice", metadata=meta)
    lines = audit_log.getvalue().splitlines()
    assert lines[0] == (
        f"INFO jwtsess.audit: login user=alice session={pair.session_id} ip=198.51.100.7"
    )
    assert lines[1] == "INFO jwtsess.audit: logout_all user=alice session=- ip=198.51.100.7 ended=1"


async def test_reuse_is_a_warning_with_the_same_fields(
    make_issuer: MakeIssuer, audit_log: io.StringIO
) -> None:
    env = make_issuer()
    audit_log.seek(0)
    audit_log.truncate()  # the key_created line of the test's key directory
    meta = ClientMetadata(ip="203.0.113.5")
    pair = await env.issuer.login("bob", "user", metadata=meta)
    await env.issuer.refresh(pair.refresh_token, metadata=meta)
    env.clock.advance(3600)
    with pytest.raises(RefreshReused):
        await env.issuer.refresh(pair.refresh_token, metadata=meta)
    last = audit_log.getvalue().splitlines()[-1]
    assert last.startswith("WARNING jwtsess.audit: reuse_detected user=bob session=")
    assert f"session={pair.session_id} ip=203.0.113.5" in last


async def test_hostile_values_cannot_forge_a_line_or_a_field(audit_log: io.StringIO) -> None:
    forged = "mallory ip=10.0.0.1\nINFO jwtsess.audit: login user=admin"
    event = AuditEvent(
        "login", at=0.0, user_id=forged, session_id="s1", ip="\u202e1.2.3.4", user_agent="x"
    )
    await Auditor().emit(event)
    text = audit_log.getvalue()
    assert text.count("\n") == 1  # one line, whatever the user id holds
    assert 'user="mallory ip=10.0.0.1\\nINFO jwtsess.audit: login user=admin"' in text
    assert 'ip="\\u202e1.2.3.4"' in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        ("alice", "alice"),
        ("alice@example.com", "alice@example.com"),
        ("2001:db8::1", "2001:db8::1"),
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("é", '"\\u00e9"'),
        (3, "3"),
        (True, "True"),
    ],
)
def test_log_value(value: object, shown: str) -> None:
    assert log_value(value) == shown


def test_the_record_keeps_every_field_for_structured_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = AuditEvent(
        "logout",
        at=1.5,
        user_id="alice",
        session_id="s1",
        ip="198.51.100.1",
        user_agent="curl/8.5.0",
        details={"k": 1},
    )
    caplog.set_level(logging.INFO, logger="jwtsess.audit")
    asyncio.run(Auditor().emit(event))
    (record,) = caplog.records
    assert record.__dict__["audit"] == {
        "event": "logout",
        "at": 1.5,
        "user_id": "alice",
        "session_id": "s1",
        "ip": "198.51.100.1",
        "user_agent": "curl/8.5.0",
        "details": {"k": 1},
    }
    assert record.getMessage() == "logout user=alice session=s1 ip=198.51.100.1 k=1"


def test_key_events_name_the_key(tmp_path: Path, audit_log: io.StringIO) -> None:
    record = init_keys(tmp_path / "keys", "HS256")
    rotated = rotate_keys(tmp_path / "keys", immediate=True)
    prune_keys(tmp_path / "keys")
    lines = audit_log.getvalue().splitlines()
    assert lines[0] == f"INFO jwtsess.audit: key_created kid={record.kid} alg=HS256"
    assert lines[1].startswith(f"INFO jwtsess.audit: key_rotated kid={rotated.kid} alg=HS256 ")


def test_every_logger_and_audit_event_is_documented() -> None:
    """docs/logging.md names every logger jwtsess creates and every audit event it emits."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "logging.md").read_text(encoding="utf-8")
    source = "\n".join(p.read_text(encoding="utf-8") for p in (root / "jwtsess").rglob("*.py"))
    loggers = set(re.findall(r'getLogger\("([a-z_.]+)"\)', source))
    assert "jwtsess.audit" in loggers
    for name in sorted(loggers):
        assert f"`{name}`" in page, f"logger {name} is not in docs/logging.md"
    for event in get_args(AuditEventName):
        assert f"`{event}`" in page, f"audit event {event} is not in docs/logging.md"
