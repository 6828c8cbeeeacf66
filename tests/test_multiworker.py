"""Acceptance: the demo with four uvicorn workers over one private Redis.

A logout-everywhere (``POST /auth/logout-all``) answered by any one worker is
enforced by all four within the propagation bound.

The workers run as the demo runs them (``WORKERS=4 python -m examples.app``:
examples/serve.py, uvicorn's supervisor on a listening socket declared TCP).
Under plain ``uvicorn --workers 4`` every connection keeps Nagle's algorithm
on (uvicorn issue #3149), so each keep-alive answer waits ~40 ms for the
client's delayed ACK: that was the ~48 ms step in this test's figures
(tests/test_examples_serve.py checks the socket option).

Which worker answered a request is found from the outside, without adding
anything to the app: the client's local port names the server-side socket in
``/proc/net/tcp``, and the worker holding that socket's inode among its file
descriptors is the one that accepted the connection. So the tests do not rely
on the kernel spreading connections evenly (it does not: one worker often gets
half of them); they check that every worker was seen, by pid.

- ``test_logout_all_reaches_every_worker``: the scenario of the issue, on fresh
  connections (keep-alive off, one TCP connection per request): alice's three
  sessions are accepted by every worker; one logout-all; then requests until a
  full batch of >= 200 fresh connections, covering every worker, is all
  ``401 token_revoked``. The bound is the latest "first 401" over the workers,
  measured from the moment the logout-all was sent. A worker that answered 401
  once never answers 200 again; bob is untouched; alice can log in again and
  her new token is accepted everywhere.
- ``test_propagation_latency_per_worker``: one kept-alive connection pinned to
  each worker; 20 logout-alls, sent through each worker in turn from a thread
  while the other three are polled: the time from sending until each worker
  refuses, p50/p99/max reported (design target: p99 < 50 ms).
- ``test_second_logout_all_in_the_same_second``: regression test. A token
  issued right after a logout-all does not survive a second logout-all in the
  same wall-clock second (it once did: the user's not-before was
  ``floor(now) + 1`` both times and the token's ``iat`` was raised to exactly
  that value; logout-all also revokes each ended session by id, and the
  not-before is strictly increasing). Logins therefore follow logout-alls at
  once everywhere in this file.

No sleeps: every wait is a request, or a read of uvicorn's output with a timeout.
"""

from __future__ import annotations

import contextlib
import math
import os
import ssl
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from jwtsess import init_keys
from tests.support.redis_server import running_redis
from tests.support.servers import Server, running_uvicorn
from tests.support.stats import percentile

pytestmark = pytest.mark.system  # starts redis-server and uvicorn

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4
BATCH = 200  # fresh-connection requests per batch
MIN_HITS = 5  # a batch goes on until every worker answered at least this many
MAX_BATCH = 3000  # ...but never further than this
DEADLINE = 10.0  # give up waiting for propagation (the assertion below is much tighter)
SANITY_BOUND = 1.0  # seconds: what the test asserts
DESIGN_TARGET = 0.050  # seconds, p99: what the design promises (reported)
TRIALS = 20
PASSWORDS = {"alice": "alice-demo-password", "bob": "bob-demo-password"}
# One SSL context for every client (plain http here; building one per client costs ~30 ms).
SSL_CONTEXT = ssl.create_default_context()


# -- the server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("multiworker")
    keys = directory / "keys"
    init_keys(keys, "RS256")  # before the workers start, so they do not race to create keys
    with running_redis(directory / "redis") as redis_server:
        env = {"JWTSESS_KEYS_DIR": str(keys), "REDIS_URL": redis_server.url, "WORKERS": "4"}
        with running_uvicorn(module="examples.app", env=env, workers=WORKERS) as served:
            yield served
            log = served.stop()
        # Every worker stopped cleanly: nothing crashed while it served.
        assert "Traceback" not in log, log[-20000:]


# -- which worker answered -----------------------------------------------------------------


class WorkerLocator:
    """Finds the worker holding the server side of a loopback connection, by socket inode."""

    def __init__(self, port: int, workers: list[int]) -> None:
        self.local = f"0100007F:{port:04X}"  # 127.0.0.1:port as /proc/net/tcp writes it
        self.workers = workers

    def _inode(self, client_port: int) -> int:
        remote = f"0100007F:{client_port:04X}"
        with open("/proc/net/tcp", encoding="ascii") as table:
            next(table)
            for row in table:
                fields = row.split()
                if fields[1] == self.local and fields[2] == remote and fields[9] != "0":
                    return int(fields[9])
        raise AssertionError(f"no server socket for client port {client_port}")

    def owner(self, client_port: int) -> int:
        link = f"socket:[{self._inode(client_port)}]"
        for pid in self.workers:
            directory = f"/proc/{pid}/fd"
            for fd in os.listdir(directory):
                with contextlib.suppress(OSError):  # an fd closed meanwhile
                    if os.readlink(f"{directory}/{fd}") == link:
                        return pid
        raise AssertionError(f"no worker holds the connection from port {client_port}")


