"""The regression gate's false-alarm rate on real sandbox runs, and its power against a 1.5x slower profile.

200 pairs of short runs of one configuration (one OpenAI-Images target, median 2 s / p95 4 s, no faults, time
scale 0.025 so the median is 50 ms; 20 requests per run at 10 in flight; 256x256 images so the client's own
work stays far below its budget) go through the real ``harness compare`` command, each run measured by the
real runner into one store, the two runs of a pair one after the other (so a change of load between them is
part of what the gate sees). The alarm count must have a one-sided 95 % Clopper-Pearson upper bound of at
most twice the gate's alpha. Then a profile 1.5x slower (median 3 s / p95 6 s) must fail ``compare`` against
the baseline every time, at 90 requests a side.

Every pair's verdict is printed (medians, change, one-sided bound). Figures are judged by their interval, not
by one lucky or unlucky round; wall time is printed for the record (about 3 minutes on two shared cores).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scipy import stats

from harness.challenges import Challenge, load
from harness.cli import cli
from harness.gate import GateConfig
from harness.providers.registry import get_protocol
from harness.run import RunOptions, start_run
from harness.sandbox.profiles import DEFAULT_PROFILES, Lognormal, ProviderProfile
from harness.sandbox.servers import SandboxServer
from harness.sandbox.simulation import SandboxSettings
from harness.targets import Credential, Target, load_targets, resolve_keys

PAIRS = 200
SLOW_PAIRS = 3
REQUESTS = 20
SLOW_REQUESTS = 90
CONCURRENCY = 10
TIME_SCALE = 0.025
CHALLENGES = 10
ALPHA = GateConfig().alpha


def write_suite(folder: Path) -> list[Challenge]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suite.yaml").write_text("challenges:\n" + "".join(
        f"  - id: c{i}\n    title: C{i}\n    category: illustration\n    kind: text-to-image\n"
        f"    params: {{size: 256x256}}\n    prompt: \"a small study number {i}\"\n" for i in range(CHALLENGES)),
        encoding="utf-8")
    return load(folder)


def profiles(median_s: float) -> dict[str, ProviderProfile]:
    openai = DEFAULT_PROFILES["openai"].model_copy(update={
        "faults": {}, "latency": Lognormal(median_s=median_s, p95_s=2 * median_s)})
    return {**DEFAULT_PROFILES, "openai": openai}


@dataclass
class Bench:
    root: Path
    db: Path
    suite: list[Challenge]
    servers: dict[str, SandboxServer]
    targets: dict[str, tuple[Target, dict[str, Credential]]]

    def run(self, which: str, seed: int, requests: int = REQUESTS) -> str:
        target, keys = self.targets[which]
        options = RunOptions(samples=requests // CHALLENGES, concurrency=CONCURRENCY, seed=seed,
                             respect_limits=False, label=f"bench-{which}")
        return start_run(self.db, self.suite, [target], keys, options).run_id

    def compare(self, base: str, cand: str) -> tuple[int, dict[str, Any]]:
        result = CliRunner().invoke(cli, ["compare", base, cand, "--json", "--db", str(self.db)])
        assert result.exit_code in (0, 1), result.output
        return result.exit_code, json.loads(result.output)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    root = tmp_path_factory.mktemp("gate-bench")
    servers = {name: SandboxServer(settings=SandboxSettings(time_scale=TIME_SCALE, faults=False, seed=i),
                                   profiles=profiles(median)).start()
               for i, (name, median) in enumerate((("base", 2.0), ("slow", 3.0)))}
    try:
        base = load_targets()["gpt-image-1@openai"]
        targets = {}
        for name, server in servers.items():
            url = get_protocol(base.protocol).sandbox_base_url(server.root, base.options)
            target = base.model_copy(update={"name": "dall-e-2@bench", "model": "dall-e-2", "base_url": url,
                                             "allow_private_network": True})
            targets[name] = (target, resolve_keys([target], sandbox=True))
        yield Bench(root, root / "harness.db", write_suite(root / "suite"), servers, targets)
    finally:
        for server in servers.values():
            server.stop()


def describe(doc: dict[str, Any]) -> str:
    p50 = next((c for c in doc["checks"] if c["check"] == "latency_p50"), None)
    if p50 is None or p50["change"] is None:
        return "p50 n/a"
    return (f"p50 {p50['baseline']:6.1f} -> {p50['candidate']:6.1f} ms ({100 * p50['change']:+5.1f} %, "
            f"bound {100 * p50['bound']:+5.1f} %)")


def upper_bound(alarms: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a binomial proportion."""
    return 1.0 if alarms >= n else float(stats.beta.ppf(confidence, alarms + 1, n - alarms))


@pytest.mark.timeout(900)
def test_same_configuration_pairs_rarely_alarm_and_a_slower_profile_always_does(bench: Bench) -> None:
    started = time.monotonic()
    alarms = 0
    for i in range(PAIRS):
        code, doc = bench.compare(bench.run("base", 2 * i), bench.run("base", 2 * i + 1))
        alarms += code == 1
        print(f"pair {i + 1:3d}: {'ALARM' if code else 'pass '} {describe(doc)}  (alarms so far {alarms})")
    rate, bound = alarms / PAIRS, upper_bound(alarms, PAIRS)
    same_s = time.monotonic() - started
    print(f"false alarms: {alarms}/{PAIRS} = {100 * rate:.1f} %, one-sided 95 % upper bound {100 * bound:.1f} % "
          f"(limit 2 alpha = {100 * 2 * ALPHA:g} %); {same_s:.0f} s")
    caught = 0
    for i in range(SLOW_PAIRS):
        base = bench.run("base", 10_000 + i, SLOW_REQUESTS)
        code, doc = bench.compare(base, bench.run("slow", 20_000 + i, SLOW_REQUESTS))
        caught += code == 1
        print(f"slow pair {i + 1}: {'REGRESSION' if code else 'missed    '} {describe(doc)}")
    print(f"1.5x slower profile caught {caught}/{SLOW_PAIRS}; bench wall time {time.monotonic() - started:.0f} s")
    assert bound <= 2 * ALPHA, f"false-alarm upper bound {bound:.3f} above {2 * ALPHA}"
    assert caught == SLOW_PAIRS
