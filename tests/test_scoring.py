"""``harness score`` on a real sandbox run of every challenge kind, with the tiny random CLIP.

Every stored number is checked against a direct computation with open_clip itself (the same local-dir
model, its own preprocessing and tokenizer, one image at a time), so batching, caching, cropping and the
metric formulas cannot drift from the definitions in :mod:`harness.scoring.metrics`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from harness.cli import cli
from harness.scoring import Backbone, BackboneSpec, ScoreOptions, load_backbone, score_runs
from harness.scoring.metrics import METRICS, PSNR_CAP_DB
from harness.scoring.pipeline import decode_pool, embed_image_batches
from harness.scoring.plan import ImageSource
from harness.scoring.summary import summarise_scores, summary_columns
from harness.store import Store
from harness.store import runs as run_store
from harness.store.scores import SCORE_FRAME_COLUMNS, embedding_count, latest_scorer, scores_frame
from tests.test_scoring_support import (
    CAPTION_METRICS,
    CHUNK_METRICS,
    KIND_METRICS,
    LONG_PROMPT,
    LONG_SENTENCES,
    TINY_CFG,
    make_tiny_clip,
    sandbox_run,
    save_local_dir,
    write_suite,
)

GPT = "gpt-image-1@openai"
GPT15 = "gpt-image-1.5@openai"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A store with two sandbox runs of the all-kinds suite: two samples each, two different targets."""
    root = tmp_path_factory.mktemp("scoring-store")
    suite = write_suite(root / "suite")
    db = root / "results" / "harness.db"
    first = sandbox_run(db, suite, [GPT], samples=2)
    second = sandbox_run(db, suite, [GPT15], samples=2)
    return db, first, second


@pytest.fixture
def store_copy(pristine: tuple[Path, str, str], tmp_path: Path) -> tuple[Path, str, str]:
    """A private copy of the pristine store (database and images) for one test."""
    db, first, second = pristine
    shutil.copytree(db.parent, tmp_path / "results")
    return tmp_path / "results" / "harness.db", first, second


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory)


@pytest.fixture(scope="module")
def backbone(tiny_clip_dir: Path) -> Backbone:
    return load_backbone(BackboneSpec(model=f"local-dir:{tiny_clip_dir}"))


class Direct:
    """open_clip used by hand: one image or text at a time, no harness code involved."""

    def __init__(self, folder: Path) -> None:
        import open_clip

        self.model, _, self.preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")

    def image(self, image: Image.Image) -> np.ndarray[Any, Any]:
        import torch

        with torch.inference_mode():
            f = self.model.encode_image(self.preprocess(image.convert("RGB")).unsqueeze(0))
        return np.asarray((f / f.norm(dim=-1, keepdim=True)).numpy()[0])

    def text(self, text: str) -> np.ndarray[Any, Any]:
        import torch

        with torch.inference_mode():
            f = self.model.encode_text(self.tokenizer([text]))
        return np.asarray((f / f.norm(dim=-1, keepdim=True)).numpy()[0])


