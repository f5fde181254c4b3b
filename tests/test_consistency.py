"""Consistency of multi-turn conversations, scored with the tiny random CLIP through the real loading path:
a sandbox conversation scored end to end (every number checked against open_clip run directly), identical
consecutive images keep everything, and a conversation that failed at turn 2 is scored on its turn 1 only and
says so."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.cli import cli
from harness.providers.base import ErrorKind, GenerationRequest, GenerationResult, ProviderError
from harness.providers.gemini import GeminiProvider
from harness.report.consistency import consistency_sections
from harness.scoring import Backbone, BackboneSpec, ScoreOptions, load_backbone, score_runs
from harness.scoring.consistency import (
    Conversation,
    TurnImage,
    consistency,
    embed_conversations,
    pixel_values,
    score_conversation,
)
from harness.scoring.metrics import PSNR_CAP_DB, preservation
from harness.scoring.plan import text_key
from harness.scoring.summary import ScoreOutput
from harness.stats.turns import Strip, StripTurn
from harness.store import Store
from harness.store import runs as run_store
from harness.timing import TimedHttp
from tests.test_multiturn_run import write_talk_suite
from tests.test_scoring_support import make_tiny_clip, sandbox_run

pytest.importorskip("open_clip")

TARGETS = ["gemini-2.5-flash-image@google", "gemini-2.5-flash-image@fal"]
"""A conversation sent whole each turn (Gemini) and one of chained edits (fal)."""
KEEP = "    preserve: [face identity, background]\n"


def preserving_talk_suite(folder: Path) -> Path:
    """The three-turn talk suite of the multi-turn tests, its second turn told to keep the face and background."""
    suite = write_talk_suite(folder)
    yaml = suite / "talk.yaml"
    text = yaml.read_text(encoding="utf-8")
    yaml.write_text(text.replace("    references: [scarf.png]\n", "    references: [scarf.png]\n" + KEEP),
                    encoding="utf-8")
    return suite


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory)


@pytest.fixture(scope="module")
def backbone(tiny_clip_dir: Path) -> Backbone:
    return load_backbone(BackboneSpec(model=f"local-dir:{tiny_clip_dir}"))


def _embed(backbone: Backbone, path: Path) -> np.ndarray:
    with Image.open(path) as img:
        vector: np.ndarray = backbone.encode_images([backbone.image_tensor(img.convert("RGB"))])[0]
    return vector


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_a_sandbox_conversation_is_scored_turn_by_turn_end_to_end(tmp_path: Path, tiny_clip_dir: Path,
                                                                  backbone: Backbone) -> None:
    suite = preserving_talk_suite(tmp_path / "suite")
    db = tmp_path / "results" / "harness.db"
    run_id = sandbox_run(db, suite, TARGETS)
    args = ["score", run_id, "--model", f"local-dir:{tiny_clip_dir}", "--json", "--db", str(db)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    ScoreOutput.model_validate(doc)
    result = doc["consistency"]
    assert result["schema_version"] == 1 and not result["problems"]
    talks = result["conversations"]
    assert sorted((c["target"], c["variant"]) for c in talks) == sorted(
        (t, v) for t in TARGETS for v in ("default", "terse"))
    with Store.open(db, readonly=True) as store:
        for talk in talks:
            assert talk["completed"] and talk["scored_turns"] == 3 and talk["note"] is None
            steps = talk["steps"]
            paths = [store.image_path(s["image_sha256"], s["image_ext"]) for s in steps]
            vectors = [_embed(backbone, p) for p in paths]
            start = store.image_path(*_start(store, run_id))
            assert steps[0]["clip_i_first"] is None
            assert steps[0]["clip_i_prev"] == pytest.approx(_cos(vectors[0], _embed(backbone, start)), abs=1e-4)
            for k in (1, 2):
                assert steps[k]["clip_i_first"] == pytest.approx(_cos(vectors[k], vectors[0]), abs=1e-4)
                assert steps[k]["clip_i_prev"] == pytest.approx(_cos(vectors[k], vectors[k - 1]), abs=1e-4)
            prompt = "Smile" if talk["variant"] == "terse" else "Make him smile"
            assert steps[0]["clip_t_turn"] == pytest.approx(
                _cos(vectors[0], backbone.encode_texts([prompt])[0]), abs=1e-4)
            assert [s["preserve"] for s in steps] == [[], ["face identity", "background"], []]
            assert [s["l1_prev"] is None for s in steps] == [True, False, True], "pixels only where the turn keeps"
            assert 0 < steps[1]["l1_prev"] < 1 and 0 < steps[1]["psnr_prev"] < PSNR_CAP_DB
    by_turn = {(r["target"], r["turn"], r["metric"]): r for r in result["turns"]}
    assert {(t, k) for t, k, _ in by_turn} == {(t, k) for t in TARGETS for k in (1, 2, 3)}
    row = by_turn[(TARGETS[0], 3, "clip_i_first")]
    assert row["n_images"] == 2 and row["n_prompts"] == 2 and row["higher_is_better"]
    mine = [c["steps"][2]["clip_i_first"] for c in talks if c["target"] == TARGETS[0]]
    assert row["mean"] == pytest.approx(float(np.mean(mine)))
    assert row["low"] is not None and row["low"] <= row["mean"] <= row["high"]
    assert (TARGETS[0], 2, "l1_prev") in by_turn and (TARGETS[0], 3, "l1_prev") not in by_turn
    seq = {(r["target"], r["metric"], r["aggregate"]): r for r in result["sequences"]}
    drift = seq[(TARGETS[0], "clip_i_first", "last")]
    assert drift["n_sequences"] == 2 and drift["n_incomplete"] == 0
    assert drift["mean"] == pytest.approx(float(np.mean(mine)))
    worst = seq[(TARGETS[0], "clip_t_turn", "worst")]
    assert worst["mean"] == pytest.approx(float(np.mean(
        [min(s["clip_t_turn"] for s in c["steps"]) for c in talks if c["target"] == TARGETS[0]])))
    change = seq[(TARGETS[0], "clip_t_turn", "change")]
    assert change["mean"] == pytest.approx(float(np.mean(
        [c["steps"][2]["clip_t_turn"] - c["steps"][0]["clip_t_turn"] for c in talks if c["target"] == TARGETS[0]])))

    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "embedded 0 turn image(s) and 0 instruction(s)" in again.stderr, "the embedding cache serves a re-score"
    assert json.loads(again.stdout)["consistency"] == result
    table = CliRunner().invoke(cli, [*args[:-3], "--db", str(db)])
    assert table.exit_code == 0, table.output
    assert "consistency by turn" in table.stdout and "consistency by conversation" in table.stdout

    with Store.open(db, readonly=True) as store:
        (section,) = consistency_sections(store, [run_store.get_run(store, run_id)])
    traces = {t["name"]: t for t in section.figure["data"]}
    assert set(traces) == set(TARGETS) and not section.notes
    for target, trace in traces.items():
        assert trace["x"] == [1, 2, 3] and trace["y"][0] == 1.0, "turn 1 is itself"
        assert trace["y"][1:] == [by_turn[(target, k, "clip_i_first")]["mean"] for k in (2, 3)]
    assert traces[TARGETS[0]]["error_y"]["arrayminus"][2] == pytest.approx(row["mean"] - row["low"])


def _start(store: Store, run_id: str) -> tuple[str, str]:
    (talk,) = run_store.run_challenges(store, run_id)
    return str(talk["references"][0]["sha256"]), str(talk["references"][0]["ext"])


def test_a_conversation_that_failed_at_turn_2_scores_its_completed_turn_and_says_so(
        tmp_path: Path, backbone: Backbone, monkeypatch: pytest.MonkeyPatch) -> None:
    original = GeminiProvider.exchange

    async def refuse_the_scarf(self: GeminiProvider, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        if len(request.history) == 1 and request.history[0].prompt == "Make him smile":
            raise ProviderError(ErrorKind.REFUSED, "output blocked (IMAGE_SAFETY)", http_status=200,
                                provider_code="IMAGE_SAFETY")
        return await original(self, request, http)

    monkeypatch.setattr(GeminiProvider, "exchange", refuse_the_scarf)
    suite = preserving_talk_suite(tmp_path / "suite")
    db = tmp_path / "results" / "harness.db"
    run_id = sandbox_run(db, suite, TARGETS[:1])
    with Store.open(db) as store:
        assert consistency_sections(store, [run_store.get_run(store, run_id)]) == [], "nothing scored yet"
        score_runs(store, [run_id], backbone, ScoreOptions(batch_size=4))
        counts = embed_conversations(store, [run_id], backbone, ScoreOptions(batch_size=4))
        result = consistency(store, [run_id], backbone.info.id)
    assert counts.images_embedded == 3 and not counts.failures, "turns 1-2 of the terse talk, turn 1 of the other"
    assert result is not None and not result.problems
    failed = next(c for c in result.conversations if c.variant == "default")
    whole = next(c for c in result.conversations if c.variant == "terse")
    assert (failed.completed, failed.failed_at_turn, failed.scored_turns, failed.turns) == (False, 2, 1, 3)
    assert failed.note == "1 of 3 turns scored: the conversation failed at turn 2"
    assert [s.turn for s in failed.steps] == [1] and failed.steps[0].clip_t_turn is not None
    assert (whole.completed, whole.scored_turns, whole.note) == (True, 3, None)
    assert {(r.turn, r.n_images) for r in result.turns if r.metric == "clip_t_turn"} == {(1, 2), (2, 1), (3, 1)}
    seq = {(r.metric, r.aggregate): r for r in result.sequences}
    assert (seq[("clip_t_turn", "mean")].n_sequences, seq[("clip_t_turn", "mean")].n_incomplete) == (2, 1)
    assert (seq[("clip_t_turn", "last")].n_sequences, seq[("clip_t_turn", "last")].n_incomplete) == (1, 0), \
        "a conversation that stopped early gives no last turn"
    assert seq[("clip_i_first", "last")].n_sequences == 1
    with Store.open(db, readonly=True) as store:
        (section,) = consistency_sections(store, [run_store.get_run(store, run_id)])
    assert section.notes == [f"{TARGETS[0]} · smile-scarf-night/default sample 0: {failed.note}"]


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _strip(turns: int) -> Strip:
    steps = [StripTurn(turn=k, prompt="keep it", preserve=["everything"], ok=True, attempts=1, latency_ms=1.0,
                       image_sha256=f"t{k}", image_ext="png", error_kind=None, error_message=None)
             for k in range(1, turns + 1)]
    return Strip(run_id="r", challenge_id="c", variant="default", target="m@p", sample=0, turns=turns, completed=True,
                 failed_at_turn=None, time_to_final_image_ms=None, cost_usd=0.0, steps=steps)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(8, 48), height=st.integers(8, 48), seed=st.integers(0, 2**32 - 1),
       changed=st.integers(1, 255))
def test_identical_consecutive_images_keep_clip_i_at_one_and_preservation_perfect(
        tmp_path: Path, backbone: Backbone, width: int, height: int, seed: int, changed: int) -> None:
    rng = np.random.default_rng(seed)
    start = rng.integers(0, 256, size=(height, width, 3))
    other = start.copy()
    other[0, 0, 0] = (int(other[0, 0, 0]) + changed) % 256
    files = {"t1": _png(start), "t2": _png(start), "t3": _png(other)}
    for name, data in files.items():
        (tmp_path / f"{name}.png").write_bytes(data)
    conv = Conversation(_strip(3), None, tuple(TurnImage(k, f"t{k}", "png", "keep it", ("everything",))
                                               for k in (1, 2, 3)))
    images = {name: _embed(backbone, tmp_path / f"{name}.png") for name in files}
    texts = {text_key("keep it"): backbone.encode_texts(["keep it"])[0]}
    problems: list[str] = []
    compared = pixel_values([conv], lambda sha, ext: tmp_path / f"{sha}.{ext}", workers=2)
    record = score_conversation(conv, images, texts, compared, problems)
    assert not problems
    same, moved = record.steps[1], record.steps[2]
    assert same.clip_i_prev == pytest.approx(1.0, abs=1e-5) and same.clip_i_first == pytest.approx(1.0, abs=1e-5)
    assert same.l1_prev == 0.0 and same.psnr_prev == PSNR_CAP_DB
    assert moved.l1_prev is not None and moved.l1_prev > 0 and moved.psnr_prev is not None
    assert moved.psnr_prev < PSNR_CAP_DB and math.isfinite(moved.psnr_prev)
    unit = 1.0 / 255.0
    masked = preservation(other.astype(np.float32) * unit, start.astype(np.float32) * unit,
                          np.ones((height, width), dtype=bool))
    assert masked is not None
    assert moved.l1_prev == pytest.approx(masked["l1_outside_mask"], rel=1e-5)
    assert moved.psnr_prev == pytest.approx(masked["psnr_outside_mask"], rel=1e-5), "the inpainting formulas"
    assert record.steps[0].l1_prev is None and record.steps[0].clip_i_prev is None, "turn 1 has nothing before it"


def test_an_unreadable_turn_image_is_named_the_other_turns_are_scored_and_the_exit_says_so(
        tmp_path: Path, tiny_clip_dir: Path) -> None:
    suite = preserving_talk_suite(tmp_path / "suite")
    db = tmp_path / "results" / "harness.db"
    run_id = sandbox_run(db, suite, TARGETS[:1])
    with Store.open(db, readonly=True) as store:
        outputs = run_store.outputs_frame(store, [run_id], final_only=False)
        middle = outputs[outputs["variant"] == "default"].sort_values("attempt_id").iloc[1]  # turn 2 of 3
        assert middle["sha256"] not in set(outputs[outputs["variant"] == "terse"]["sha256"])
        path = store.image_path(str(middle["sha256"]), str(middle["ext"]))
    path.write_bytes(b"not an image")
    shown = CliRunner().invoke(cli, ["score", run_id, "--model", f"local-dir:{tiny_clip_dir}", "--json",
                                     "--db", str(db)])
    assert shown.exit_code == 1, shown.output
    assert f"conversation image {middle['sha256']}: cannot read {path}" in " ".join(shown.stderr.split())
    talks = {c["variant"]: c for c in json.loads(shown.stdout)["consistency"]["conversations"]}
    broken = next(s for s in talks["default"]["steps"] if s["image_sha256"] == middle["sha256"])
    assert broken["turn"] == 2 and broken["clip_i_prev"] is None and broken["clip_t_turn"] is None
    assert broken["l1_prev"] is None, "its pixels cannot be compared either"
    last = talks["default"]["steps"][2]
    assert last["clip_i_prev"] is None and last["clip_i_first"] is not None
    assert all(s["clip_t_turn"] is not None for s in talks["terse"]["steps"]), "the other conversation is whole"
