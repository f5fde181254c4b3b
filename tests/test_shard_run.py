"""One run filled by three hosts: three real `harness run --shard i/3 --run-id R --region rI` processes (each
playing its own host through HARNESS_RUN_HOST) share one store, one of them is killed with SIGKILL mid-run
and finished with `--resume` on its host. The run ends complete, no request has two final attempts, every
attempt carries its shard's host and region, and `harness stats R --by region` shows the three regions.

Run against a SQLite file and a real PostgreSQL server (a throwaway cluster, see tests/pg.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.store import Store, StoreError

SLOW = "openai: {faults: {}, rpm: null, latency: {median_s: 10.0, p95_s: 12.0}}"
"""Ten simulated seconds a request, scaled by 0.02: long enough to kill a shard mid-run."""
SHARDS = 3
SAMPLES = 8
RUN_ID = "shared-20261205"


def _env(shard: int) -> dict[str, str]:
    return {**os.environ, "CI": "true", "HARNESS_RUN_HOST": f"host-{shard}"}


def _harness(*args: str, shard: int = 0) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=_env(shard),
                          timeout=180)
    return done.returncode, done.stdout, done.stderr


def _attempts(url: str) -> list[tuple[object, ...]]:
    with Store.open(url, readonly=True) as store:
        return [tuple(r) for r in store.conn.execute(
            "SELECT challenge_id, variant, target, sample, attempt, final, host, region FROM attempts"
            " WHERE run_id=? ORDER BY id", (RUN_ID,))]


def _start(shard: int, suite: Path, profile: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--challenges", str(suite), "--target", "gpt-image-1@openai",
         "--sandbox", "--sandbox-profile", str(profile), "--samples", str(SAMPLES), "--concurrency", "1",
         "--time-scale", "0.02", "--shard", f"{shard}/{SHARDS}", "--region", f"r{shard}", "--run-id", RUN_ID,
         "--db", url, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(shard))


def _status(url: str) -> dict[str, object]:
    code, out, err = _harness("runs", "--json", "--db", url)
    assert code == 0, err
    (listed,) = json.loads(out)
    assert isinstance(listed, dict)
    return listed


def test_three_hosts_fill_one_run_and_a_killed_shard_resumes_on_its_host(
        store_url: str, tiny_suite: Path, tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(SLOW, encoding="utf-8")
    procs = {i: _start(i, tiny_suite, profile, store_url) for i in range(SHARDS)}
    try:
        deadline = time.monotonic() + 120
        while True:  # kill shard 1 once it has recorded two attempts of its own
            assert procs[1].poll() is None, f"shard 1 ended before the test could act: {procs[1].communicate()}"
            assert time.monotonic() < deadline, "shard 1 never recorded two attempts"
            time.sleep(0.1)
            try:
                if sum(1 for a in _attempts(store_url) if a[6] == "host-1") >= 2:
                    break
            except StoreError:
                continue
        os.kill(procs[1].pid, signal.SIGKILL)
        procs[1].communicate()
        for i in (0, 2):
            out, err = procs[i].communicate(timeout=150)
            assert procs[i].returncode == 0, err
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    killed = _attempts(store_url)
    assert {a[6] for a in killed} == {"host-0", "host-1", "host-2"}
    deadline = time.monotonic() + 15
    while (listed := _status(store_url))["status"] != "interrupted" and time.monotonic() < deadline:
        time.sleep(0.2)  # the server notices the killed shard's connection is gone
    assert listed["status"] == "interrupted" and listed["requests_done"] < listed["requests_planned"]

    code, out, err = _harness("run", "--resume", RUN_ID, "--db", store_url, "--json", shard=1)
    assert code == 0, err
    after = _attempts(store_url)
    assert after[: len(killed)] == killed, "nothing recorded before the kill was lost or changed"
    finals = [a[:4] for a in after if a[5]]
    listed = _status(store_url)
    assert listed["status"] == "finished"
    assert len(finals) == len(set(finals)) == listed["requests_planned"] == listed["requests_done"]

    assert {(a[6], a[7]) for a in after} == {(f"host-{i}", f"r{i}") for i in range(SHARDS)}
    regions: dict[object, set[tuple[object, ...]]] = {}
    for a in after:
        regions.setdefault(a[7], set()).add(a[:4])
    assert sum(len(keys) for keys in regions.values()) == len(set(finals)), "each request belongs to one shard"

    code, out, err = _harness("stats", RUN_ID, "--by", "region", "--json", "--db", store_url)
    assert code == 0, err
    views = json.loads(out)
    assert [(v["region"], v["hosts"]) for v in views] == [(f"r{i}", [f"host-{i}"]) for i in range(SHARDS)]
    assert [v["requests"] for v in views] == [len(regions[f"r{i}"]) for i in range(SHARDS)]
    assert all(v["rows"][0]["target"] == "gpt-image-1@openai" and v["rows"][0]["n"] == v["requests"]
               for v in views)
    code, out, err = _harness("stats", RUN_ID, "--by", "region", "--db", store_url)
    assert code == 0, err
    assert all(f"region r{i}" in out and f"hosts host-{i}" in out for i in range(SHARDS))