def cos(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def expected_metrics(direct: Direct, store: Store, row: dict[str, Any], challenge: dict[str, Any]
                     ) -> dict[str, float]:
    """Every metric of one output, computed from the definitions."""
    def stored(meta: dict[str, Any]) -> Path:
        return store.image_path(meta["sha256"], meta["ext"])

    out_img = Image.open(stored(row)).convert("RGB")
    out = direct.image(out_img)
    prompt = challenge["prompts"][row["variant"]]
    c = cos(out, direct.text(prompt))
    want = {"clip_t_cos": c, "clip_t_100": 100 * c, "clipscore": 2.5 * max(c, 0.0)}
    if prompt == LONG_PROMPT:
        chunk = [cos(out, direct.text(s)) for s in LONG_SENTENCES]
        want |= {"clip_t_chunk_mean": float(np.mean(chunk)), "clip_t_chunk_min": min(chunk)}
    refs = [Image.open(stored(r)) for r in challenge["references"]]
    kind = challenge["kind"]
    if kind == "edit":
        src = direct.image(refs[0])
        want["clip_i_source"] = cos(out, src)
        if challenge["captions"]:
            t_src, t_tgt = direct.text(challenge["captions"]["source"]), direct.text(challenge["captions"]["target"])
            want["clip_t_caption"] = cos(out, t_tgt)
            want["clip_direction"] = cos(out - src, t_tgt - t_src)
    elif kind == "compose":
        values = [cos(out, direct.image(r)) for r in refs]
        want |= {"clip_i_ref_mean": float(np.mean(values)), "clip_i_ref_min": min(values)}
    elif kind == "inpaint":
        mask = np.asarray(Image.open(stored(challenge["mask"])).convert("L")) >= 128
        ys, xs = np.nonzero(mask)
        sx, sy = out_img.width / mask.shape[1], out_img.height / mask.shape[0]
        box = (math.floor(xs.min() * sx), math.floor(ys.min() * sy), math.ceil((xs.max() + 1) * sx),
               math.ceil((ys.max() + 1) * sy))
        want["clip_t_mask_crop"] = cos(direct.image(out_img.crop(box)), direct.text(prompt))
        source = np.asarray(refs[0].convert("RGB"), dtype=np.float64) / 255
        resized = np.asarray(out_img.resize(refs[0].size, Image.Resampling.BICUBIC), dtype=np.float64) / 255
        diff = (resized - source)[~mask]
        mse = float((diff ** 2).mean())
        want["l1_outside_mask"] = float(np.abs(diff).mean())
        want["psnr_outside_mask"] = min(PSNR_CAP_DB, 10 * math.log10(1 / mse)) if mse > 0 else PSNR_CAP_DB
    return want


def test_every_score_equals_a_direct_open_clip_computation(store_copy: tuple[Path, str, str], backbone: Backbone,
                                                           tiny_clip_dir: Path) -> None:
    db, run_id, _ = store_copy
    direct = Direct(tiny_clip_dir)
    with Store.open(db) as store:
        report = score_runs(store, [run_id], backbone, ScoreOptions(batch_size=3))
        frame = scores_frame(store, [run_id])
        outputs = run_store.outputs_frame(store, [run_id])
        challenges = {c["id"]: c for c in run_store.run_challenges(store, run_id)}
        assert report.outputs == len(outputs) == 14 and report.outputs_scored == 14 and not report.problems
        checked = 0
        for row in outputs.to_dict("records"):
            got = frame[(frame["attempt_id"] == row["attempt_id"]) & (frame["output_idx"] == row["idx"])]
            want = expected_metrics(direct, store, row, challenges[row["challenge_id"]])
            assert dict(zip(got["metric"], got["value"], strict=True)) == pytest.approx(want, abs=2e-5), row
            checked += len(want)
    assert checked == len(frame) == report.rows_written


def test_each_kind_gets_its_documented_metrics(store_copy: tuple[Path, str, str], backbone: Backbone) -> None:
    db, run_id, _ = store_copy
    with Store.open(db) as store:
        score_runs(store, [run_id], backbone)
        frame = scores_frame(store, [run_id])
    by_challenge = frame.groupby("challenge_id")["metric"].agg(set).to_dict()
    assert by_challenge == {
        "fox": KIND_METRICS["text-to-image"],
        "harbour": KIND_METRICS["text-to-image"] | CHUNK_METRICS,
        "smile": KIND_METRICS["edit"] | CAPTION_METRICS,
        "plain-edit": KIND_METRICS["edit"],
        "together": KIND_METRICS["compose"],
        "fill": KIND_METRICS["inpaint"],
    }
    for metric, direction in frame.groupby("metric")["higher_is_better"].agg(set).items():
        assert direction == {METRICS[metric].higher_is_better}
    assert not METRICS["l1_outside_mask"].higher_is_better


def test_long_prompts_are_flagged_truncated_with_their_token_count(store_copy: tuple[Path, str, str],
                                                                   backbone: Backbone) -> None:
    db, run_id, _ = store_copy
    with Store.open(db) as store:
        score_runs(store, [run_id], backbone)
        frame = scores_frame(store, [run_id])
    text_rows = frame[frame["metric"].isin(["clip_t_cos", "clip_t_chunk_mean", "clip_t_chunk_min"])]
    long = text_rows[text_rows["challenge_id"] == "harbour"]
    short = text_rows[text_rows["challenge_id"] != "harbour"]
    assert long["truncated"].all() and (long["prompt_tokens"] > 77).all()
    assert not short["truncated"].any() and (short["prompt_tokens"] <= 77).all()
    image_rows = frame[frame["metric"].isin(["clip_i_source", "clip_i_ref_mean", "l1_outside_mask"])]
    assert image_rows["truncated"].isna().all() and image_rows["prompt_tokens"].isna().all()


def test_scores_frame_carries_the_scorer_description(store_copy: tuple[Path, str, str], backbone: Backbone) -> None:
    db, run_id, _ = store_copy
    with Store.open(db) as store:
        score_runs(store, [run_id], backbone)
        frame = scores_frame(store, [run_id])
        assert scores_frame(store, [run_id], scorer="open_clip:other:model").empty
    assert list(frame.columns) == list(SCORE_FRAME_COLUMNS)
    info = backbone.info
    one = frame.iloc[0]
    assert (one["scorer"], one["scorer_id"], one["backbone"], one["pretrained"], one["weights_sha256"],
            one["open_clip_version"], one["preprocess"], one["precision"]) == (
        info.name, info.id, info.backbone, info.pretrained, info.weights_sha256, info.open_clip_version,
        info.preprocess, info.precision)
    assert set(frame["target"]) == {GPT} and set(frame["kind"]) == set(KIND_METRICS)


def test_rescoring_the_same_run_computes_nothing(store_copy: tuple[Path, str, str], backbone: Backbone) -> None:
    db, run_id, _ = store_copy
    with Store.open(db) as store:
        first = score_runs(store, [run_id], backbone)
        before = scores_frame(store, [run_id])
        again = score_runs(store, [run_id], backbone)
        after = scores_frame(store, [run_id])
    assert first.images_embedded > 0 and first.texts_embedded > 0
    assert (again.images_embedded, again.texts_embedded, again.pixel_jobs, again.rows_written) == (0, 0, 0, 0)
    assert again.outputs_skipped == again.outputs == first.outputs_scored
    assert before.equals(after)


def test_adding_a_run_embeds_only_its_new_images(store_copy: tuple[Path, str, str], backbone: Backbone) -> None:
    db, first_run, second_run = store_copy
    with Store.open(db) as store:
        first = score_runs(store, [first_run], backbone)
        cached = embedding_count(store, backbone.info.id)
        both = score_runs(store, [first_run, second_run], backbone)
        seen = set(run_store.outputs_frame(store, [first_run])["sha256"])
        added = run_store.outputs_frame(store, [second_run])
        frame = scores_frame(store, [first_run, second_run])
    new_images = set(added["sha256"]) - seen
    new_crops = set(added[added["challenge_id"] == "fill"]["sha256"]) - seen
    assert new_images, "the second target draws different images"
    assert first.images_embedded == cached["image"] and first.texts_embedded == cached["text"]
    assert both.texts_embedded == 0, "same prompts and captions: every text comes from the cache"
    assert both.images_embedded == len(new_images) + len(new_crops), "references and known images are cached"
    assert both.outputs_skipped == first.outputs_scored and both.outputs_scored == 14
    assert set(frame["target"]) == {GPT, GPT15}


def test_force_rescores_from_the_cache_with_the_same_values(store_copy: tuple[Path, str, str],
                                                            backbone: Backbone) -> None:
    db, run_id, _ = store_copy
    with Store.open(db) as store:
        score_runs(store, [run_id], backbone)
        before = scores_frame(store, [run_id]).drop(columns="scored_at")
        forced = score_runs(store, [run_id], backbone, ScoreOptions(force=True))
        after = scores_frame(store, [run_id]).drop(columns="scored_at")
    assert forced.outputs_scored == 14 and forced.images_embedded == 0 and forced.texts_embedded == 0
    assert before.equals(after)


def test_an_interrupted_scoring_keeps_its_finished_batches(store_copy: tuple[Path, str, str], backbone: Backbone,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    db, run_id, _ = store_copy
    calls = []
    real = backbone.encode_images

    def crash_on_third(tensors: Any) -> Any:
        calls.append(len(tensors))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(tensors)

    with Store.open(db) as store:
        monkeypatch.setattr(backbone, "encode_images", crash_on_third)
        with pytest.raises(KeyboardInterrupt):
            score_runs(store, [run_id], backbone, ScoreOptions(batch_size=4))
        monkeypatch.undo()
        kept = embedding_count(store, backbone.info.id)["image"]
        assert kept == 8 and scores_frame(store, [run_id]).empty
        resumed = score_runs(store, [run_id], backbone, ScoreOptions(batch_size=4))
        assert resumed.images_cached == 8 and resumed.outputs_scored == 14
        assert resumed.images_embedded + 8 == embedding_count(store, backbone.info.id)["image"]


def test_a_missing_image_file_is_reported_and_the_rest_scored(store_copy: tuple[Path, str, str],
                                                              backbone: Backbone) -> None:
    db, run_id, _ = store_copy
    with Store.open(db) as store:
        outputs = run_store.outputs_frame(store, [run_id])
        victim = outputs[outputs["challenge_id"] == "fox"].iloc[0]
        path = store.image_path(victim["sha256"], victim["ext"])
        path.unlink()
        report = score_runs(store, [run_id], backbone)
        frame = scores_frame(store, [run_id])
    sharing = outputs[outputs["sha256"] == victim["sha256"]]
    assert report.outputs_failed == len(sharing) and report.outputs_scored == 14 - len(sharing)
    assert sum(str(path) in p for p in report.problems) == len(sharing)
    assert not set(sharing["attempt_id"]) & set(frame["attempt_id"])
    assert set(frame["challenge_id"]) == {"fox", "harbour", "smile", "plain-edit", "together", "fill"}


def test_two_scorers_keep_separate_rows_and_caches(store_copy: tuple[Path, str, str], backbone: Backbone,
                                                    tmp_path: Path) -> None:
    db, run_id, _ = store_copy
    other = load_backbone(BackboneSpec(model=f"local-dir:{save_local_dir(tmp_path / 'other', TINY_CFG, seed=1)}"))
    assert other.info.id != backbone.info.id and other.info.name != backbone.info.name
    with Store.open(db) as store:
        score_runs(store, [run_id], backbone)
        assert latest_scorer(store, [run_id]) == backbone.info.id
        second = score_runs(store, [run_id], other)
        assert latest_scorer(store, [run_id]) == other.info.id
        both = scores_frame(store, [run_id])
        mine = scores_frame(store, [run_id], scorer=backbone.info.name)
        theirs = scores_frame(store, [run_id], scorer=other.info.id)
    assert second.images_cached == 0 and second.texts_cached == 0, "another model never reuses embeddings"
    assert len(both) == len(mine) + len(theirs) and set(mine["scorer"]) == {backbone.info.name}
    assert not np.allclose(mine["value"].to_numpy(), theirs["value"].to_numpy())
    with pytest.raises(ValueError, match="mixes scorers"):
        summary_columns(summarise_scores(both))
    columns = summary_columns(summarise_scores(theirs))[GPT]
    assert columns["score_scorer"] == other.info.name and columns["clip_t_cos_n"] == 14
    assert columns["clip_t_cos_low"] <= columns["clip_t_cos_mean"] <= columns["clip_t_cos_high"]


@pytest.mark.parametrize(("owner", "lost", "broken"), [
    ("fill", "mask", {"fill"}),
    ("together", "references[1]", {"together", "plain-edit"}),  # b.png is also plain-edit's source
])
def test_a_missing_challenge_image_fails_only_the_outputs_that_need_it(store_copy: tuple[Path, str, str],
                                                                       backbone: Backbone, owner: str, lost: str,
                                                                       broken: set[str]) -> None:
    db, run_id, _ = store_copy
    with Store.open(db) as store:
        challenge = {c["id"]: c for c in run_store.run_challenges(store, run_id)}[owner]
        meta = challenge["mask"] if lost == "mask" else challenge["references"][1]
        path = store.image_path(meta["sha256"], meta["ext"])
        path.unlink()
        report = score_runs(store, [run_id], backbone)
        frame = scores_frame(store, [run_id])
    failed = 2 * len(broken)  # two samples per challenge
    assert report.outputs_failed == failed and report.outputs_scored == 14 - failed
    assert len(report.problems) == failed and all(str(path) in p for p in report.problems)
    assert set(frame["challenge_id"]) == {"fox", "harbour", "smile", "plain-edit", "together", "fill"} - broken


def invoke(args: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return CliRunner().invoke(cli, args)


def test_cli_scores_prints_summary_and_rescoring_computes_nothing(store_copy: tuple[Path, str, str],
                                                                   tiny_clip_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db, run_id, _ = store_copy
    args = ["score", run_id, "--model", f"local-dir:{tiny_clip_dir}", "--batch-size", "4", "--db", str(db), "--json"]
    first = invoke(args, monkeypatch)
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["report"]["outputs_scored"] == 14 and data["report"]["images_embedded"] > 0
    summary = {(r["target"], r["metric"]): r for r in data["summary"]}
    cos = summary[(GPT, "clip_t_cos")]
    assert cos["n_images"] == 14 and cos["n_prompts"] == 7 and cos["low"] <= cos["mean"] <= cos["high"]
    assert summary[(GPT, "l1_outside_mask")]["higher_is_better"] is False
    second = invoke(args, monkeypatch)
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)["report"]
    assert (again["images_embedded"], again["texts_embedded"], again["outputs_skipped"]) == (0, 0, 14)
    table = invoke(args[:-1], monkeypatch)
    assert table.exit_code == 0 and "clip_t_cos" in table.stdout and GPT in table.stdout


def test_cli_exits_1_when_an_output_could_not_be_scored(store_copy: tuple[Path, str, str],
                                                        tiny_clip_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    db, run_id, _ = store_copy
    with Store.open(db) as store:
        outputs = run_store.outputs_frame(store, [run_id])
        row = outputs.iloc[0]
        store.image_path(row["sha256"], row["ext"]).unlink()
    failed = int((outputs["sha256"] == row["sha256"]).sum())
    result = invoke(["score", run_id, "--model", f"local-dir:{tiny_clip_dir}", "--db", str(db)], monkeypatch)
    assert result.exit_code == 1
    assert f"{14 - failed} output(s) scored" in result.stderr and f"{failed} failed" in result.stderr
    assert "cannot read" in result.stderr


def test_cli_names_an_unknown_run(store_copy: tuple[Path, str, str], tiny_clip_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    db, _, _ = store_copy
    result = invoke(["score", "no-such-run", "--model", f"local-dir:{tiny_clip_dir}", "--db", str(db)], monkeypatch)
    assert result.exit_code == 2 and "no run 'no-such-run'" in result.stderr



def test_decoders_take_only_idle_cpu_while_a_cpu_model_runs() -> None:
    """On the CPU the decoders must not preempt the model's threads; beside an accelerator they run normally."""
    if not sys.platform.startswith("linux"):
        pytest.skip("SCHED_IDLE is Linux's")
    with decode_pool(ScoreOptions(workers=2), "cpu") as pool:
        policies = {pool.submit(os.sched_getscheduler, 0).result() for _ in range(4)}
    assert policies == {os.SCHED_IDLE}
    with decode_pool(ScoreOptions(workers=2), "cuda") as pool:
        assert pool.submit(os.sched_getscheduler, 0).result() == os.SCHED_OTHER


def test_the_model_decodes_what_no_worker_started_so_a_busy_machine_never_stalls_it(
        store_copy: tuple[Path, str, str], backbone: Backbone) -> None:
    """Every decoder is stuck (as idle-priority threads are on a saturated machine): the images still get
    embedded, by the model's own thread, with the same values as the normal path."""
    db, run_id, _ = store_copy
    with Store.open(db, readonly=True) as store:
        outputs = run_store.outputs_frame(store, [run_id]).drop_duplicates("sha256")
        sources = [(str(r["sha256"]), ImageSource(store.image_path(r["sha256"], r["ext"])))
                   for r in outputs.to_dict("records")]
    release = threading.Event()
    with ThreadPoolExecutor(1) as stuck:
        blocker = stuck.submit(release.wait, 120)
        failures: dict[str, str] = {}
        got = {k: v for keys, vectors in embed_image_batches(backbone, sources, stuck, 4, 2, failures)
               for k, v in zip(keys, vectors, strict=True)}
        finished_while_stuck = not blocker.done()
        release.set()
    assert finished_while_stuck
    with ThreadPoolExecutor(2) as free:
        want = {k: v for keys, vectors in embed_image_batches(backbone, sources, free, 4, 2, {})
                for k, v in zip(keys, vectors, strict=True)}
    assert not failures and set(got) == {k for k, _ in sources} == set(want)
    for key, vector in got.items():
        np.testing.assert_allclose(vector, want[key], rtol=1e-5, atol=1e-6)
