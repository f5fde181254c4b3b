"""The sandbox's pictures carry the quality its simulated models' strengths give them, and a checker reads
it back from the pixels alone."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.sandbox import imagery
from harness.sandbox.imagery import (
    DEFAULT_STRENGTHS,
    ImageCache,
    elements,
    marks_for,
    read,
    render,
    render_probability,
    strength_of,
    variant,
)
from tests.conftest import mask_png, photo_like

PROMPT = "A red fox beside a blue lake under a golden moon, with a wooden cabin and tall pine trees"


def test_a_prompt_names_its_content_words_as_elements_and_a_colour_word_colours_the_next() -> None:
    found = elements(PROMPT)
    assert [e.word for e in found] == ["fox", "lake", "moon", "wooden", "cabin", "tall"]
    assert found[0].colour == imagery.COLOURS["red"] and found[1].colour == imagery.COLOURS["blue"]
    assert all(math.dist(e.colour, e.code) >= imagery.CONTRAST for e in found)
    assert elements("make it so") == () and elements(PROMPT.upper()) == found


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_any_text_gives_at_most_six_distinct_elements(text: str) -> None:
    found = elements(text)
    assert len(found) <= imagery.MAX_ELEMENTS
    assert len({e.word for e in found}) == len(found)
    assert elements(text) == found


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("size", [(1024, 1024), (1536, 1024), (512, 768), (96, 64)])
def test_the_checker_reads_exactly_the_marks_each_model_drew(fmt: str, size: tuple[int, int]) -> None:
    cache = ImageCache()
    for model in DEFAULT_STRENGTHS:
        for seed in range(3):
            prompt = f"{PROMPT} {seed}"
            data = cache.get_or_render(model, prompt, seed, size, fmt=fmt)
            assert read(data, prompt).rendered == marks_for(model, prompt, variant(prompt, seed)), (model, seed)


def test_stronger_models_render_more_of_what_the_prompt_asks_for() -> None:
    words = ["cat", "dog", "kite", "boat", "tree", "house", "lamp", "chair", "cloud", "river", "bridge", "tower"]
    shares: dict[str, float] = {}
    for model in DEFAULT_STRENGTHS:
        found = total = 0
        for i in range(40):
            prompt = " ".join(words[(i + k) % len(words)] for k in range(5)) + f" number {i}"
            reading = read(render(model, prompt, i, (128, 128), fmt="JPEG"), prompt)
            found, total = found + reading.found, total + reading.total
        p = render_probability(model)
        assert abs(found / total - p) <= 4 * math.sqrt(p * (1 - p) / total), model
        shares[model] = found / total
    by_strength = sorted(DEFAULT_STRENGTHS, key=DEFAULT_STRENGTHS.__getitem__)
    assert shares[by_strength[-1]] > shares[by_strength[0]] + 0.3


def test_an_edit_by_a_weaker_model_disturbs_more_of_what_it_should_keep() -> None:
    ref = photo_like((128, 128), 7)
    prompt = "add a kite"
    moved = {m: np.mean([read(render(m, prompt, s, (256, 256), (ref,)), prompt, (ref,)).disturbance or 0.0
                         for s in range(3)]) for m in ("gemini-3-pro-image-preview", "sd-3.5-large")}
    assert moved["sd-3.5-large"] > 2 * moved["gemini-3-pro-image-preview"] > 0
    untouched = read(ref, prompt, (ref,))
    assert untouched.disturbance is not None and untouched.disturbance < 0.01 and untouched.found == 0
    assert untouched.quality == pytest.approx(-2 * untouched.disturbance)


def test_inpainting_draws_its_marks_inside_the_mask_and_keeps_the_rest() -> None:
    ref, mask = photo_like((96, 64), 1), mask_png((96, 64))
    prompt = "fill the hole with tulips roses daisies"
    data = render("gemini-3-pro-image-preview", prompt, 1, (96, 64), (ref,), mask)
    assert read(data, prompt, (ref,), mask).rendered == marks_for("gemini-3-pro-image-preview", prompt, 1)
    keep = np.asarray(Image.open(io.BytesIO(mask)).convert("L")) < 128
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    src = np.asarray(Image.open(io.BytesIO(ref)).convert("RGB")).astype(int)
    assert np.abs(out[keep] - src[keep]).mean() < 1.0


def test_a_provider_model_id_maps_to_its_simulated_model() -> None:
    assert strength_of("fal-ai/flux/dev") == DEFAULT_STRENGTHS["flux-dev"]
    assert strength_of("google/nano-banana-pro") == DEFAULT_STRENGTHS["gemini-3-pro-image-preview"]
    assert strength_of("stability-ai/stable-diffusion-3.5-large") == DEFAULT_STRENGTHS["sd-3.5-large"]
    assert strength_of("someone/else") == imagery.UNKNOWN_STRENGTH
