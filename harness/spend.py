"""Spend control: a ledger that keeps a run under its caps, and the estimate a run prints before it starts.

Every request is counted at the cost the harness itself computes (:mod:`harness.pricing`), bounded before it
is sent (:func:`harness.pricing.request_bound`). The ledger reserves that bound while the request is in flight
and settles it to the computed cost when the request ends; a request that timed out is settled at its bound,
because the provider may still bill it. A request is only sent when its bound fits under every cap it counts
against with everything already spent and everything still in flight: so as long as no settled cost exceeds
its bound, the run can never spend more than its cap. When a request could never fit (what is already spent
plus its bound is over the cap), the target is stopped: the rest of its requests are not sent.

Amounts are kept as whole nano-dollars (10^-9 USD) so that adding up thousands of small costs cannot drift past
a cap by a rounding error; bounds and costs round up, caps round down.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.errors import ConfigError
from harness.pricing import (
    RequestShape,
    UnboundedPrice,
    batch_discount,
    image_price,
    list_request_bound,
    price_unit_of,
    request_bound,
    request_tier,
)
from harness.providers.base import GenerationRequest
from harness.targets import Target

if TYPE_CHECKING:
    from harness.run.items import WorkItem
    from harness.run.options import RunOptions

NANO = 1_000_000_000
"""Nano-dollars per USD."""

SPEND_CAP_REASON = "spend cap"
"""``error_message`` prefix of the not-sent attempts a spend cap leaves (``error_kind = "not_sent"``)."""


def to_nano(usd: float, *, up: bool) -> int:
    """USD as whole nano-dollars, rounded up (costs, bounds) or down (caps)."""
    scaled = usd * NANO
    return math.ceil(scaled - 1e-6) if up else math.floor(scaled + 1e-6)


def to_usd(nano: int) -> float:
    return nano / NANO


def shape_of(request: GenerationRequest) -> RequestShape:
    """What the harness knows about a request before sending it, for its spend bound."""
    return RequestShape(size=request.size, images=max(1, request.n), prompt_bytes=len(request.prompt.encode()),
                        references=len(request.references) + (1 if request.mask is not None else 0))


@dataclass(frozen=True)
class SpendCaps:
    """Caps in USD: ``run_usd`` over the whole run, ``per_target_usd`` for each target on its own. None: no cap."""

    run_usd: float | None = None
    per_target_usd: float | None = None

    def __post_init__(self) -> None:
        for option, value in (("--max-spend", self.run_usd), ("--max-spend-per-target", self.per_target_usd)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{option} must be a positive amount in USD, not {value!r}")

    @property
    def any(self) -> bool:
        return self.run_usd is not None or self.per_target_usd is not None


@dataclass
class Reservation:
    """A request's bound held against the caps while it is in flight; settled exactly once."""

    target: str
    bound_nano: int
    settled: bool = False

    @property
    def bound_usd(self) -> float:
        return to_usd(self.bound_nano)


@dataclass(frozen=True)
class SpendTotals:
    """What a run has spent (settled) per target and overall, in USD, and what is still in flight."""

    per_target_usd: dict[str, float]
    total_usd: float
    in_flight_usd: float
    overrun_usd: float
    """How much settled costs exceeded their bounds (a provider-reported cost above the target's ceiling)."""


