#!/usr/bin/env python3
"""The long fuzz campaign behind ``make fuzz``: a million inputs or more, then the counts.

Runs the targets of tests/fuzz_targets/ (the ones tests/test_fuzz.py runs
briefly under hypothesis) with a large budget:

* plain seeded loops (``RandomChooser``) for throughput: mutated, forged and
  garbage access tokens through the verifier, refresh tokens through
  ``decode_refresh_token``, and requests through the real ASGI app (driven
  directly, a MemoryStore, the app rebuilt every few hundred examples);
* then hypothesis over the same targets, for shrunk minimal examples. A failure
  the campaign already knows (same signature) does not stop a hypothesis run,
  so each distinct bug is shrunk once and the budget is still spent.

Usage::

    python -m scripts.fuzz                      # 1,000,000 inputs, ~7 minutes on one core
    python -m scripts.fuzz --budget 50000       # a quick check
    python -m scripts.fuzz --only http --seed 7 --max-minutes 10

Run it as a module from the repository root (``make fuzz`` does), so ``tests``
is imported as the package it is.

It measures each target's speed first and prints an estimate, prints progress
with an ETA while it runs, stops at ``--max-minutes`` whatever is left, and ends
with the inputs per target, their outcomes and every distinct failure (its
input, where it raised). The exit status is 1 if any property failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests import fuzz_targets as ft

HTTP_ENV_EXAMPLES = 400  # examples per app before a fresh one (bounds store and cache growth)
PROGRESS_SECONDS = 15.0
MAX_HYPOTHESIS_RESTARTS = 8  # new distinct failures tolerated per hypothesis target

VerifierExample = Callable[[ft.VerifierEnv, ft.Chooser], str]


@dataclass
class Failure:
    target: str
    signature: str
    count: int
    example: str


@dataclass
class Target:
    name: str
    share: float  # of the campaign's budget
    kind: str  # "loop" | "http-loop" | "hypothesis" | "http-hypothesis"
    example: VerifierExample | None = None
    inputs: int = 0
    seconds: float = 0.0
    rate: float = 0.0  # inputs per second, measured by the calibration
    outcomes: Counter[str] = field(default_factory=Counter)

    def budget(self, total: int) -> int:
        return max(1, int(total * self.share))


TARGETS: Sequence[Target] = (
    Target("verifier-mutations", 0.27, "loop", ft.verifier_mutation_example),
    Target("verifier-garbage", 0.08, "loop", ft.verifier_garbage_example),
    Target("verifier-forgeries", 0.10, "loop", ft.verifier_forgery_example),
    Target("verifier-signed-claims", 0.04, "loop", ft.verifier_signed_claims_example),
    Target("refresh-mutations", 0.13, "loop", ft.refresh_mutation_example),
    Target("refresh-garbage", 0.05, "loop", ft.refresh_garbage_example),
    Target("http", 0.25, "http-loop"),
    Target("hypothesis:verifier-mutations", 0.015, "hypothesis", ft.verifier_mutation_example),
    Target("hypothesis:verifier-garbage", 0.005, "hypothesis", ft.verifier_garbage_example),
    Target("hypothesis:verifier-forgeries", 0.005, "hypothesis", ft.verifier_forgery_example),
    Target(
        "hypothesis:verifier-signed-claims", 0.005, "hypothesis", ft.verifier_signed_claims_example
    ),
    Target("hypothesis:refresh-mutations", 0.01, "hypothesis", ft.refresh_mutation_example),
    Target("hypothesis:refresh-garbage", 0.005, "hypothesis", ft.refresh_garbage_example),
    Target("hypothesis:http", 0.015, "http-hypothesis"),
)


def _fmt_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Campaign:
    def __init__(
        self,
        targets: Sequence[Target],
        budget: int,
        seed_value: int,
        max_seconds: float,
        workdir: Path,
    ) -> None:
        self.targets = targets
        self.total_budget = budget
        self.seed = seed_value
        self.started = time.monotonic()
        self.deadline = self.started + max_seconds
        self.failures: dict[str, Failure] = {}
        self.last_progress = self.started
        self.stopped_early = False
        ft.build_key_directory(workdir / "ring")
        ft.build_key_directory(workdir / "http", ("HS256",))
        self.verifier_env = ft.build_verifier_env(workdir / "ring", seed_value)
        self.http_keys = ft.load_http_keys(workdir / "http", self.verifier_env.tokens)
        self.runner = asyncio.Runner()

    # -- bookkeeping -------------------------------------------------------------------------

    def out_of_time(self) -> bool:
        if time.monotonic() >= self.deadline:
            self.stopped_early = True
        return self.stopped_early

    def record(self, target: Target, error: ft.PropertyFailure, example: str | None = None) -> bool:
        """Count a failure; True if its signature is new (for this target)."""
        key = f"{target.name} | {error.signature}"
        known = self.failures.get(key)
        if known is not None:
            known.count += 1
            return False
        self.failures[key] = Failure(target.name, error.signature, 1, example or str(error))
        print(f"  ! new failure in {target.name}: {error.signature}", flush=True)
        return True

    def known(self, target: Target, error: ft.PropertyFailure) -> bool:
        return f"{target.name} | {error.signature}" in self.failures

    def remaining_estimate(self, current: Target | None = None, done: int = 0) -> float:
        seconds = 0.0
        passed = False
        for target in self.targets:
            if target is current:
                passed = True
                left = target.budget(self.total_budget) - done
            elif passed or current is None:
                left = target.budget(self.total_budget) - target.inputs
            else:
                continue
            seconds += max(0, left) / max(target.rate, 1e-9)
        return seconds

    def progress(self, target: Target, done: int, planned: int) -> None:
        now = time.monotonic()
        if now - self.last_progress < PROGRESS_SECONDS:
            return
        self.last_progress = now
        inputs = sum(t.inputs for t in self.targets)
        print(
            f"  [{_fmt_seconds(now - self.started)}] {target.name}: {done:,}/{planned:,}; "
            f"{inputs:,} inputs in all; ETA {_fmt_seconds(self.remaining_estimate(target, done))}",
            flush=True,
        )

    # -- runners -----------------------------------------------------------------------------

    def run(self, target: Target, count: int, *, calibrating: bool = False) -> None:
        started = time.monotonic()
        before = target.inputs
        if target.kind == "loop":
            self._loop(target, count, calibrating)
        elif target.kind == "http-loop":
            self.runner.run(self._http_loop(target, count, calibrating))
        else:
            self._hypothesis(target, count)
        target.seconds += time.monotonic() - started
        if calibrating:
            elapsed = time.monotonic() - started
            target.rate = max(1.0, (target.inputs - before) / max(elapsed, 1e-6))

    def _chooser(self, target: Target) -> ft.RandomChooser:
        salt = sum(ord(c) for c in target.name) * 7919 + target.inputs
        return ft.RandomChooser(ft.make_rng(self.seed * 1_000_003 + salt))

    def _loop(self, target: Target, count: int, calibrating: bool) -> None:
        assert target.example is not None
        example, env, chooser = target.example, self.verifier_env, self._chooser(target)
        for done in range(count):
            try:
                target.outcomes[example(env, chooser)] += 1
            except ft.PropertyFailure as error:
                self.record(target, error)
                target.outcomes["FAILED"] += 1
            target.inputs += 1
            if done % 512 == 0 and not calibrating:
                self.progress(target, done, count)
                if self.out_of_time():
                    return

    async def _http_loop(self, target: Target, count: int, calibrating: bool) -> None:
        chooser = self._chooser(target)
        done = 0
        while done < count:
            env = await ft.build_http_env(self.http_keys)
            for _ in range(HTTP_ENV_EXAMPLES):
                outcomes: list[str] = []
                try:
                    await ft.http_example(env, chooser, outcomes)
                except ft.PropertyFailure as error:
                    self.record(target, error)
                    outcomes.append("FAILED")
                target.outcomes.update(outcomes)
                target.inputs += len(outcomes)
                done += len(outcomes)
                if done >= count:
                    break
                if not calibrating:
                    self.progress(target, done, count)
                    if self.out_of_time():
                        return

    def _hypothesis(self, target: Target, count: int) -> None:
        """Hypothesis over ``count`` calls; known failures count but do not stop it."""
        start = target.inputs
        for attempt in range(MAX_HYPOTHESIS_RESTARTS):
            left = count - (target.inputs - start)
            if left <= 0 or self.out_of_time():
                return
            prop = self._property(target, left, self.seed * 1009 + attempt + target.inputs)
            try:
                prop()
                return
            except Exception as error:
                # One shrunk failure, or an ExceptionGroup of several distinct ones.
                group = error.exceptions if isinstance(error, ExceptionGroup) else (error,)
                for each in group:
                    notes = "\n".join(getattr(each, "__notes__", []))
                    if not isinstance(each, ft.PropertyFailure):  # a harness bug
                        each = ft.PropertyFailure(
                            "the fuzz harness raised",
                            ft.exception_summary(each, 8),
                            signature=f"the fuzz harness raised {ft.origin(each)}",
                        )
                    self.record(target, each, f"{each}\n{notes}")

    def _property(self, target: Target, examples: int, seed_value: int) -> Callable[[], None]:
        campaign = self

        def check(data: st.DataObject) -> None:
            chooser = ft.HypothesisChooser(data)
            try:
                if target.kind == "http-hypothesis":
                    outcomes = campaign.runner.run(campaign._fresh_http(chooser))
                else:
                    assert target.example is not None
                    outcomes = [target.example(campaign.verifier_env, chooser)]
            except ft.PropertyFailure as error:
                if campaign.known(target, error):
                    campaign.record(target, error)
                    target.outcomes["FAILED (known)"] += 1
                    return
                raise
            finally:
                target.inputs += 1
            target.outcomes.update(outcomes)

        wrapped = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=(Phase.explicit, Phase.generate, Phase.target, Phase.shrink),  # no "explain"
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        )(seed(seed_value)(given(data=st.data())(check)))
        return wrapped

    async def _fresh_http(self, chooser: ft.Chooser) -> list[str]:
        env = await ft.build_http_env(self.http_keys)
        return await ft.http_example(env, chooser)

    def close(self) -> None:
        self.runner.close()


def report(campaign: Campaign) -> int:
    total = sum(t.inputs for t in campaign.targets)
    elapsed = time.monotonic() - campaign.started
    print("\n== inputs per target ==")
    print(f"{'target':36} {'inputs':>11} {'time':>8} {'per s':>8}  outcomes")
    for target in campaign.targets:
        rate = target.inputs / target.seconds if target.seconds else 0.0
        top = ", ".join(f"{name} {n:,}" for name, n in target.outcomes.most_common(6))
        print(
            f"{target.name:36} {target.inputs:>11,} {_fmt_seconds(target.seconds):>8} "
            f"{rate:>8,.0f}  {top}"
        )
    print(f"{'TOTAL':36} {total:>11,} {_fmt_seconds(elapsed):>8}")
    if campaign.stopped_early:
        print("(stopped early: --max-minutes reached before the budget was spent)")
    if not campaign.failures:
        print("\nno property failed")
        return 0
    print(f"\n== {len(campaign.failures)} distinct failures ==")
    for key, failure in campaign.failures.items():
        print(f"\n[{failure.count:,}x] {key}  (first seen in {failure.target})")
        example = failure.example
        print(
            "  "
            + (example if len(example) <= 4000 else example[:4000] + " ...").replace("\n", "\n  ")
        )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--budget", type=int, default=1_000_000, help="inputs in all")
    parser.add_argument("--seed", type=int, default=1, help="campaign seed (reproducible)")
    parser.add_argument("--max-minutes", type=float, default=60.0, help="stop after this long")
    parser.add_argument("--only", default="", help="comma-separated substrings of target names")
    args = parser.parse_args(argv)
    logging.getLogger("jwtsess").setLevel(logging.ERROR)  # audit chatter, not findings

    targets = [
        t
        for t in TARGETS
        if not args.only or any(s.strip() in t.name for s in args.only.split(","))
    ]
    if not targets:
        parser.error(f"no target matches {args.only!r}")
    share = sum(t.share for t in targets)
    for target in targets:
        target.share /= share  # the budget is spread over the chosen targets only

    with tempfile.TemporaryDirectory(prefix="jwtsess-fuzz-") as workdir:
        campaign = Campaign(targets, args.budget, args.seed, args.max_minutes * 60, Path(workdir))
        try:
            print(f"fuzz campaign: budget {args.budget:,} inputs, seed {args.seed}", flush=True)
            for target in targets:  # measure each target's speed on a small slice
                slice_size = min(target.budget(args.budget), 300 if "http" in target.kind else 2000)
                if target.kind.endswith("hypothesis"):
                    slice_size = min(target.budget(args.budget), 60)
                campaign.run(target, slice_size, calibrating=True)
            estimate = campaign.remaining_estimate()
            print(
                f"calibrated; estimated time for the rest: {_fmt_seconds(estimate)} "
                f"(limit {_fmt_seconds(args.max_minutes * 60)})",
                flush=True,
            )
            for target in targets:
                left = target.budget(args.budget) - target.inputs
                if left <= 0 or campaign.out_of_time():
                    continue
                print(
                    f"- {target.name}: {left:,} inputs (~{_fmt_seconds(left / target.rate)})",
                    flush=True,
                )
                campaign.run(target, left)
            return report(campaign)
        finally:
            campaign.close()


if __name__ == "__main__":
    raise SystemExit(main())
