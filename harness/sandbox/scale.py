"""Which time scale this machine's client can drive: the request rate a sandbox run asks of it.

A sandbox run at time scale ``s`` compresses every simulated delay by ``s``, so the same requests arrive
``1/s`` times faster. The sandbox itself keeps up (its own process, cached images, deadline timers); the
client does not always: every answer costs it CPU (reading, base64, decoding and validating the image,
hashing and storing it), and once answers arrive faster than it can take them, its event loop falls behind
and the lateness lands in every latency it measures — the run then measures this machine, not the
profiles. By Little's law a target with ``c`` requests in flight and mean latency ``L·s`` asks for ``c /
(L·s)`` answers per second, plus, for a queue API that polls, ``c / poll`` status polls per second.

:data:`CLIENT_BUDGET_PER_S` is the answer rate a run may ask of a two-core machine that also does other
work (see docs/sandbox.md for the measurements behind it); :func:`min_time_scale` turns it into the smallest
scale a set of targets may use, and :func:`time_scale_warning` into the sentence to show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.sandbox.profiles import DEFAULT_PROFILES, ProviderProfile

CLIENT_BUDGET_PER_S = 20.0
"""Image answers per second (polls weighted by :data:`POLL_WEIGHT`) a sandbox run may ask of the client
on a shared two-core machine and still be measured within 5 % of its profiles (docs/sandbox.md)."""
POLL_WEIGHT = 0.05
"""Client cost of a status poll (a small JSON answer) relative to an image answer."""
DEFAULT_POLL_INTERVAL_S = 0.5
"""Poll interval of the queue adapters in provider seconds (fal, Replicate after its wait)."""
MIN_POLL_INTERVAL_S = 0.02
"""Floor of a scaled poll interval in real seconds (the adapters never poll faster)."""
SCALE_LADDER = (0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)
"""Time scales a recommendation is rounded up to."""
RECOMMENDED_TIME_SCALE = 0.4
"""The scale the README recommends for a run of every catalog target at the default concurrency (4): the
smallest ladder scale :func:`min_time_scale` allows for that configuration."""


def _provider(protocol: str) -> str | None:
    from harness.sandbox.servers import PROTOCOL_TO_PROVIDER

    return PROTOCOL_TO_PROVIDER.get(protocol)


def _field(target: Any, name: str) -> Any:
    return target.get(name) if isinstance(target, Mapping) else getattr(target, name, None)


def _mean_latency_s(profile: ProviderProfile, model: str) -> float:
    """Mean simulated seconds of one generation (lognormal mean), plus the body's transfer."""
    lat = profile.latency
    mean = lat.median_s * math.exp(lat.sigma ** 2 / 2) * profile.speed(model)
    if profile.transfer is not None:
        mean += profile.transfer.median_s * math.exp(profile.transfer.sigma ** 2 / 2)
    return mean


def demanded_rate(targets: Sequence[Any], *, concurrency: int, time_scale: float, respect_limits: bool = True,
                  profiles: Mapping[str, ProviderProfile] | None = None) -> float:
    """Weighted answers per second a sandbox run of ``targets`` asks of the client (see module docstring).

    ``targets``: :class:`~harness.targets.Target` objects or frozen target dicts (``protocol``, ``model``,
    ``concurrency``, ``options``, ``mode``). Targets of a protocol the sandbox does not simulate are left out,
    and so are batch targets: their requests leave as one job and come back as one result file, so the client
    answers a submit and a poll every few (scaled) seconds, not one response per generation.
    """
    from harness.wire import fal as fal_wire

    profiles = profiles or DEFAULT_PROFILES
    total = 0.0
    for t in targets:
        if _field(t, "mode") == "batch":
            continue
        provider = _provider(str(_field(t, "protocol")))
        if provider is None or provider not in profiles:
            continue
        limit = _field(t, "concurrency")
        c = min(concurrency, int(limit)) if respect_limits and limit else concurrency
        model = str(_field(t, "model") or "")
        if provider == "fal":
            model = fal_wire.gemini_model(model) or model
        latency = _mean_latency_s(profiles[provider], model) * time_scale
        total += c / latency
        options = _field(t, "options") or {}
        if provider == "fal" and options.get("mode", "queue") == "queue" and options.get("status_updates") != "stream":
            interval = max(float(options.get("poll_interval_s", DEFAULT_POLL_INTERVAL_S)) * time_scale,
                           MIN_POLL_INTERVAL_S)
            total += POLL_WEIGHT * c / interval
    return total


def min_time_scale(targets: Sequence[Any], *, concurrency: int, respect_limits: bool = True,
                   profiles: Mapping[str, ProviderProfile] | None = None,
                   budget_per_s: float = CLIENT_BUDGET_PER_S) -> float:
    """The smallest scale of :data:`SCALE_LADDER` whose :func:`demanded_rate` is within ``budget_per_s``
    (1.0 when none is)."""
    for scale in SCALE_LADDER:
        if demanded_rate(targets, concurrency=concurrency, time_scale=scale, respect_limits=respect_limits,
                         profiles=profiles) <= budget_per_s:
            return scale
    return 1.0


def time_scale_warning(targets: Sequence[Any], *, concurrency: int, time_scale: float,
                       respect_limits: bool = True, profiles: Mapping[str, ProviderProfile] | None = None,
                       budget_per_s: float = CLIENT_BUDGET_PER_S) -> str | None:
    """The warning ``harness run --sandbox`` should print before a run the client cannot drive, else ``None``."""
    rate = demanded_rate(targets, concurrency=concurrency, time_scale=time_scale, respect_limits=respect_limits,
                         profiles=profiles)
    if rate <= budget_per_s:
        return None
    use = min_time_scale(targets, concurrency=concurrency, respect_limits=respect_limits, profiles=profiles,
                         budget_per_s=budget_per_s)
    return (f"time scale {time_scale:g} asks the client for about {rate:.0f} answers/s across {len(targets)} "
            f"target(s) at concurrency {concurrency}, more than the ~{budget_per_s:g}/s it can take without its "
            f"own delays entering the latencies; use --time-scale {use:g} or more (or fewer targets or a lower "
            "--concurrency) for figures that are the profiles'")
