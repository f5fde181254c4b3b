"""Behaviour profiles of the simulated providers: latency, TTFB, failure mix, price and limits.

All durations are in **seconds of simulated time**; the sandbox multiplies every delay by its time scale
(``--time-scale 0.01`` runs 100x faster than real time). Latencies are lognormal, given by their median and
95th percentile (``sigma = ln(p95 / median) / 1.6449``), the shape provider latency tables usually publish.

Sources of the defaults:

* **gemini** (Google AI Studio, sync ``generateContent``): the public provider table on
  Lumenfall's Nano Banana page (https://lumenfall.ai/models/google/gemini-2.5-flash-image, 30 days of real
  requests, as read in 2026): p50 7,886 ms, p95 10,941 ms, TTFB p50 7,043 ms, success 57.9 %.
  Headers arrive when generation is done (TTFB ≈ generation time); the remaining
  ~843 ms at the median is the multi-MB base64 body, modelled as ``transfer``. The 42.1 % failures are split
  over the failure kinds that explain such a rate on the Gemini API (429 RESOURCE_EXHAUSTED, 503 "model is
  overloaded", HTTP-200 safety blocks and text-only answers;
  https://ai.google.dev/gemini-api/docs/troubleshooting).
* **fal** (queue API): the same table: p50 31,825 ms, p95 96,361 ms, success 100 % — a success rate that
  ``fal_client``'s silent retries produce (the queue retries runner failures,
  https://fal.ai/docs/api-reference/inference-api, and ``fal_client`` retries 408/409/429 and ingress
  502–504). The harness does not retry while measuring, so the profile keeps the latency but gives the
  raw runner failures (503 runner_scheduling_failure, 422
  content policy) a small rate. Inference time (the ``run`` component) uses the "5–15 s" range published for
  Nano Banana (https://unfragile.ai/google-gemini-2.5-flash-image); the rest of the total is queue wait.
* **openrouter** (chat completions, routes to Google): the "3–8 s" (Gemini 3.1 Flash card,
  https://unfragile.ai/google-gemini-3.1-flash-image-preview) and "5–15 s" (Gemini 2.5 Flash card,
  https://unfragile.ai/google-gemini-2.5-flash-image) ranges, taken as p50 ≈ 8 s and
  p95 ≈ 15 s, plus gateway overhead; failures from OpenRouter's 502 provider_unavailable / 429 upstream.
* **replicate** (predictions, ``Prefer: wait``): the same "5–15 s" range for the run, a short ``starting``
  queue (cold starts in the tail); failures surface as ``failed`` predictions.
* **openai** (Images API, gpt-image-1 medium quality): no published figure used; p50 20 s and p95 45 s, as
  commonly reported for gpt-image-1 at medium quality — an assumption, marked as such.

Per-model speed factors scale the generation time of a model relative to the provider default
(e.g. Gemini 3 Pro "thinks" before drawing and is slower; FLUX.1 [dev] on fal is faster than Nano Banana).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError
from harness.sandbox.faults import Fault

Z95 = 1.6448536269514722


class Lognormal(BaseModel):
    """A lognormal duration in seconds, given by its median and 95th percentile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    median_s: float = Field(gt=0)
    p95_s: float = Field(gt=0)

    @field_validator("p95_s")
    @classmethod
    def _p95(cls, v: float, info: Any) -> float:
        median = info.data.get("median_s")
        if median is not None and v < median:
            raise ValueError("p95_s must be at least median_s")
        return v

    @property
    def sigma(self) -> float:
        return math.log(self.p95_s / self.median_s) / Z95

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median_s), self.sigma)

    def quantile(self, q: float) -> float:
        """The exact ``q`` quantile of this distribution (for checking a run against its profile)."""
        from statistics import NormalDist

        return self.median_s * math.exp(self.sigma * NormalDist().inv_cdf(q))


