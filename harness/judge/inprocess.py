"""The sandbox's judges in this process (no server, no port): what ``harness judge`` on a sandboxed run,
``harness demo`` and the tests use. The same simulated servers answer as over HTTP, through httpx's ASGI
transport: :class:`~harness.sandbox.openrouter.OpenRouterServer` for ``MODEL@openrouter``, the Gemini
sandbox (its judges: ``harness.sandbox.gemini.JUDGES``) for ``MODEL@google``."""

from __future__ import annotations

import asyncio

import httpx

from harness.judge.ask import JudgeOptions, JudgeSummary, judge_run
from harness.judge.target import JudgeTarget
from harness.protocols.registry import sandbox_layout
from harness.sandbox.openrouter import JudgeSettings, OpenRouterServer
from harness.sandbox.simulation import SandboxSettings, SimulatedProvider
from harness.store.core import Store

BASE_URL = "http://sandbox.invalid"
"""Where the in-process judges answer (never resolved: the ASGI transport handles every request)."""
DEFAULT_JUDGE = JudgeTarget("google/gemini-2.5-flash", "openrouter")


SANDBOX_PROTOCOLS = {"openrouter": "openrouter", "google": "gemini"}
"""Judge provider -> the sandbox protocol that plays its judges."""


def sandbox_client(judges: dict[str, JudgeSettings] | None = None, time_scale: float = 0.001,
                   provider: str = "openrouter") -> httpx.AsyncClient:
    """An HTTP client whose requests the simulated ``provider`` API answers in process (``judges`` replaces
    the simulated OpenRouter's judge table)."""
    name = SANDBOX_PROTOCOLS[provider]
    spec = sandbox_layout().served[name]
    sim = SimulatedProvider(name=name, profile=spec.default_profile(),
                            settings=SandboxSettings(time_scale=time_scale, faults=False))
    app = OpenRouterServer(sim, judges).app() if name == "openrouter" else spec.server_class()(sim).app()
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


def judge_sandboxed(store: Store, run_id: str, target: JudgeTarget = DEFAULT_JUDGE,
                    options: JudgeOptions | None = None,
                    judges: dict[str, JudgeSettings] | None = None) -> JudgeSummary:
    """Ask a sandbox judge about a sandboxed run (blocking; call it outside an event loop)."""
    async def go() -> JudgeSummary:
        async with sandbox_client(judges, provider=target.provider) as client:
            return await judge_run(store, run_id, target, options or JudgeOptions(), client=client,
                                   base_url=BASE_URL, api_key="sandbox-judge-key")
    return asyncio.run(go())
