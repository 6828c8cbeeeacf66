"""The rotation tool: ``jwtsess-keys`` (``jwtsess.keytool.main``) and its library functions."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory, StepTickTimeFactory, TickingDateTimeFactory

from jwtsess import KeyRing, KeyringError, init_keys, prune_keys, rotate_keys
from jwtsess.keyfiles import MANIFEST_NAME, REFRESH_SECRET_NAME, atomic_write, read_manifest
from jwtsess.keytool import ensure_keys, main
from jwtsess.refresh_secrets import prune_refresh_secrets, rotate_refresh_secret
from tests.support.kit import T0, MutableClock

Frozen = FrozenDateTimeFactory | StepTickTimeFactory | TickingDateTimeFactory
REPO = Path(__file__).resolve().parent.parent
T0_ISO = "2027-01-15T08:00:00Z"  # T0 as the tool prints it


@pytest.fixture
def frozen() -> Iterator[Frozen]:
    """The system clock (which the CLI reads) frozen at T0."""
    with freeze_time("2027-01-15 08:00:00") as factory:
        assert time.time() == T0
        yield factory


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


class CLI:
    """Runs ``main`` and captures what it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str], directory: Path) -> None:
        self.capsys = capsys
        self.directory = directory
        self.out = ""
        self.err = ""

    def __call__(self, *args: str) -> int:
        self.capsys.readouterr()
        code = main(["--dir", str(self.directory), *args])
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return code

    def kids(self) -> list[str]:
        manifest, _ = read_manifest(self.directory)
        return [k.kid for k in manifest.keys]

    def states(self) -> dict[str, str]:
        assert self("list") == 0
        keys_table = self.out.strip().split("\n\n")[0]  # then the refresh secrets' table
        rows = [line.split() for line in keys_table.splitlines()[1:]]
        return {row[0]: row[2] for row in rows}


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], keydir: Path) -> CLI:
    return CLI(capsys, keydir)


def _init(cli: CLI, *extra: str) -> str:
    assert cli("init", "--alg", "ES256", *extra) == 0, cli.err
    return cli.kids()[0]


# -- init -------------------------------------------------------------------------------


def test_init_creates_one_active_key(cli: CLI, frozen: Frozen, keydir: Path) -> None:
    assert cli("init", "--alg", "ES256") == 0
    manifest, _ = read_manifest(keydir)
    (record,) = manifest.keys
    assert cli.out == f"created ES256 key {record.kid} (active) in {keydir}\n"
    assert cli.err == ""
    assert record.alg == "ES256"
    assert record.activates_at == record.created_at == T0
    assert (manifest.publish_delay, manifest.max_token_ttl, manifest.leeway) == (3600, 900, 60)
    assert (keydir / f"{record.kid}.pem").is_file()
    assert len((keydir / REFRESH_SECRET_NAME).read_bytes()) == 32
    assert cli.states() == {record.kid: "active"}


def test_init_defaults_to_rs256(cli: CLI, frozen: Frozen) -> None:
    assert cli("init") == 0
    assert "created RS256 key" in cli.out


def test_init_options(cli: CLI, frozen: Frozen, keydir: Path) -> None:
    _init(cli, "--publish-delay", "60", "--max-token-ttl", "300", "--leeway", "5")
    manifest, _ = read_manifest(keydir)
    assert (manifest.publish_delay, manifest.max_token_ttl, manifest.leeway) == (60, 300, 5)


def test_init_twice_fails_and_changes_nothing(cli: CLI, frozen: Frozen, keydir: Path) -> None:
    _init(cli)
    before = (keydir / MANIFEST_NAME).read_bytes()
    files = sorted(p.name for p in keydir.iterdir())
    assert cli("init", "--alg", "ES256") == 1
    assert cli.out == ""
    assert cli.err.startswith("jwtsess-keys: ")
    assert "already exists; use 'rotate'" in cli.err
    assert (keydir / MANIFEST_NAME).read_bytes() == before
    assert sorted(p.name for p in keydir.iterdir()) == files


def test_init_keeps_an_existing_refresh_secret(keydir: Path, clock: MutableClock) -> None:
    keydir.mkdir(mode=0o700)
    (keydir / REFRESH_SECRET_NAME).write_bytes(b"s" * 32)
    (keydir / REFRESH_SECRET_NAME).chmod(0o600)
    init_keys(keydir, "HS256", clock=clock)
    assert KeyRing(keydir, clock=clock).refresh_secret.secret == b"s" * 32