class ProviderProfile(BaseModel):
    """How one simulated provider behaves.

    ``latency``: time from request received to result ready (for sync APIs, the response headers).
    ``run``: for queue APIs, the compute part of ``latency`` (the rest is queue wait).
    ``transfer``: time to stream the response body after its headers (sync APIs with big bodies).
    ``first_event_fraction``: for streaming, when the first event goes out, as a fraction of ``latency``.
    ``faults``: probability per request of each injected fault (at most 1 in total).
    ``rpm``/``concurrency``: limits enforced per API key, in simulated time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency: Lognormal
    run: Lognormal | None = None
    transfer: Lognormal | None = None
    first_event_fraction: float = Field(default=0.3, ge=0, le=1)
    faults: dict[Fault, float] = Field(default_factory=dict)
    rpm: float | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, ge=1)
    price_per_image_usd: float = Field(default=0.039, ge=0)
    model_speed: dict[str, float] = Field(default_factory=dict)
    source: str = ""

    @field_validator("faults")
    @classmethod
    def _rates(cls, v: dict[Fault, float]) -> dict[Fault, float]:
        if any(r < 0 or r > 1 for r in v.values()):
            raise ValueError("fault rates must be between 0 and 1")
        if sum(v.values()) > 1 + 1e-9:
            raise ValueError(f"fault rates add up to {sum(v.values()):.3f} > 1")
        return v

    @property
    def failure_rate(self) -> float:
        """Share of requests that fail (slow drips succeed)."""
        return sum(r for f, r in self.faults.items() if f != Fault.SLOW_DRIP)

    def speed(self, model: str) -> float:
        """Generation-time multiplier for ``model`` (matched by substring, longest key first)."""
        for key in sorted(self.model_speed, key=len, reverse=True):
            if key in model:
                return self.model_speed[key]
        return 1.0


MODEL_SPEED = {
    "gemini-3-pro": 1.6, "nano-banana-pro": 1.6, "gemini-3.1-flash": 0.7, "nano-banana-2": 0.7,
    "flux": 0.5, "stable-diffusion": 0.7, "sd-3.5": 0.7, "gpt-image-1.5": 0.8,
}

GEMINI = ProviderProfile(
    latency=Lognormal(median_s=7.043, p95_s=9.95),
    transfer=Lognormal(median_s=0.843, p95_s=1.6),
    first_event_fraction=0.35,
    faults={Fault.RATE_LIMITED: 0.20, Fault.OVERLOADED: 0.11, Fault.REFUSED_OUTPUT: 0.05,
            Fault.NO_IMAGE: 0.04, Fault.SERVER_ERROR: 0.015, Fault.CONNECTION_RESET: 0.006},
    rpm=500, price_per_image_usd=0.039, model_speed=MODEL_SPEED,
    source=("lumenfall.ai/models/google/gemini-2.5-flash-image provider table (gemini p50 7,886 ms, "
            "p95 10,941 ms, TTFB p50 7,043 ms, 57.9 %)"),
)

FAL = ProviderProfile(
    latency=Lognormal(median_s=31.825, p95_s=96.361),
    run=Lognormal(median_s=8.0, p95_s=14.0),
    faults={Fault.SERVER_ERROR: 0.01, Fault.REFUSED: 0.005},
    concurrency=None, price_per_image_usd=0.039, model_speed=MODEL_SPEED,
    source=("lumenfall.ai/models/google/gemini-2.5-flash-image provider table (fal p50 31,825 ms, "
            "p95 96,361 ms); run time from the published 5–15 s"),
)

OPENROUTER = ProviderProfile(
    latency=Lognormal(median_s=8.0, p95_s=15.0),
    first_event_fraction=0.05,
    faults={Fault.RATE_LIMITED: 0.02, Fault.SERVER_ERROR: 0.02, Fault.REFUSED_OUTPUT: 0.01,
            Fault.MID_STREAM_ERROR: 0.005},
    price_per_image_usd=0.039, model_speed=MODEL_SPEED,
    source=("unfragile.ai model cards: Gemini 2.5 Flash Image '5-15 seconds', Gemini 3.1 Flash Image "
            "'3-8 seconds' generation ranges"),
)

REPLICATE = ProviderProfile(
    latency=Lognormal(median_s=9.0, p95_s=18.0),
    run=Lognormal(median_s=8.0, p95_s=14.0),
    faults={Fault.SERVER_ERROR: 0.015, Fault.REFUSED: 0.01, Fault.RATE_LIMITED: 0.005},
    rpm=600, price_per_image_usd=0.039, model_speed=MODEL_SPEED,
    source=("unfragile.ai Gemini 2.5 Flash Image card '5-15 seconds' run time; Replicate 600 predictions/min "
            "(replicate.com/docs/topics/predictions/rate-limits)"),
)

OPENAI = ProviderProfile(
    latency=Lognormal(median_s=20.0, p95_s=45.0),
    first_event_fraction=0.45,
    faults={Fault.RATE_LIMITED: 0.015, Fault.SERVER_ERROR: 0.01, Fault.REFUSED: 0.005},
    rpm=None, price_per_image_usd=0.042, model_speed=MODEL_SPEED,
    source="assumption: gpt-image-1 medium quality 1024x1024 typically 15-45 s (no public table)",
)

OPENAI_RESPONSES = ProviderProfile(
    latency=Lognormal(median_s=24.0, p95_s=52.0),
    first_event_fraction=0.5,
    faults={Fault.RATE_LIMITED: 0.015, Fault.SERVER_ERROR: 0.01, Fault.REFUSED_OUTPUT: 0.005,
            Fault.NO_IMAGE: 0.005},
    rpm=None, price_per_image_usd=0.042, model_speed=MODEL_SPEED,
    source=("assumption: the Images API's gpt-image-1 medium 1024x1024 time (15-45 s, no public table) plus the "
            "mainline model's turn that calls the image_generation tool (a few seconds); a model that answers in "
            "text instead of calling the tool is the no_image share"),
)
"""The five built-in simulated providers' profiles; :mod:`harness.protocols.builtin` names each one in its
protocol's spec."""


