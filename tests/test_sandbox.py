"""The sandbox: profiles, fault controls, imagery and the stand-alone server command."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.errors import ConfigError
from harness.sandbox.faults import EXPECTED_KIND, Fault, forced_fault
from harness.sandbox.imagery import look_for, render
from harness.sandbox.profiles import DEFAULT_PROFILES, Lognormal, load_profiles
from tests.conftest import photo_like


@given(st.floats(0.05, 100), st.floats(1.0, 5.0))
@settings(max_examples=25)
def test_lognormal_is_described_exactly_by_its_median_and_p95(median: float, ratio: float) -> None:
    dist = Lognormal(median_s=median, p95_s=median * ratio)
    assert dist.quantile(0.5) == pytest.approx(median)
    assert dist.quantile(0.95) == pytest.approx(median * ratio)
    rng = random.Random(3)
    draws = np.array([dist.sample(rng) for _ in range(4000)])
    assert np.median(draws) == pytest.approx(median, rel=0.08)


def test_every_fault_has_an_expected_class_and_can_be_forced_by_header_or_prompt() -> None:
    assert set(EXPECTED_KIND) == set(Fault)
    assert forced_fault({"x-sandbox-fault": "refused"}, None) == Fault.REFUSED
    assert forced_fault({}, "a cat [sandbox-fault:truncated_body] on a mat") == Fault.TRUNCATED_BODY
    assert forced_fault({}, "[sandbox-fault:no_such_fault]") is None


def test_default_profiles_document_their_source_and_the_published_table_success_rate() -> None:
    assert set(DEFAULT_PROFILES) == {"openai", "openai-responses", "gemini", "openrouter", "fal", "replicate"}
    assert all(p.source for p in DEFAULT_PROFILES.values())
    assert DEFAULT_PROFILES["gemini"].failure_rate == pytest.approx(1 - 0.579)
    assert DEFAULT_PROFILES["fal"].latency.median_s == pytest.approx(31.825)
    assert DEFAULT_PROFILES["fal"].latency.p95_s == pytest.approx(96.361)


def test_profile_file_overrides_only_the_fields_it_names(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("gemini:\n  faults: {rate_limited: 0.5}\n  rpm: 10\n", encoding="utf-8")
    profiles = load_profiles(path)
    assert profiles["gemini"].faults == {Fault.RATE_LIMITED: 0.5}
    assert profiles["gemini"].rpm == 10
    assert profiles["gemini"].latency == DEFAULT_PROFILES["gemini"].latency
    assert profiles["fal"] == DEFAULT_PROFILES["fal"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gemni: {rpm: 1}\n", "unknown sandbox provider 'gemni'"),
        ("gemini: {faults: {rate_limited: 0.7, server_error: 0.6}}\n", "fault rates add up to 1.300 > 1"),
        ("gemini: {faults: {melted: 0.1}}\n", "faults.melted"),
        ("gemini: {latency: {median_s: 5, p95_s: 1}}\n", "p95_s must be at least median_s"),
        ("gemini: [1, 2]\n", "must be a mapping"),
    ],
)
def test_bad_profile_files_are_rejected_with_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_profiles(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_imagery_is_deterministic_and_differs_between_models() -> None:
    a = render("gemini-2.5-flash-image", "a fox", 42, (64, 48))
    assert a == render("gemini-2.5-flash-image", "a fox", 42, (64, 48))
    assert a != render("gemini-2.5-flash-image", "a fox", 43, (64, 48))
    assert a != render("gemini-2.5-flash-image", "a cat", 42, (64, 48))
    assert look_for("gpt-image-1").palette != look_for("flux-dev").palette
    means = {m: np.asarray(Image.open(io.BytesIO(render(m, "a fox", 1, (64, 64))))).mean(axis=(0, 1))
             for m in ("gemini-2.5-flash-image", "gpt-image-1", "flux-dev", "sd-3.5-large")}
    colours = list(means.values())
    assert min(np.abs(x - y).sum() for i, x in enumerate(colours) for y in colours[i + 1:]) > 10
    assert Image.open(io.BytesIO(a)).size == (64, 48)


def test_edits_derive_from_the_reference_and_inpainting_keeps_the_unmasked_region() -> None:
    ref = photo_like((64, 64), 5)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    out = np.asarray(Image.open(io.BytesIO(render("gpt-image-1", "fill", 1, (64, 64), (ref,), buf.getvalue()))))
    original = np.asarray(Image.open(io.BytesIO(ref)).convert("RGB"))
    assert np.abs(out[:, 40:].astype(int) - original[:, 40:].astype(int)).mean() < 1.0
    edited = np.asarray(Image.open(io.BytesIO(render("gpt-image-1", "smile", 1, (64, 64), (ref,)))))
    correlation = np.corrcoef(edited.mean(axis=2).ravel(), original.mean(axis=2).ravel())[0, 1]
    assert correlation > 0.3


def test_sandbox_serve_prints_base_urls_first_and_they_answer() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sandbox", "serve", "--time-scale", "0.01",
                             "--faults", "off"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "true"})
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline())
        assert {"openai", "openai-responses", "gemini", "openrouter", "fal", "replicate"} >= set(urls) >= {"openai"}
        r = httpx.post(urls["openai"] + "/images/generations", json={"model": "gpt-image-1", "prompt": "x"},
                       headers={"Authorization": "Bearer k"}, timeout=30)
        assert r.status_code == 200 and r.json()["data"][0]["b64_json"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_sandbox_serve_refuses_a_certificate_without_its_key(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.cli import cli

    cert = tmp_path / "cert.pem"
    cert.write_text("not used", encoding="utf-8")
    result = CliRunner().invoke(cli, ["sandbox", "serve", "--ssl-certfile", str(cert)])
    assert result.exit_code == 2
    assert "--ssl-certfile and --ssl-keyfile go together" in result.output