def test_init_refuses_an_unknown_algorithm(keydir: Path) -> None:
    with pytest.raises(KeyringError, match="unsupported algorithm"):
        init_keys(keydir, "none")
    assert not (keydir / MANIFEST_NAME).exists()


def test_ensure_keys_creates_once(keydir: Path) -> None:
    assert ensure_keys(keydir, "HS256") is True
    before = (keydir / MANIFEST_NAME).read_bytes()
    assert ensure_keys(keydir, "HS256") is False
    assert (keydir / MANIFEST_NAME).read_bytes() == before


# -- rotate -----------------------------------------------------------------------------


def test_rotate_adds_a_pending_key(cli: CLI, frozen: Frozen, keydir: Path) -> None:
    first = _init(cli)
    assert cli("rotate") == 0
    second = cli.kids()[1]
    assert cli.out == f"added ES256 key {second}, signing from 2027-01-15T09:00:00Z\n"
    assert cli.states() == {first: "active", second: "pending"}
    assert (keydir / f"{second}.pem").is_file()
    frozen.tick(3600)
    assert cli.states() == {first: "retiring", second: "active"}


def test_rotate_refuses_while_a_key_is_pending(cli: CLI, frozen: Frozen, keydir: Path) -> None:
    _init(cli)
    assert cli("rotate") == 0
    pending = cli.kids()[1]
    before = (keydir / MANIFEST_NAME).read_bytes()
    files = sorted(p.name for p in keydir.iterdir())
    frozen.tick(3599)
    assert cli("rotate") == 1
    assert cli.out == ""
    assert cli.err == (
        f"jwtsess-keys: key {pending} is still pending until 2027-01-15T09:00:00Z; "
        "rotate again once it is active (or pass --immediate)\n"
    )
    assert (keydir / MANIFEST_NAME).read_bytes() == before
    assert sorted(p.name for p in keydir.iterdir()) == files  # no stray key file
    frozen.tick(1)
    assert cli("rotate") == 0
    assert len(cli.kids()) == 3


def test_rotate_immediate_replaces_the_pending_key(cli: CLI, frozen: Frozen, keydir: Path) -> None:
    first = _init(cli)
    assert cli("rotate") == 0
    pending = cli.kids()[1]
    frozen.tick(10)
    assert cli("rotate", "--immediate") == 0
    kids = cli.kids()
    assert len(kids) == 2
    assert pending not in kids  # never used, so dropped
    assert not (keydir / f"{pending}.pem").exists()
    emergency = kids[1]
    assert cli.out == f"added ES256 key {emergency}, signing from 2027-01-15T08:00:10Z\n"
    assert cli.states() == {first: "retiring", emergency: "active"}
    ring = KeyRing(keydir)
    assert ring.signing_key().kid == emergency
    assert ring.verification_key(first) is not None


def test_rotate_with_another_algorithm(cli: CLI, frozen: Frozen, keydir: Path) -> None:
    first = _init(cli)
    assert cli("rotate", "--alg", "HS256") == 0
    second = cli.kids()[1]
    assert second.startswith("hs-")
    assert (keydir / f"{second}.secret").is_file()
    assert "added HS256 key" in cli.out
    frozen.tick(3600)
    assert cli("rotate") == 0  # the new key's algorithm is the active key's
    assert "added HS256 key" in cli.out
    assert cli("jwks") == 0
    assert [k["kid"] for k in json.loads(cli.out)["keys"]] == [first]


def test_rotate_without_a_keyring_fails(cli: CLI, frozen: Frozen, keydir: Path) -> None:
    assert cli("rotate") == 1
    assert str(keydir / MANIFEST_NAME) in cli.err
    assert "file is missing" in cli.err


def test_concurrent_rotations_do_not_lose_a_key(keydir: Path, clock: MutableClock) -> None:
    init_keys(keydir, "ES256", clock=clock)
    results: list[str] = []
    errors: list[KeyringError] = []
    start = threading.Barrier(4)

    def rotate() -> None:
        start.wait()
        try:
            results.append(rotate_keys(keydir, clock=clock).kid)
        except KeyringError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 1  # the lock serialises them; the others see a pending key
    assert len(errors) == 3
    assert all("still pending" in str(e) for e in errors)
    manifest, _ = read_manifest(keydir)
    assert [k.kid for k in manifest.keys][1:] == results
    assert sorted(p.name for p in keydir.glob("*.pem")) == sorted(
        f"{k.kid}.pem" for k in manifest.keys
    )