def _builtin_profiles() -> dict[str, ProviderProfile]:
    """The built-in specs' profiles (they name this module's constants, defined above by the time this runs)."""
    from harness.protocols.builtin import BUILTIN_SPECS

    return {s.sandbox_name: s.default_profile() for s in BUILTIN_SPECS if s.has_sandbox}


DEFAULT_PROFILES: dict[str, ProviderProfile] = _builtin_profiles()
"""Profiles of the built-in simulated providers, by the sandbox's provider names (``openai``, ``gemini`` …)."""


def plugin_profiles() -> dict[str, ProviderProfile]:
    """Default profiles of the simulated providers that installed plugins add to the sandbox. A plugin whose
    profile cannot be loaded is left out here; the sandbox then skips it and says why."""
    from harness.protocols.registry import sandbox_layout

    found: dict[str, ProviderProfile] = {}
    for name, spec in sandbox_layout().served.items():
        if name not in DEFAULT_PROFILES:
            try:
                found[name] = spec.default_profile()
            except ConfigError:
                continue
    return found


def load_profiles(path: Path | None) -> dict[str, ProviderProfile]:
    """Default profiles (built-in and plugins'), with the providers named in a YAML file
    (``--sandbox-profile``) overridden.

    The file maps provider names to profile fields; omitted fields keep the default's values::

        gemini:
          latency: {median_s: 2.0, p95_s: 4.0}
          faults: {rate_limited: 0.5}
    """
    profiles = {**DEFAULT_PROFILES, **plugin_profiles()}
    if path is None:
        return profiles
    if not path.is_file():
        raise ConfigError(f"sandbox profile file {path} not found")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: must map provider names ({', '.join(profiles)}) to profile fields")
    for name, fields in doc.items():
        if name not in profiles:
            raise ConfigError(f"{path}: unknown sandbox provider {name!r}; known: {', '.join(profiles)}")
        if not isinstance(fields, dict):
            raise ConfigError(f"{path}: {name}: must be a mapping of profile fields")
        merged = {**profiles[name].model_dump(), **fields}
        try:
            profiles[name] = ProviderProfile.model_validate(merged)
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{path}: {name}: {details}") from exc
    return profiles