def _client_port(response: httpx.Response) -> int:
    address = response.extensions["network_stream"].get_extra_info("client_addr")
    return int(address[1])


def _error_code(response: httpx.Response) -> str | None:
    if response.status_code == 200:
        return None
    code: str = response.json()["error"]
    return code


@dataclass
class Answer:
    status: int
    code: str | None
    worker: int
    at: float  # perf_counter when the answer arrived


class FreshConnections:
    """One new TCP connection per request (keep-alive off); each answer names its worker."""

    def __init__(self, cluster: Server) -> None:
        self.cluster = cluster
        self.locator = WorkerLocator(cluster.port, cluster.workers)
        self.client = httpx.Client(
            base_url=cluster.base_url,
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=10,
            verify=SSL_CONTEXT,
        )
        # Kept alive: logins, refreshes and waits, where the worker does not matter.
        self.plain = httpx.Client(base_url=cluster.base_url, timeout=10, verify=SSL_CONTEXT)

    def close(self) -> None:
        self.client.close()
        self.plain.close()

    def request(self, method: str, path: str, token: str | None = None) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Streamed, so the connection is still open (and its server socket findable)
        # when the worker is looked up; read() then closes it.
        with self.client.stream(method, path, headers=headers) as response:
            worker = self.locator.owner(_client_port(response))
            response.read()
        return Answer(response.status_code, _error_code(response), worker, time.perf_counter())

    def logout_all(self, connection: FreshConnections | PinnedConnection, token: str) -> Answer:
        return connection.request("POST", "/auth/logout-all", token)

    def wait_until(self, wall_clock: float) -> None:
        """Make requests until ``time.time()`` reaches ``wall_clock`` (a wait without sleep)."""
        while time.time() < wall_clock:
            assert self.plain.get("/.well-known/jwks.json").status_code == 200

    def login(self, user: str) -> dict[str, str]:
        response = self.plain.post(
            "/auth/login", json={"username": user, "password": PASSWORDS[user]}
        )
        assert response.status_code == 200, response.text
        pair: dict[str, str] = response.json()
        return pair

    def batch(self, tokens: list[str]) -> tuple[list[Answer], Counter[int]]:
        """At least BATCH requests, cycling ``tokens``, until every worker answered MIN_HITS."""
        answers: list[Answer] = []
        hits: Counter[int] = Counter()
        workers = self.locator.workers
        while len(answers) < BATCH or min(hits[w] for w in workers) < MIN_HITS:
            assert len(answers) < MAX_BATCH, f"a worker is never reached: {dict(hits)}"
            answer = self.request("GET", "/me", tokens[len(answers) % len(tokens)])
            answers.append(answer)
            hits[answer.worker] += 1
        return answers, hits


@pytest.fixture
def fresh(cluster: Server) -> Iterator[FreshConnections]:
    connections = FreshConnections(cluster)
    try:
        yield connections
    finally:
        connections.close()


@dataclass
class PinnedConnection:
    """A kept-alive connection to one worker (re-identified if it ever reconnects)."""

    client: httpx.Client
    locator: WorkerLocator
    port: int = 0
    worker: int = 0

    def request(self, method: str, path: str, token: str | None = None) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.request(method, path, headers=headers)
        port = _client_port(response)
        if port != self.port:
            self.port, self.worker = port, self.locator.owner(port)
        return Answer(response.status_code, _error_code(response), self.worker, time.perf_counter())


@pytest.fixture
def pinned(cluster: Server) -> Iterator[dict[int, PinnedConnection]]:
    """One kept-alive connection per worker: open connections until every worker has one."""
    locator = WorkerLocator(cluster.port, cluster.workers)
    opened: list[httpx.Client] = []
    by_worker: dict[int, PinnedConnection] = {}
    try:
        while len(by_worker) < WORKERS:
            assert len(opened) < MAX_BATCH, f"a worker is never reached: {sorted(by_worker)}"
            client = httpx.Client(
                base_url=cluster.base_url,
                limits=httpx.Limits(max_connections=1),
                timeout=10,
                verify=SSL_CONTEXT,
            )
            opened.append(client)
            connection = PinnedConnection(client, locator)
            answer = connection.request("GET", "/.well-known/jwks.json")
            assert answer.status == 200
            by_worker.setdefault(answer.worker, connection)
        for client in opened:  # keep only the ones we use
            if all(c.client is not client for c in by_worker.values()):
                client.close()
        yield by_worker
    finally:
        for client in opened:
            client.close()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- the tests -----------------------------------------------------------------------------