def test_rotate_logs_an_audit_event(
    keydir: Path, clock: MutableClock, caplog: pytest.LogCaptureFixture
) -> None:
    init_keys(keydir, "HS256", clock=clock)
    with caplog.at_level(logging.INFO, logger="jwtsess.audit"):
        record = rotate_keys(keydir, clock=clock)
    events = [r for r in caplog.records if getattr(r, "event", None) == "key_rotated"]
    assert len(events) == 1
    assert getattr(events[0], "kid", None) == record.kid


# -- prune ------------------------------------------------------------------------------


def test_prune_waits_for_retired_at_plus_ttl_plus_leeway(
    cli: CLI, frozen: Frozen, keydir: Path
) -> None:
    first = _init(cli, "--publish-delay", "60", "--max-token-ttl", "300", "--leeway", "30")
    assert cli("rotate") == 0
    second = cli.kids()[1]
    assert cli("prune") == 0
    assert cli.out == "pruned nothing\n"
    frozen.tick(60)  # second active, first retiring since T0 + 60
    assert cli("prune") == 0
    assert cli.out == "pruned nothing\n"
    frozen.tick(300 + 30 - 1)
    assert cli("prune") == 0
    assert cli.out == "pruned nothing\n"
    assert (keydir / f"{first}.pem").exists()
    frozen.tick(1)  # retired_at + max_token_ttl + leeway
    assert cli("prune") == 0
    assert cli.out == f"pruned {first}\n"
    assert cli.kids() == [second]
    assert not (keydir / f"{first}.pem").exists()
    assert cli("prune") == 0
    assert cli.out == "pruned nothing\n"


def test_prune_never_removes_the_active_or_a_pending_key(keydir: Path) -> None:
    clock = MutableClock()
    first = init_keys(keydir, "ES256", clock=clock).kid
    clock.advance(10**7)
    assert prune_keys(keydir, clock=clock) == []
    second = rotate_keys(keydir, clock=clock).kid
    assert prune_keys(keydir, clock=clock) == []  # first is still active
    clock.advance(3600)
    assert prune_keys(keydir, clock=clock) == []  # first retired just now
    clock.advance(900 + 60)
    assert prune_keys(keydir, clock=clock) == [first]
    clock.advance(10**7)
    assert prune_keys(keydir, clock=clock) == []
    manifest, _ = read_manifest(keydir)
    assert [k.kid for k in manifest.keys] == [second]


def test_prune_removes_every_expired_retiring_key(keydir: Path) -> None:
    clock = MutableClock()
    kids = [init_keys(keydir, "HS256", clock=clock, publish_delay=10).kid]
    for _ in range(3):
        kids.append(rotate_keys(keydir, clock=clock).kid)
        clock.advance(10)
    clock.advance(900 + 60)
    assert prune_keys(keydir, clock=clock) == kids[:3]
    assert sorted(p.name for p in keydir.glob("*.secret")) == sorted(
        [f"{kids[3]}.secret", REFRESH_SECRET_NAME]
    )


# -- rotate-refresh -----------------------------------------------------------------------


def test_rotate_refresh_adds_the_next_secret_and_lists_it(
    cli: CLI, frozen: Frozen, keydir: Path
) -> None:
    _init(cli, "--max-session-ttl", "3600", "--leeway", "30")
    zero = (keydir / REFRESH_SECRET_NAME).read_bytes()
    assert cli("rotate-refresh") == 0, cli.err
    assert (
        cli.out.strip() == "added refresh secret 1 (refresh-1.secret); it MACs new refresh tokens"
    )
    frozen.tick(60)
    assert cli("rotate-refresh") == 0
    assert (keydir / REFRESH_SECRET_NAME).read_bytes() == zero  # untouched
    assert len((keydir / "refresh-1.secret").read_bytes()) == 32
    assert (keydir / "refresh-1.secret").stat().st_mode & 0o777 == 0o600
    manifest, _ = read_manifest(keydir)
    assert [r.id for r in manifest.refresh_secrets] == [0, 1, 2]
    assert manifest.max_session_ttl == 3600
    ring = KeyRing(keydir)
    assert ring.refresh_secret.id == 2
    assert ring.refresh_secret_by_id(0) == zero
    assert cli("list") == 0
    table = cli.out.strip().split("\n\n")[1].splitlines()
    assert [line.split() for line in table] == [
        ["REFRESH", "SECRET", "STATE", "RETIRED", "PRUNABLE", "AFTER"],
        ["0", "retired", T0_ISO, "2027-01-15T09:00:30Z"],
        ["1", "retired", "2027-01-15T08:01:00Z", "2027-01-15T09:01:30Z"],
        ["2", "current", "-", "-"],
    ]


