"""`harness demo`: benchmark over simulated providers, simulated votes, ratings and the report, in one command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.demo import DEMO_SWEEP_LEVELS, DEMO_SWEEP_REQUESTS, DEMO_SWEEP_TARGET, DEMO_TARGETS
from harness.store import Store
from harness.store import runs as run_store
from harness.store.votes import battles_frame
from harness.sweep import sweep_levels
from harness.sweep.spec import attached_sweep_id

ROOT = Path(__file__).resolve().parents[1]
PICK = ("paladin-portrait", "thick-hair-edit", "caffe-florian-logo", "astronaut-and-cat-in-space",
        "inpaint-cat-glasses")


def small_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "challenges" / "starter"
    suite.mkdir(parents=True)
    shutil.copytree(ROOT / "challenges" / "assets", tmp_path / "challenges" / "assets")
    for name in PICK:
        shutil.copy(ROOT / "challenges" / "starter" / f"{name}.yaml", suite)
    return suite


def test_demo_runs_every_stage_and_prints_the_report_path(tmp_path: Path) -> None:
    db = tmp_path / "results" / "harness.db"
    out = tmp_path / "site"
    env = {**os.environ, "CI": "true", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "harness", "demo", "--challenges", str(small_suite(tmp_path)),
                           "--db", str(db), "--out", str(out), "--time-scale", "0.01", "--samples", "1",
                           "--votes", "400"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    index = Path(proc.stdout.strip().splitlines()[-1])
    assert index == (out / "index.html").resolve() and index.is_file()

    with Store.open(db, readonly=True) as store:
        runs = run_store.list_runs(store)
        (run,) = [r for r in runs if r.label == "demo"]
        targets = {t["name"] for t in run_store.run_targets(store, run.id)}
        battles = battles_frame(store, run_ids=[run.id])
        sweep = sweep_levels(store, attached_sweep_id(run.id))
    assert targets == set(DEMO_TARGETS) and len(targets) >= 6
    assert len({t.split("@")[0] for t in targets}) >= 4, "several models"
    assert sum(t.startswith("gemini-2.5-flash-image@") for t in targets) >= 3, "one model, several providers"
    assert run.sandbox and run.status == "finished"
    assert len(battles) == 400 and set(battles["source"]) == {"simulated"}
    assert len(runs) == 1 + len(sweep), "the demo's run and its sweep's levels, nothing else"
    assert [level.level for level in sweep] == list(DEMO_SWEEP_LEVELS), "a small sweep, every level run"
    assert {level.target for level in sweep} == {DEMO_SWEEP_TARGET}
    assert all(level.n == DEMO_SWEEP_REQUESTS and level.throughput_per_s for level in sweep)

    html = index.read_text(encoding="utf-8")
    assert "Sandbox data" in html and "Simulated voters" in html
    assert "Recovery check" in html
    assert 'id="sweeps"' in html and attached_sweep_id(run.id) in html, "the report shows the sweep"
    assert 'id="by-model"' in html, "and one model across its providers"
    assert "goodput" in html, "and the provider table's goodput within the demo's objective"
    assert f"sweep {attached_sweep_id(run.id)}: {DEMO_SWEEP_TARGET}" in proc.stdout
    assert "goodput" in proc.stdout and "one model, every provider" in proc.stdout
    assert "sandbox judge" in proc.stderr and " verdicts on " in proc.stderr
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["simulated_votes"] is True and board["votes"] == 400
    assert {r["model"] for r in board["rows"]} <= {t.split("@")[0] for t in targets}
    assert "CLIP scores skipped" in proc.stderr and "local-dir:" in proc.stderr
    assert "no CLIP scores" in html
    assert "fidelity: measured − intended" in proc.stderr, "the demo judges its own figures"
    assert "time scale 0.01 asks the client for about" in proc.stderr, "a too-small scale is called out first"
