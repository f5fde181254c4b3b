"""The simulated panel can look at the sandbox's pictures: its votes follow what the pixels show, not the
models' names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.challenges import load
from harness.errors import ConfigError
from harness.quality.readings import pixel_looks, read_outputs
from harness.ratings.battles import aggregate
from harness.ratings.bradley_terry import fit
from harness.run import RunOptions, start_run
from harness.sandbox.imagery import render_probability, simulated_model
from harness.sandbox.voters import PanelSettings, VoterPanel
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import load_targets, resolve_keys, select

TARGETS = ["gemini-3-pro-image-preview@google", "gpt-image-1@openai", "sd-3.5-large@replicate"]


def outputs(n: int = 40) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    for i in range(n):
        for model in ("gemini-3-pro-image-preview", "sd-3.5-large"):
            rows.append({"attempt_id": len(rows) + 1, "run_id": "r", "challenge_id": f"c{i}", "variant": "default",
                         "target": f"{model}@x", "model": model, "sha256": f"{model}-{i}"})
    return pd.DataFrame(rows)


def test_voters_who_look_prefer_the_better_picture_even_from_the_weaker_model() -> None:
    frame = outputs()
    looks = {sha: (0.9 if sha.startswith("sd-") else 0.2) for sha in frame["sha256"]}
    panel = VoterPanel(PanelSettings(noisy_fraction=0.0, position_bias=0.0, tie_rate=0.0), seed=1)
    votes = panel.cast(frame, 600, looks=looks)
    sd_wins = sum((v.outcome == "left") == (v.left_model == "sd-3.5-large") for v in votes)
    assert sd_wins / len(votes) > 0.8
    blind = VoterPanel(PanelSettings(noisy_fraction=0.0, position_bias=0.0, tie_rate=0.0), seed=1).cast(frame, 600)
    assert sum((v.outcome == "left") == (v.left_model == "sd-3.5-large") for v in blind) / 600 < 0.3


def test_a_panel_asked_to_look_needs_every_picture_s_quality() -> None:
    frame = outputs(2)
    with pytest.raises(ConfigError, match="no pixel quality for 1 output"):
        VoterPanel().cast(frame, 10, looks={sha: 0.5 for sha in frame["sha256"][:-1]})
    with pytest.raises(ConfigError, match="perception_sd"):
        PanelSettings(perception_sd=-1.0)


@pytest.fixture(scope="module")
def sandbox_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from tests.conftest import mask_png, photo_like

    suite = tmp_path_factory.mktemp("suite")
    (suite / "a.png").write_bytes(photo_like((96, 64), 1))
    (suite / "mask.png").write_bytes(mask_png((96, 64)))
    prompts = ["a red kite over green hills with a wooden windmill and white sheep",
               "a blue teapot beside golden lemons on a marble table with linen napkins",
               "a purple octopus reading maps inside a brass submarine cabin"]
    body = "challenges:\n" + "".join(
        f"  - id: t{i}\n    title: T{i}\n    category: illustration\n    kind: text-to-image\n"
        f"    prompt: \"{p}\"\n    variants: {{other: \"{p} at night\"}}\n" for i, p in enumerate(prompts))
    body += ("  - id: e\n    title: E\n    category: portraiture\n    kind: edit\n"
             "    prompt: add a yellow kite and orange balloons\n    references: [a.png]\n")
    (suite / "suite.yaml").write_text(body, encoding="utf-8")
    db = tmp_path_factory.mktemp("store") / "harness.db"
    chosen = select(load_targets(), TARGETS)
    run = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True),
                    RunOptions(sandbox=True, time_scale=0.01, samples=3, sandbox_faults=False,
                               respect_limits=False))
    return db, run.run_id


def test_pictures_of_a_sandboxed_run_carry_their_models_strength(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    with Store.open(db, readonly=True) as store:
        frame = run_store.outputs_frame(store, [run_id])
        readings = read_outputs(store, frame)
    assert len(readings) == frame["sha256"].nunique() > 0
    share: dict[str, list[float]] = {}
    for row in frame.itertuples():
        r = readings[str(row.sha256)]
        if r.share is not None:
            share.setdefault(str(simulated_model(str(row.model))), []).append(r.share)
    means = {m: sum(v) / len(v) for m, v in share.items()}
    assert means["gemini-3-pro-image-preview"] > means["sd-3.5-large"]
    assert means["gemini-3-pro-image-preview"] > render_probability("gemini-3-pro-image-preview") - 0.3


def test_a_panel_looking_at_a_sandboxed_run_ranks_the_models_by_strength(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    with Store.open(db, readonly=True) as store:
        frame = run_store.outputs_frame(store, [run_id])
        looks = pixel_looks(store, frame)
    votes = VoterPanel(PanelSettings(noisy_fraction=0.0), seed=2).cast(frame, 1500, looks=looks)
    battles = pd.DataFrame({"model_a": [v.left_model for v in votes], "model_b": [v.right_model for v in votes],
                            "winner": [{"left": "model_a", "right": "model_b"}.get(v.outcome, "tie") for v in votes]})
    board = fit(aggregate(battles))
    order = [board.models[i] for i in board.ratings.argsort()[::-1]]
    assert order == ["gemini-3-pro-image-preview", "gpt-image-1", "sd-3.5-large"]