def test_prune_removes_a_refresh_secret_after_the_longest_session(
    cli: CLI, frozen: Frozen, keydir: Path
) -> None:
    _init(cli, "--max-session-ttl", "3600", "--leeway", "30")
    assert cli("rotate-refresh") == 0
    frozen.tick(3600 + 29)
    assert cli("prune") == 0
    assert cli.out.strip() == "pruned nothing"
    assert (keydir / REFRESH_SECRET_NAME).exists()
    frozen.tick(1)
    assert cli("prune") == 0
    assert cli.out.strip() == "pruned refresh secret 0"
    assert not (keydir / REFRESH_SECRET_NAME).exists()
    assert sorted(p.name for p in keydir.glob("refresh*")) == ["refresh-1.secret"]
    manifest, _ = read_manifest(keydir)
    assert [r.id for r in manifest.refresh_secrets] == [1]
    frozen.tick(10 * 86400)
    assert cli("prune") == 0  # the current secret is never pruned
    assert cli.out.strip() == "pruned nothing"
    assert KeyRing(keydir).refresh_secret.id == 1


def test_rotate_refresh_on_a_directory_from_before_it(keydir: Path, clock: MutableClock) -> None:
    """A manifest that lists no refresh secrets has secret 0, refresh.secret; rotation keeps it."""
    init_keys(keydir, "HS256", clock=clock)
    body = json.loads((keydir / MANIFEST_NAME).read_bytes())
    del body["refresh_secrets"], body["max_session_ttl"]
    atomic_write(keydir / MANIFEST_NAME, json.dumps(body).encode())
    assert rotate_refresh_secret(keydir, clock=clock).id == 1
    manifest, _ = read_manifest(keydir)
    assert [(r.id, r.file) for r in manifest.refresh_secrets] == [
        (0, "refresh.secret"),
        (1, "refresh-1.secret"),
    ]


def test_rotate_refresh_without_a_keyring_fails(cli: CLI, keydir: Path) -> None:
    assert cli("rotate-refresh") == 1
    assert str(keydir / MANIFEST_NAME) in cli.err


# -- list and jwks ----------------------------------------------------------------------


def test_list_shows_states_and_schedule(cli: CLI, frozen: Frozen) -> None:
    first = _init(cli, "--publish-delay", "60", "--max-token-ttl", "300", "--leeway", "30")
    assert cli("rotate") == 0
    second = cli.kids()[1]
    frozen.tick(60)
    assert cli("rotate") == 0
    third = cli.kids()[2]
    assert cli("list") == 0
    lines = cli.out.strip().split("\n\n")[0].splitlines()
    assert lines[0].split() == ["KID", "ALG", "STATE", "ACTIVATES", "RETIRED", "PRUNABLE", "AFTER"]
    rows = [line.split() for line in lines[1:]]
    assert rows == [
        [first, "ES256", "retiring", T0_ISO, "2027-01-15T08:01:00Z", "2027-01-15T08:06:30Z"],
        [second, "ES256", "active", "2027-01-15T08:01:00Z", "-", "-"],
        [third, "ES256", "pending", "2027-01-15T08:02:00Z", "-", "-"],
    ]


def test_list_without_a_keyring_fails(cli: CLI, keydir: Path) -> None:
    assert cli("list") == 1
    assert cli.out == ""
    assert cli.err.startswith("jwtsess-keys: ")
    assert str(keydir / MANIFEST_NAME) in cli.err


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_jwks_prints_the_public_keys(cli: CLI, frozen: Frozen, alg: str) -> None:
    assert cli("init", "--alg", alg) == 0
    assert cli("rotate") == 0
    assert cli("jwks") == 0
    jwks = json.loads(cli.out)
    assert [k["kid"] for k in jwks["keys"]] == cli.kids()  # active and pending
    for jwk in jwks["keys"]:
        assert jwk["alg"] == alg
        assert jwk["use"] == "sig"
        assert "d" not in jwk