def test_logout_all_reaches_every_worker(
    cluster: Server, fresh: FreshConnections, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = [fresh.login("alice") for _ in range(3)]
    bob = fresh.login("bob")
    tokens = [pair["access_token"] for pair in alice]

    before, before_hits = fresh.batch(tokens)
    assert {a.status for a in before} == {200}, Counter((a.status, a.code) for a in before)
    assert set(before_hits) == set(cluster.workers)

    sent = time.perf_counter()
    logout = fresh.logout_all(fresh, tokens[0])
    assert (logout.status, logout.code) == (200, None)
    origin = logout.worker

    # Poll on fresh connections until a whole batch, reaching every worker, is all 401.
    first_401: dict[int, float] = {}
    answers: list[Answer] = []
    batch_start = 0  # index in `answers` where the current all-401 run began
    while True:
        assert time.perf_counter() - sent < DEADLINE, (
            f"not every worker refused alice within {DEADLINE}s: first 401s {first_401}"
        )
        answer = fresh.request("GET", "/me", tokens[len(answers) % len(tokens)])
        answers.append(answer)
        if answer.status == 401:
            assert answer.code == "token_revoked", answer
            first_401.setdefault(answer.worker, answer.at - sent)
        else:
            assert answer.status == 200, answer
            # Accepted after this worker had refused: the revocation was undone.
            assert answer.worker not in first_401, (
                f"worker {answer.worker} accepted a token it had refused before"
            )
            batch_start = len(answers)
        run = answers[batch_start:]
        reached = Counter(a.worker for a in run)
        if len(run) >= BATCH and all(reached[w] >= MIN_HITS for w in cluster.workers):
            break
        assert len(run) < MAX_BATCH, f"a worker is never reached: {dict(reached)}"
    all_401_at = answers[-1].at - sent
    bound = max(first_401.values())
    assert set(first_401) == set(cluster.workers)
    # The worker that answered the logout-all refuses at once (it syncs its own mirror).
    assert next(a for a in answers if a.worker == origin).status == 401

    # Bob is untouched, on every worker; alice's refresh tokens are dead.
    bob_answers, _ = fresh.batch([bob["access_token"]])
    assert {a.status for a in bob_answers} == {200}
    for pair in alice:
        refreshed = fresh.plain.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 401
        assert refreshed.json()["error"] == "session_not_found"

    # Logging in again works, and the new token is accepted by every worker at once
    # (its iat is not before the user's revocation instant, on any worker).
    again = fresh.login("alice")["access_token"]
    after, _ = fresh.batch([again])
    assert {a.status for a in after} == {200}, Counter((a.status, a.code) for a in after)
    # ...while the old ones stay refused everywhere.
    old, _ = fresh.batch(tokens)
    assert {(a.status, a.code) for a in old} == {(401, "token_revoked")}

    with capsys.disabled():
        print(f"\n[multi-worker] {WORKERS} workers (examples/serve.py), pids {cluster.workers}")
        print(
            f"[multi-worker] fresh connections per worker, before the logout-all: "
            f"{dict(before_hits)} (of {len(before)})"
        )
        print(
            f"[multi-worker] if uniform, P(one given worker missed by {BATCH} requests) = "
            f"(3/4)^{BATCH} = {0.75**BATCH:.1e}; here each worker is identified by pid instead"
        )
        print(
            f"[multi-worker] logout-all via worker {origin}; first 401 per worker after it was "
            "sent: " + ", ".join(f"{w}: {_ms(t)}" for w, t in sorted(first_401.items()))
        )
        print(
            f"[multi-worker] propagation bound (all {WORKERS} workers refuse): {_ms(bound)}; "
            f"first full all-401 batch ({len(answers) - batch_start} requests) done at "
            f"{_ms(all_401_at)}; {batch_start} requests answered 200 in the propagation window"
        )
    assert bound < SANITY_BOUND


def test_propagation_latency_per_worker(
    cluster: Server,
    fresh: FreshConnections,
    pinned: dict[int, PinnedConnection],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each logout-all is sent from a thread while this one polls the other workers."""
    workers = sorted(pinned)
    assert workers == sorted(cluster.workers)
    delays: dict[int, list[float]] = {w: [] for w in workers}  # from sending, other workers
    round_trips: list[float] = []  # the logout-all's own request
    raced = 0  # 200s answered while the revocation was on its way
    polls: list[float] = []  # each poll's own round trip: the floor under every delay
    with ThreadPoolExecutor(max_workers=1) as sender:
        for trial in range(TRIALS):
            token = fresh.login(("alice", "bob")[trial % 2])["access_token"]
            for worker in workers:
                answer = pinned[worker].request("GET", "/me", token)
                assert (answer.status, answer.worker) == (200, worker)
            origin = workers[trial % WORKERS]
            others = [w for w in workers if w != origin]
            sent = time.perf_counter()
            future = sender.submit(fresh.logout_all, pinned[origin], token)
            first_401: dict[int, float] = {}
            while len(first_401) < len(others):
                assert time.perf_counter() - sent < DEADLINE, f"trial {trial}: {first_401}"
                for worker in others:  # every one, every round: a refusal must stick
                    asked = time.perf_counter()
                    answer = pinned[worker].request("GET", "/me", token)
                    polls.append(answer.at - asked)
                    assert answer.worker == worker
                    if answer.status == 200:
                        assert worker not in first_401, f"worker {worker} accepted after refusing"
                        raced += 1
                    else:
                        assert (answer.status, answer.code) == (401, "token_revoked"), answer
                        first_401.setdefault(worker, answer.at - sent)
            logout = future.result(timeout=DEADLINE)
            assert (logout.status, logout.worker) == (200, origin)
            round_trips.append(logout.at - sent)
            # The worker that answered has synced its own mirror: it refuses at once.
            answer = pinned[origin].request("GET", "/me", token)
            assert (answer.status, answer.code) == (401, "token_revoked")
            for worker, delay in first_401.items():
                delays[worker].append(delay)

    everything = [d for per_worker in delays.values() for d in per_worker]
    p50, p99, worst = (
        statistics.median(everything),
        percentile(everything, 0.99),
        max(everything),
    )
    with capsys.disabled():
        print(
            f"\n[multi-worker] {TRIALS} logout-alls, each through one worker in turn, the other "
            f"three polled meanwhile on kept-alive connections ({len(polls)} polls, {raced} "
            "answered 200 while the revocation was on its way):"
        )
        for worker in workers:
            values = delays[worker]
            print(
                f"[multi-worker]   worker {worker}: median {_ms(statistics.median(values))}, "
                f"max {_ms(max(values))} ({len(values)} trials)"
            )
        print(
            f"[multi-worker] time from sending the logout-all until another worker refuses: "
            f"p50 {_ms(p50)}, p99 {_ms(p99)}, max {_ms(worst)} (design target p99 < "
            f"{_ms(DESIGN_TARGET)}; asserted < {_ms(SANITY_BOUND)}); the logout-all's own "
            f"answer took median {_ms(statistics.median(round_trips))}"
        )
        print(
            f"[multi-worker] one poll's own round trip (the resolution of the figures above): "
            f"p50 {_ms(statistics.median(polls))}, p99 {_ms(percentile(polls, 0.99))}"
        )
    assert worst < SANITY_BOUND


class RevocationMissed(Exception):
    """A token a logout-all should have revoked is still accepted (the fixed bug below)."""


def test_second_logout_all_in_the_same_second(
    cluster: Server, fresh: FreshConnections, pinned: dict[int, PinnedConnection]
) -> None:
    origin = pinned[sorted(pinned)[0]]
    for _ in range(5):  # until the whole sequence fits in one wall-clock second
        fresh.wait_until(math.floor(time.time()) + 1)  # the start of a second
        start = math.floor(time.time())
        first = fresh.login("bob")["access_token"]
        assert fresh.logout_all(origin, first).status == 200
        second = fresh.login("bob")  # the same second
        ended = fresh.logout_all(origin, second["access_token"])
        if math.floor(time.time()) == start:
            break
    else:
        pytest.skip("could not fit login, logout-all, login, logout-all in one second")
    assert ended.status == 200
    # The session did end: its refresh token is dead...
    refreshed = fresh.plain.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert refreshed.json()["error"] == "session_not_found"
    # ...and the worker that ended it (and has synced its mirror) refuses its access token.
    answer = origin.request("GET", "/me", second["access_token"])
    if answer.status == 200:
        raise RevocationMissed(f"bob's token is accepted after logout-all ended {ended}")
    assert (answer.status, answer.code) == (401, "token_revoked")
