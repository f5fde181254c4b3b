"""A protocol added by an installed plugin alone (tests/plugins: a package plus its ``*.dist-info`` with the
``harness.protocols`` entry points) works like a built-in one: targets know it, ``harness run --sandbox``
sends its requests to the plugin's own simulated server and stores the images, and a plugin that brings no
server is left out of the sandbox with its reason. Real ``harness`` processes, with the plugin's folder on
PYTHONPATH and nothing installed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.errors import ConfigError

PLUGINS = Path(__file__).parent / "plugins"
ENV = {**os.environ, "CI": "true", "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS),
                                                                            os.environ.get("PYTHONPATH")]))}
TARGETS = """targets:
  - name: echo-1@echo
    model: echo-1
    provider: echo
    protocol: {protocol}
    base_url: https://api.echo.invalid/v1
    api_key_env: ECHO_API_KEY
    price_per_image_usd: 0.01
"""
SUITE = """challenges:
  - id: fox
    title: Fox
    category: illustration
    kind: text-to-image
    prompt: A watercolor fox reading a newspaper
    params: {size: "64x48", seed: 42}
"""


def harness(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, cwd=Path(__file__).parent.parent)


def targets_file(tmp_path: Path, protocol: str = "echo-images") -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(TARGETS.format(protocol=protocol), encoding="utf-8")
    return path


def test_targets_list_knows_the_plugin_protocol(tmp_path: Path) -> None:
    listed = harness("targets", "list", "--targets", str(targets_file(tmp_path)), "--target", "echo-*", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["protocol"]) for r in rows] == [("echo-1@echo", "echo-images")]


def test_an_unknown_protocol_still_gets_did_you_mean_with_plugins_installed(tmp_path: Path) -> None:
    listed = harness("targets", "list", "--targets", str(targets_file(tmp_path, "echo-image")))
    assert listed.returncode == 2
    assert "unknown protocol 'echo-image'; did you mean 'echo-images'?" in listed.stderr


def test_a_sandbox_run_sends_the_plugin_targets_requests_to_its_server_and_stores_the_images(
        tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "suite.yaml").write_text(SUITE, encoding="utf-8")
    db = tmp_path / "runs.db"
    run = harness("run", "--sandbox", "--no-faults", "--time-scale", "0.01", "--targets", str(targets_file(tmp_path)),
                  "--target", "echo-1@echo", "--challenges", str(suite), "--samples", "3", "--db", str(db))
    assert run.returncode == 0, run.stderr
    with sqlite3.connect(db) as conn:
        attempts = conn.execute("SELECT protocol, ok, request_id, latency_ms FROM attempts WHERE final=1").fetchall()
        images = conn.execute("SELECT COUNT(*) FROM outputs o JOIN attempts a ON a.id=o.attempt_id").fetchone()[0]
    assert len(attempts) == 3
    assert all(protocol == "echo-images" and ok == 1 for protocol, ok, _, _ in attempts)
    assert all(str(request_id).startswith("echo_") for _, _, request_id, _ in attempts), attempts
    assert images == 3


def test_a_sandbox_run_of_an_adapter_only_plugin_stops_before_any_request_with_the_reason(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "suite.yaml").write_text(SUITE, encoding="utf-8")
    run = harness("run", "--sandbox", "--time-scale", "0.01", "--targets", str(targets_file(tmp_path, "echo-images-direct")),
                  "--target", "echo-1@echo", "--challenges", str(suite), "--db", str(tmp_path / "runs.db"))
    assert run.returncode == 2
    assert "protocol 'echo-images-direct' cannot run in the sandbox: its spec names no sandbox server" in run.stderr


def test_sandbox_serve_mounts_the_plugin_server_and_says_why_it_skips_an_adapter_only_plugin() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sandbox", "serve", "--time-scale", "0.01",
                             "--faults", "off"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline())
        assert urls["echo-images"].endswith("/echo/v1") and "echo-images-direct" not in urls
        assert {"openai", "gemini", "openrouter", "fal", "replicate"} <= set(urls)
        answer = httpx.post(urls["echo-images"] + "/generate", headers={"Authorization": "Bearer k"},
                            json={"model": "echo-1", "prompt": "a fox", "width": 32, "height": 16}, timeout=30)
        assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
        refused = httpx.post(urls["echo-images"] + "/generate", headers={"Authorization": "Bearer invalid"},
                             json={"model": "echo-1", "prompt": "a fox"}, timeout=30)
        assert refused.status_code == 401
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert "not serving protocol 'echo-images-direct': its spec names no sandbox server" in stderr


def test_the_registry_reads_both_entry_point_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.protocols import get_spec, protocol_specs, require_sandbox, sandbox_layout
    from harness.providers.registry import get_protocol

    monkeypatch.syspath_prepend(str(PLUGINS))
    full, direct = get_spec("echo-images"), get_spec("echo-images-direct")
    assert full.has_sandbox and not direct.has_sandbox
    assert direct.adapter == "harness_echo_images.adapter:EchoImagesDirectProvider"
    assert direct.description.startswith("Echo Images registered as an adapter alone")
    assert get_protocol("echo-images").protocol == "echo-images"
    assert list(protocol_specs())[:5] == ["openai-images", "gemini", "openrouter", "fal", "replicate"]
    assert sandbox_layout().served["echo-images"] is full
    assert require_sandbox("echo-images") is full
    with pytest.raises(ConfigError, match="protocol 'echo-images-direct' cannot run in the sandbox: its spec names "
                                          "no sandbox server"):
        require_sandbox("echo-images-direct")


def test_a_profile_file_overrides_the_plugin_profile_like_a_builtin_one(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.sandbox.profiles import DEFAULT_PROFILES, load_profiles

    monkeypatch.syspath_prepend(str(PLUGINS))
    assert load_profiles(None)["echo-images"].latency.median_s == pytest.approx(2.0)
    path = tmp_path / "p.yaml"
    path.write_text("echo-images: {rpm: 7}\n", encoding="utf-8")
    profiles = load_profiles(path)
    assert profiles["echo-images"].rpm == 7 and profiles["echo-images"].latency.p95_s == pytest.approx(4.0)
    assert "echo-images" not in DEFAULT_PROFILES