def test_jwks_of_an_hs256_ring_is_empty(cli: CLI, frozen: Frozen) -> None:
    assert cli("init", "--alg", "HS256") == 0
    assert cli("jwks") == 0
    assert json.loads(cli.out) == {"keys": []}


def test_jwks_refuses_an_unsafe_directory(cli: CLI, frozen: Frozen, keydir: Path) -> None:
    _init(cli)
    (keydir / MANIFEST_NAME).chmod(0o644)
    assert cli("jwks") == 1
    assert "chmod 600" in cli.err
    assert str(keydir / MANIFEST_NAME) in cli.err


# -- argument handling -------------------------------------------------------------------


def test_dir_defaults_to_the_environment(
    keydir: Path,
    frozen: Frozen,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JWTSESS_KEYS_DIR", str(keydir))
    assert main(["init", "--alg", "HS256"]) == 0
    assert str(keydir) in capsys.readouterr().out
    assert (keydir / MANIFEST_NAME).is_file()
    assert main(["list"]) == 0
    assert "HS256" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [[], ["init", "--alg", "none"], ["rotate", "--alg", "RS512"], ["explode"]],
    ids=["no-command", "bad-init-alg", "bad-rotate-alg", "unknown-command"],
)
def test_bad_arguments_exit_2(
    keydir: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--dir", str(keydir), *args])
    assert exc.value.code == 2
    assert "usage: jwtsess-keys" in capsys.readouterr().err
    assert not keydir.exists()


def _help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*args, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # one line, however argparse wraps it


def _subcommands(capsys: pytest.CaptureFixture[str]) -> list[str]:
    match = re.search(r"\{([a-z,-]+)\}", _help([], capsys))
    assert match, "no subcommand list in jwtsess-keys --help"
    return match.group(1).split(",")


def test_every_subcommand_help_shows_its_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """Every option that takes a value says what it is when not given (flags need not)."""
    commands = _subcommands(capsys)
    assert {"init", "rotate", "rotate-refresh", "prune", "list", "jwks"} <= set(commands)
    for command in [None, *commands]:
        text = _help([command] if command else [], capsys).split(" options: ", 1)[1]
        for entry in re.split(r" (?=--[a-z-]+ )", text):
            takes_value = re.match(r"(--[a-z-]+) ([A-Z_]+|\{[^}]*\})(.*)", entry)
            if takes_value:
                option, _, description = takes_value.groups()
                assert "default" in description, f"jwtsess-keys {command} {option}: {description}"


def test_init_help_names_the_schedule_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["init"], capsys)
    assert "(default: RS256)" in text
    assert "(default: 3600.0)" in text
    assert "(default: 900.0)" in text
    assert "(default: 60.0)" in text
    assert "not TokenSettings.leeway" in text  # two different leeways, said so


# -- the script -------------------------------------------------------------------------


def test_rotate_keys_script_runs_the_tool(keydir: Path) -> None:
    record = init_keys(keydir, "EdDSA")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "rotate_keys.py"), "--dir", str(keydir), "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = [line.split() for line in result.stdout.strip().splitlines()]
    assert rows[0][:3] == ["KID", "ALG", "STATE"]
    assert rows[1][:3] == [record.kid, "EdDSA", "active"]


def test_refresh_secret_rotation_and_prune_are_audited(
    keydir: Path, clock: MutableClock, caplog: pytest.LogCaptureFixture
) -> None:
    init_keys(keydir, "HS256", clock=clock)
    with caplog.at_level(logging.INFO, logger="jwtsess.audit"):
        rotate_refresh_secret(keydir, clock=clock)
        clock.advance(30 * 24 * 3600 + 60)
        assert prune_refresh_secrets(keydir, clock=clock) == [0]
    lines = [r.getMessage() for r in caplog.records if r.name == "jwtsess.audit"]
    assert lines == ["refresh_secret_rotated secret_id=1", "refresh_secret_pruned secret_id=0"]
    assert [getattr(r, "secret_id", None) for r in caplog.records] == [1, 0]
