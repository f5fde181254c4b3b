"""Properties of the pure parts of scoring: prompt chunks, metric formulas, masks and the score summary.

None of these need torch: they run on numpy arrays, Pillow images and strings.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.scoring.metrics import (
    CLIPSCORE_W,
    METRICS,
    PSNR_CAP_DB,
    chunk_values,
    clip_t_values,
    cosine,
    direction,
    preservation,
    reference_values,
)
from harness.scoring.pixels import preservation_outside_mask, read_mask, scale_box
from harness.scoring.prompts import sentence_chunks
from harness.scoring.summary import cluster_bootstrap_mean, summarise_scores, summary_records


def words(text: str) -> int:
    """A stand-in tokenizer: one token per word (the chunker only needs a monotone count)."""
    return len(text.split())


word = st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=8)
punct = st.sampled_from(["", "", "", ",", ";", ":", ".", "!", "?"])
prompt_text = st.lists(st.tuples(word, punct, st.sampled_from([" ", " ", "\n"])), min_size=1, max_size=120).map(
    lambda parts: "".join(w + p + s for w, p, s in parts))


@settings(max_examples=300, deadline=None)
@given(prompt_text, st.integers(min_value=1, max_value=30))
def test_chunks_keep_every_word_in_order_and_fit_the_budget(prompt: str, budget: int) -> None:
    chunks = sentence_chunks(prompt, words, budget)
    assert " ".join(chunks).split() == prompt.split()
    for chunk in chunks:
        assert chunk.strip() == chunk and chunk
        assert words(chunk) <= budget or len(chunk.split()) == 1


def test_chunks_follow_sentences_then_clauses_then_words() -> None:
    prompt = "A red fox sits. It reads a paper, drinks tea, and smiles widely today!\nA cat watches"
    assert sentence_chunks(prompt, words, 8) == [
        "A red fox sits.", "It reads a paper, drinks tea,", "and smiles widely today!", "A cat watches"]
    assert sentence_chunks("one two three four five", words, 2) == ["one two", "three four", "five"]
    assert sentence_chunks("   ", words, 5) == []
    with pytest.raises(ValueError):
        sentence_chunks("x", words, 0)


unit = st.lists(st.floats(min_value=-1, max_value=1, allow_nan=False), min_size=4, max_size=4).map(np.array)


@given(unit, unit)
def test_cosine_is_symmetric_bounded_and_scale_free(a: np.ndarray, b: np.ndarray) -> None:
    c = cosine(a, b)
    assert -1 - 1e-9 <= c <= 1 + 1e-9
    assert c == pytest.approx(cosine(b, a))
    assert c == pytest.approx(cosine(3 * a, 0.5 * b), abs=1e-9)


@given(st.floats(min_value=-1, max_value=1, allow_nan=False))
def test_the_three_clip_t_scales(c: float) -> None:
    values = clip_t_values(c)
    assert values["clip_t_cos"] == c
    assert values["clip_t_100"] == pytest.approx(100 * c)
    assert values["clipscore"] == pytest.approx(CLIPSCORE_W * max(c, 0.0))
    assert 0 <= values["clipscore"] <= CLIPSCORE_W


def test_chunk_and_reference_summaries_are_mean_and_minimum() -> None:
    x = np.array([1.0, 0.0])
    parts = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 1.0])]
    assert chunk_values(x, parts) == pytest.approx(
        {"clip_t_chunk_mean": (1 + 0 + math.sqrt(0.5)) / 3, "clip_t_chunk_min": 0.0})
    assert reference_values(x, parts[:2]) == {"clip_i_ref_mean": 0.5, "clip_i_ref_min": 0.0}
    with pytest.raises(ValueError):
        chunk_values(x, [])


def test_direction_measures_the_change_not_the_position() -> None:
    src, out = np.array([1.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0])
    assert direction(out, src, np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert direction(out, src, np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 0.0])) == pytest.approx(-1.0)
    assert direction(src, src, np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])) == 0.0


def test_metric_table_names_a_direction_and_unit_for_every_metric() -> None:
    assert {m for m, info in METRICS.items() if not info.higher_is_better} == {"l1_outside_mask"}
    assert all(info.unit and info.description for info in METRICS.values())


@given(st.integers(1, 40), st.integers(1, 40), st.data())
def test_preservation_of_a_known_change(h: int, w: int, data: st.DataObject) -> None:
    delta = data.draw(st.floats(min_value=1 / 255, max_value=1))
    keep = np.zeros((h, w), dtype=bool)
    keep[: max(1, h // 2)] = True
    source = np.zeros((h, w, 3))
    out = source.copy()
    out[keep] = delta
    values = preservation(out, source, keep)
    assert values is not None
    assert values["l1_outside_mask"] == pytest.approx(delta)
    assert values["psnr_outside_mask"] == pytest.approx(min(PSNR_CAP_DB, -20 * math.log10(delta)))
    assert preservation(source, source, keep) == {"l1_outside_mask": 0.0, "psnr_outside_mask": PSNR_CAP_DB}
    assert preservation(out, source, np.zeros((h, w), dtype=bool)) is None


def png(image: Image.Image, path: Path) -> Path:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return path


def test_pixels_changed_only_inside_the_mask_are_perfectly_preserved(tmp_path: Path) -> None:
    source = Image.linear_gradient("L").resize((60, 40)).convert("RGB")
    mask = Image.new("L", (60, 40), 0)
    mask.paste(255, (10, 5, 30, 25))
    out = source.copy()
    out.paste((255, 0, 0), (10, 5, 30, 25))
    values = preservation_outside_mask(png(out, tmp_path / "o.png"), png(source, tmp_path / "s.png"),
                                       png(mask, tmp_path / "m.png"))
    assert values == {"l1_outside_mask": 0.0, "psnr_outside_mask": PSNR_CAP_DB}
    info = read_mask(tmp_path / "m.png")
    assert (info.width, info.height, info.box) == (60, 40, (10, 5, 30, 25))
    with pytest.raises(ValueError, match="mask is 60x40 but its source image is 30x20"):
        preservation_outside_mask(tmp_path / "o.png", png(source.resize((30, 20)), tmp_path / "small.png"),
                                  tmp_path / "m.png")


@given(st.integers(1, 200), st.integers(1, 200), st.integers(1, 300), st.integers(1, 300), st.data())
def test_scaled_mask_box_covers_the_region_and_stays_inside(w: int, h: int, tw: int, th: int,
                                                            data: st.DataObject) -> None:
    left = data.draw(st.integers(0, w - 1))
    top = data.draw(st.integers(0, h - 1))
    right = data.draw(st.integers(left + 1, w))
    bottom = data.draw(st.integers(top + 1, h))
    box = scale_box((left, top, right, bottom), (w, h), (tw, th))
    assert 0 <= box[0] < box[2] <= tw and 0 <= box[1] < box[3] <= th
    assert box[0] <= left * tw / w + 1e-9 and box[2] >= min(tw, right * tw / w - 1e-9)
    assert box[1] <= top * th / h + 1e-9 and box[3] >= min(th, bottom * th / h - 1e-9)


@given(st.lists(st.tuples(st.integers(0, 6), st.floats(min_value=-1, max_value=1, allow_nan=False)),
                min_size=1, max_size=60))
def test_cluster_bootstrap_interval_lies_within_the_data(items: list[tuple[int, float]]) -> None:
    clusters = np.array([c for c, _ in items])
    values = np.array([v for _, v in items])
    mean, low, high = cluster_bootstrap_mean(values, clusters, resamples=200)
    assert mean == pytest.approx(values.mean())
    if len(set(clusters.tolist())) < 2:
        assert math.isnan(low) and math.isnan(high)
    else:
        assert values.min() - 1e-9 <= low <= high <= values.max() + 1e-9


def test_cluster_bootstrap_is_reproducible_and_widens_with_spread() -> None:
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(20), 3)
    tight = 0.3 + 0.01 * rng.standard_normal(60)
    wide = 0.3 + 0.1 * rng.standard_normal(60)
    assert cluster_bootstrap_mean(tight, clusters) == cluster_bootstrap_mean(tight, clusters)
    _, lo_t, hi_t = cluster_bootstrap_mean(tight, clusters)
    _, lo_w, hi_w = cluster_bootstrap_mean(wide, clusters)
    assert hi_w - lo_w > 3 * (hi_t - lo_t)


def test_summary_gives_one_row_per_scorer_target_and_metric() -> None:
    frame = pd.DataFrame({
        "scorer": ["s"] * 6, "target": ["a", "a", "a", "b", "b", "b"], "metric": ["clip_t_cos"] * 6,
        "challenge_id": ["c1", "c1", "c2", "c1", "c2", "c3"], "variant": ["default"] * 6,
        "value": [0.2, 0.4, 0.3, 0.1, 0.1, 0.1], "higher_is_better": [True] * 6,
        "truncated": pd.array([False, False, True, False, False, False], dtype="boolean"),
    })
    summary = summarise_scores(frame)
    rows = {r["target"]: r for r in summary_records(summary)}
    assert rows["a"]["n_images"] == 3 and rows["a"]["n_prompts"] == 2 and rows["a"]["mean"] == pytest.approx(0.3)
    assert rows["a"]["truncated_share"] == pytest.approx(1 / 3)
    assert rows["b"]["low"] == rows["b"]["high"] == pytest.approx(0.1)
    assert summarise_scores(frame.iloc[:0]).empty
