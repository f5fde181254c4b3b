"""Refuse to compare runs measured under different clock definitions (``RunInfo.clock_version``).

Clock version 2 ends latency at the provider's last byte; version 1 also counted decoding and validating the
images. A baseline of version 1 against a candidate of version 2 therefore shows every target faster than it
was, by the harness's own work per image: a false improvement that can hide a real regression of the same
size. ``harness compare`` refuses such a pair unless told to (``--allow-clock-mismatch``), and then says so in
the comparison's notes.
"""

from __future__ import annotations

from harness.errors import ConfigError
from harness.records import RunInfo

CLOCK_CHANGES = {
    2: "latency ends at the provider's last byte; decoding and validating images moved to client_ms",
}
"""What each clock version changed, for the message (version -> change)."""


def clock_mismatch(base: RunInfo, cand: RunInfo) -> str | None:
    """Why the two runs' latencies are not comparable, or ``None`` when their clock versions agree."""
    if base.clock_version == cand.clock_version:
        return None
    low, high = sorted((base.clock_version, cand.clock_version))
    changes = "; ".join(f"v{v}: {CLOCK_CHANGES[v]}" for v in range(low + 1, high + 1) if v in CLOCK_CHANGES)
    older = "baseline" if base.clock_version < cand.clock_version else "candidate"
    return (f"runs {base.id} (clock v{base.clock_version}) and {cand.id} (clock v{cand.clock_version}) were "
            f"measured under different definitions ({changes or 'see docs/measurement.md'}); the {older}'s "
            "latencies include work the other's leave out, so the comparison would show a change that is the "
            "definition's, not the provider's — and could hide a real regression of that size")


def check_clock_versions(base: RunInfo, cand: RunInfo, *, allow: bool) -> str | None:
    """Raise :class:`ConfigError` on a mismatch unless ``allow``; with ``allow``, the note to show."""
    problem = clock_mismatch(base, cand)
    if problem is None:
        return None
    if not allow:
        raise ConfigError(f"not comparing: {problem}. Re-run the baseline with this harness, or pass "
                          "--allow-clock-mismatch to compare anyway")
    return f"clock versions differ (compared on request): {problem}"