@dataclass
class SpendLedger:
    """Per-run and per-target spend with reservations for requests in flight.

    ``already_spent`` (USD per target) is what earlier processes of the same run spent: a resumed run counts it
    against its caps. All methods are plain in-memory arithmetic; :meth:`reserve` waits (without blocking the
    event loop) only while requests in flight might free room for the next one.
    """

    caps: SpendCaps = field(default_factory=SpendCaps)
    already_spent: Mapping[str, float] = field(default_factory=dict)
    _spent: dict[str, int] = field(default_factory=dict, init=False)
    _reserved: dict[str, int] = field(default_factory=dict, init=False)
    _overrun: int = field(default=0, init=False)
    _waiters: list[asyncio.Future[None]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        for name, usd in self.already_spent.items():
            self._spent[name] = self._spent.get(name, 0) + to_nano(usd, up=True)

    @property
    def _run_cap(self) -> int | None:
        return None if self.caps.run_usd is None else to_nano(self.caps.run_usd, up=False)

    @property
    def _target_cap(self) -> int | None:
        return None if self.caps.per_target_usd is None else to_nano(self.caps.per_target_usd, up=False)

    def _fits(self, target: str, bound: int, *, with_in_flight: bool) -> bool:
        spent_all = sum(self._spent.values()) + (sum(self._reserved.values()) if with_in_flight else 0)
        spent_target = self._spent.get(target, 0) + (self._reserved.get(target, 0) if with_in_flight else 0)
        run_cap, target_cap = self._run_cap, self._target_cap
        return ((run_cap is None or spent_all + bound <= run_cap)
                and (target_cap is None or spent_target + bound <= target_cap))

    def could_ever_fit(self, target: str, bound_usd: float) -> bool:
        """Whether a request with this bound fits once everything in flight has settled at nothing: when it
        does not, nothing more will ever be sent to ``target`` at this bound."""
        return self._fits(target, to_nano(bound_usd, up=True), with_in_flight=False)

    def try_reserve(self, target: str, bound_usd: float) -> Reservation | None:
        """Reserve ``bound_usd`` for a request to ``target`` if it fits under every cap now; None otherwise."""
        bound = to_nano(bound_usd, up=True)
        if not self._fits(target, bound, with_in_flight=True):
            return None
        self._reserved[target] = self._reserved.get(target, 0) + bound
        return Reservation(target, bound)

    async def reserve(self, target: str, bound_usd: float) -> Reservation | None:
        """Reserve ``bound_usd`` for a request to ``target``, waiting while requests in flight may still free
        room; None when it can never fit (the caller stops sending to the target)."""
        while True:
            if not self.could_ever_fit(target, bound_usd):
                return None
            held = self.try_reserve(target, bound_usd)
            if held is not None:
                return held
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def settle(self, reservation: Reservation, cost_usd: float) -> None:
        """End a reservation: count ``cost_usd`` (the computed cost of what was sent) in place of its bound."""
        if reservation.settled:
            raise RuntimeError(f"reservation for {reservation.target} settled twice")
        reservation.settled = True
        cost = to_nano(max(0.0, cost_usd), up=True)
        self._reserved[reservation.target] -= reservation.bound_nano
        self._spent[reservation.target] = self._spent.get(reservation.target, 0) + cost
        self._overrun += max(0, cost - reservation.bound_nano)
        self._notify()

    def settle_at_bound(self, reservation: Reservation) -> None:
        """End a reservation whose request timed out or was abandoned after sending: the provider may still bill
        it, so it counts at its bound."""
        self.settle(reservation, reservation.bound_usd)

    def hold(self, target: str, bound_usd: float) -> Reservation:
        """Reserve ``bound_usd`` whatever the caps say: for a batch job the provider already has (a resumed
        run's submitted job), which will be billed whether or not it fits."""
        bound = to_nano(bound_usd, up=True)
        self._reserved[target] = self._reserved.get(target, 0) + bound
        return Reservation(target, bound)

    def release(self, reservation: Reservation) -> None:
        """End a reservation for a request that was never sent: it costs nothing."""
        self.settle(reservation, 0.0)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def totals(self) -> SpendTotals:
        names = sorted(set(self._spent) | set(self._reserved))
        return SpendTotals(per_target_usd={n: to_usd(self._spent.get(n, 0)) for n in names},
                           total_usd=to_usd(sum(self._spent.values())),
                           in_flight_usd=to_usd(sum(self._reserved.values())),
                           overrun_usd=to_usd(self._overrun))


def not_sent_reason(target: str, bound_usd: float, ledger: SpendLedger) -> str:
    """The ``error_message`` of a request a spend cap kept from being sent."""
    totals = ledger.totals()
    caps = ledger.caps
    parts = []
    if caps.run_usd is not None:
        parts.append(f"run ${totals.total_usd:.4f} of ${caps.run_usd:g}")
    if caps.per_target_usd is not None:
        parts.append(f"target ${totals.per_target_usd.get(target, 0.0):.4f} of ${caps.per_target_usd:g}")
    return f"{SPEND_CAP_REASON}: next request could cost ${bound_usd:.4f} ({'; '.join(parts)} spent)"


# ---- before a run: bounds, caps and the estimate ------------------------------------------------------------


@dataclass(frozen=True)
class TargetPlan:
    """The requests a run will send to one target (one shape per logical request)."""

    target: Target
    shapes: Sequence[RequestShape]


def plans_for(items: Sequence[WorkItem], targets: Sequence[Target], options: RunOptions) -> list[TargetPlan]:
    """The run's requests grouped by target, as the shapes their spend bounds and estimate are computed from."""
    from harness.run.items import build_request  # the run imports this module for its caps

    shapes: dict[str, list[RequestShape]] = {t.name: [] for t in targets}
    by_name = {t.name: t for t in targets}
    for item in items:
        target = by_name[item.key.target]
        shapes[target.name].append(shape_of(build_request(item, target, options)))
    return [TargetPlan(by_name[name], found) for name, found in shapes.items() if found]


def check_caps(plans: Iterable[TargetPlan], caps: SpendCaps) -> dict[str, float]:
    """The largest bound of one request per target; raises :class:`ConfigError` naming the option when a cap is
    below one request's bound, and :class:`UnboundedPrice` naming the target when a token-priced target has no
    output cap or ceiling. Nothing has been sent when either is raised."""
    largest: dict[str, float] = {}
    problems: list[str] = []
    for plan in plans:
        if not plan.shapes:
            continue
        bound = max(request_bound(plan.target, shape) for shape in plan.shapes)
        largest[plan.target.name] = bound
        for option, cap in (("--max-spend", caps.run_usd), ("--max-spend-per-target", caps.per_target_usd)):
            if cap is not None and to_nano(bound, up=True) > to_nano(cap, up=False):
                problems.append(f"{option} ${cap:g} is below one request's bound for {plan.target.name} "
                                f"(${bound:.4f})")
    if problems:
        raise ConfigError("; ".join(problems) + ". Nothing was sent. Raise the cap or leave the target out.")
    return largest


def expected_request_cost(target: Target, shape: RequestShape) -> float:
    """What one successful request is expected to cost (USD): the listed price for its tier, the documented
    output tokens at the output price plus the prompt at about 4 bytes a token, or the provider-reported
    cost's list-price fallback; else its bound."""
    unit = price_unit_of(target)
    factor = 1.0 - batch_discount(target)
    if unit == "image":
        return image_price(target, request_tier(target, shape)) * shape.images * factor
    if unit == "provider_reported" and target.price_per_image_usd is not None:
        return target.price_per_image_usd * shape.images
    if unit == "token" and target.output_tokens_per_image:
        documented = RequestShape(size=shape.size, images=shape.images)
        out = list_request_bound(target.model_copy(update={"max_output_tokens": None, "max_request_usd": None}),
                                 documented)
        return (out + shape.prompt_bytes / 4 * (target.price_input_per_mtok_usd or 0.0) / 1e6) * factor
    try:
        return request_bound(target, shape)
    except UnboundedPrice:
        return 0.0


@dataclass(frozen=True)
class TargetEstimate:
    """One target's line in the estimate. Costs USD, times seconds; ``None`` where the price is unknown."""

    target: str
    requests: int
    low_usd: float | None
    likely_usd: float | None
    high_usd: float | None
    wall_s: float
    limit: str
    """What paces the target: ``"600 rpm"``, ``"2 concurrent"``, ``"run concurrency 4"``."""


@dataclass(frozen=True)
class Estimate:
    """A run's estimate, with the assumptions it rests on spelled out for the reader."""

    rows: list[TargetEstimate]
    low_usd: float | None
    likely_usd: float | None
    high_usd: float | None
    wall_s: float
    assumptions: list[str]


BATCH_WINDOW_S = 24 * 3600.0
"""The time a batch job may take: OpenAI's only ``completion_window`` ("24h") and Gemini Batch Mode's 24-hour
target turnaround (https://ai.google.dev/gemini-api/docs/batch-mode)."""


def estimate(plans: Sequence[TargetPlan], *, retries: int, concurrency: int, rpm: float | None = None,
             respect_limits: bool = True, success_rate: float = 0.95, latency_s: float = 20.0) -> Estimate:
    """Requests, cost range and wall time of a run before anything is sent.

    Low: every request succeeds at its first attempt at its expected cost. Likely: each attempt succeeds with
    probability ``success_rate``, failures are retried up to ``retries`` times and cost nothing. High: every
    attempt fails late, is retried ``retries`` times and each is billed at its bound. Wall time: each target
    sends at most ``min(run concurrency, its published concurrency)`` at once, each taking ``latency_s``, and no
    faster than the run's ``rpm``, else its published requests per minute; targets run side by side. Without
    ``respect_limits`` (``--ignore-limits``) published limits are not applied, as in the run itself.
    """
    if not 0 < success_rate <= 1:
        raise ConfigError(f"success rate must be in (0, 1], not {success_rate}")
    rows: list[TargetEstimate] = []
    attempts_likely = sum((1 - success_rate) ** k for k in range(retries + 1))
    p_success = 1 - (1 - success_rate) ** (retries + 1)
    for plan in plans:
        t, n = plan.target, len(plan.shapes)
        batch = t.mode == "batch"
        try:
            bounds = [request_bound(t, s) for s in plan.shapes]
            high: float | None = sum(bounds) * (1 if batch else retries + 1)
        except UnboundedPrice:
            high = None
        expected = [expected_request_cost(t, s) for s in plan.shapes]
        known = price_unit_of(t) is not None
        low = sum(expected) if known else None
        likely = low * (success_rate if batch else p_success) if low is not None else None
        if batch:
            rows.append(TargetEstimate(t.name, n, low, likely, high, BATCH_WINDOW_S, "batch jobs, 24 h window"))
            continue
        published_concurrency = t.concurrency if respect_limits else None
        in_flight = min(concurrency, published_concurrency or concurrency)
        pace = rpm if rpm is not None else (t.rpm if respect_limits else None)
        by_concurrency = n * attempts_likely * latency_s / in_flight
        by_rate = n * attempts_likely * 60.0 / pace if pace else 0.0
        limit = (f"{pace:g} rpm" if pace and by_rate >= by_concurrency else
                 f"{published_concurrency} concurrent" if in_flight < concurrency else
                 f"run concurrency {concurrency}")
        rows.append(TargetEstimate(t.name, n, low, likely, high, max(by_concurrency, by_rate), limit))

    def total(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    assumptions = [
        "all ok: every request succeeds at its first attempt at its listed price (tier from the requested size; "
        "token targets at their documented tokens per image, the prompt at ~4 bytes a token)",
        f"likely: {success_rate:.0%} of attempts succeed, failures retried up to {retries} time(s) and not billed",
        f"at most: every attempt billed at its bound and retried {retries} time(s) (timeouts count at their bound)",
        f"wall time: {latency_s:g} s per attempt, at most min(--concurrency {concurrency}, the target's published "
        f"concurrency) at once, no faster than its published rpm" + (f" or --rpm {rpm:g}" if rpm else "")
        + "; targets run side by side",
    ]
    if any(p.target.mode == "batch" for p in plans):
        assumptions.append("batch targets: each request is sent once (no retries) at the batch price, and a job "
                           "may take the provider's whole 24 h window (docs/batch.md)")
    return Estimate(rows, total([r.low_usd for r in rows]), total([r.likely_usd for r in rows]),
                    total([r.high_usd for r in rows]), max((r.wall_s for r in rows), default=0.0), assumptions)


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}" if value >= 10 else f"${value:.4f}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_estimate(est: Estimate) -> str:
    """The estimate as plain text for a terminal (one line per target, totals, then the assumptions)."""
    width = max([len(r.target) for r in est.rows] + [6])
    lines = [f"{'target':<{width}}  requests  {'all ok':>10}  {'likely':>10}  {'at most':>10}  {'wall time':>9}  paced by"]
    for r in est.rows:
        lines.append(f"{r.target:<{width}}  {r.requests:>8}  {_usd(r.low_usd):>10}  {_usd(r.likely_usd):>10}  "
                     f"{_usd(r.high_usd):>10}  {_duration(r.wall_s):>9}  {r.limit}")
    lines.append(f"{'total':<{width}}  {sum(r.requests for r in est.rows):>8}  {_usd(est.low_usd):>10}  "
                 f"{_usd(est.likely_usd):>10}  {_usd(est.high_usd):>10}  {_duration(est.wall_s):>9}")
    lines.append("Assumptions:")
    lines.extend(f"  - {a}" for a in est.assumptions)
    return "\n".join(lines)


def format_totals(totals: SpendTotals, caps: SpendCaps | None = None) -> str:
    """Spend per target and overall, as printed at the end of every run."""
    lines = [f"  {name}: ${usd:.4f}" for name, usd in totals.per_target_usd.items()]
    cap = f" of ${caps.run_usd:g} cap" if caps is not None and caps.run_usd is not None else ""
    lines.append(f"  total: ${totals.total_usd:.4f}{cap}")
    if totals.overrun_usd > 0:
        lines.append(f"  (providers reported ${totals.overrun_usd:.4f} more than the targets' per-request ceilings)")
    return "Spend (computed by the harness from list prices):\n" + "\n".join(lines)


# ---- the seam a run uses --------------------------------------------------------------------------------------

TIMEOUT_COST_SOURCE = "timeout_bound"
"""``cost_source`` of a timed-out attempt counted at its bound."""


@dataclass
class SpendGuard:
    """What a run's dispatcher calls around every attempt it sends: :meth:`admit` before (None: do not send,
    the target is stopped by the cap, :attr:`stopped` has the reason) and :meth:`settle` after, with the
    attempt's record. Without caps it only counts, so every run can print its spend."""

    ledger: SpendLedger
    stopped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_run(cls, caps: SpendCaps, already_spent: Mapping[str, float] | None = None) -> SpendGuard:
        return cls(SpendLedger(caps, already_spent or {}))

    def bound(self, target: Target, request: GenerationRequest) -> float:
        """The request's bound; 0 when the run has no cap and the target's price cannot be bounded (nothing to
        hold it against; :func:`check_caps` refuses such targets before a capped run starts)."""
        try:
            return request_bound(target, shape_of(request))
        except UnboundedPrice:
            if self.ledger.caps.any:
                raise
            return 0.0

    async def admit(self, target: Target, request: GenerationRequest) -> Reservation | None:
        if target.name in self.stopped:
            return None
        bound = self.bound(target, request)
        held = await self.ledger.reserve(target.name, bound)
        if held is None:
            self.stopped[target.name] = not_sent_reason(target.name, bound, self.ledger)
        return held

    async def admit_job(self, target: Target, requests: Sequence[GenerationRequest]) -> tuple[Reservation | None, int]:
        """Reserve a batch job's whole bound before it is submitted: ``(reservation, n)`` where the first ``n``
        requests fit under the caps (the job carries only those; the rest are not sent, and the target is
        stopped with the reason). ``(None, 0)`` when not even the first fits."""
        if target.name in self.stopped:
            return None, 0
        bounds = [self.bound(target, r) for r in requests]
        total, n = 0.0, 0
        for bound in bounds:
            if not self.ledger.could_ever_fit(target.name, total + bound):
                break
            total += bound
            n += 1
        if n < len(bounds):
            self.stopped[target.name] = not_sent_reason(target.name, bounds[n], self.ledger)
        if n == 0:
            return None, 0
        held = await self.ledger.reserve(target.name, total)
        if held is None:
            self.stopped[target.name] = not_sent_reason(target.name, total, self.ledger)
            return None, 0
        return held, n

    def settle(self, reservation: Reservation, cost_usd: float, *, timed_out: bool) -> float:
        """End the attempt's reservation; returns the cost counted (the bound for a timed-out attempt)."""
        if timed_out and reservation.bound_nano > to_nano(cost_usd, up=True):
            self.ledger.settle_at_bound(reservation)
            return reservation.bound_usd
        self.ledger.settle(reservation, cost_usd)
        return cost_usd

    def totals(self) -> SpendTotals:
        return self.ledger.totals()

