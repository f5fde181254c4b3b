"""Shared fixtures: the embedded sandbox, small challenge suites, and the opt-in live tests."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from harness.providers.base import InputImage
from harness.sandbox.servers import SandboxServer
from harness.sandbox.simulation import SandboxSettings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-live", action="store_true", default=False,
                     help="run tests marked `live` against real provider APIs (needs their keys; costs money)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-live"):
        return
    skip = pytest.mark.skip(reason="live provider test: pass --run-live (and set the provider's key) to run it")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    """Every simulated provider on one loopback port, 100x faster than real time, no random faults."""
    server = SandboxServer(settings=SandboxSettings(time_scale=0.01, faults=False, seed=1)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sandbox runs of ``harness trend``'s tests (see :func:`tests.test_trend.build_series`), built once per
    test process: the trend tests and the report's trend section read the same runs, and never write them."""
    from tests.test_trend import build_series

    return build_series(tmp_path_factory.mktemp("trend"))


@pytest.fixture(scope="session")
def judged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Any]:
    """The judged sandbox run of the agreement tests (see :func:`tests.test_agreement.build_judged_run`), built
    once per test process and only read."""
    from tests.test_agreement import build_judged_run

    return build_judged_run(tmp_path_factory)


def photo_like(size: tuple[int, int], seed: int = 0) -> bytes:
    """A PNG with real structure (gradients and shapes), deterministic per seed."""
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(img)
    w, h = size
    for i in range(6):
        x, y = (seed * 37 + i * 53) % w, (seed * 71 + i * 29) % h
        draw.ellipse((x - w // 8, y - h // 8, x + w // 8, y + h // 8), fill=((40 * i + seed) % 256, 120, 200))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def mask_png(size: tuple[int, int]) -> bytes:
    """A white-means-repaint mask: a centred rectangle."""
    mask = Image.new("L", size, 0)
    w, h = size
    ImageDraw.Draw(mask).rectangle((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=255)
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


def image(name: str, size: tuple[int, int], seed: int = 0) -> InputImage:
    """A reference image for a request, as a challenge would load it."""
    data = photo_like(size, seed)
    return InputImage(name=name, data=data, mime="image/png", width=size[0], height=size[1],
                      sha256=hashlib.sha256(data).hexdigest())


def mask(size: tuple[int, int]) -> InputImage:
    """An inpainting mask for a request (white = repaint)."""
    data = mask_png(size)
    return InputImage(name="mask.png", data=data, mime="image/png", width=size[0], height=size[1],
                      sha256=hashlib.sha256(data).hexdigest())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client for adapter tests (the runner's client pool is not needed one request at a time)."""
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    """A suite with one challenge of every kind (two variants on the text-to-image one)."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "a.png").write_bytes(photo_like((96, 64), 1))
    (suite / "b.png").write_bytes(photo_like((80, 80), 2))
    (suite / "mask.png").write_bytes(mask_png((96, 64)))
    (suite / "suite.yaml").write_text(
        """challenges:
  - id: fox
    title: Fox
    category: illustration
    kind: text-to-image
    prompt: "A watercolor {{ animal }} reading a newspaper"
    variables: {animal: fox}
    variants: {terse: "{{ animal }}, newspaper"}
    params: {aspect_ratio: "1:1", seed: 42}
  - id: smile
    title: Smile edit
    category: portraiture
    kind: edit
    prompt: Make the person smile
    references: [a.png]
  - id: together
    title: Compose
    category: product
    kind: compose
    prompt: Put the object of image 1 next to image 2
    references: [a.png, b.png]
  - id: fill
    title: Inpaint
    category: photorealism
    kind: inpaint
    prompt: Fill the hole with flowers
    references: [a.png]
    mask: mask.png
""",
        encoding="utf-8",
    )
    return suite


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def delay_server() -> Iterator[str]:
    """A separate-process server with known injected delays (see tests/delay_server.py); yields its root URL."""
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.delay_server", str(port)],
                            cwd=Path(__file__).resolve().parents[1])
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.post(f"{root}/d/0/0/0/v1/images/generations", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("delay server did not start") from None
            time.sleep(0.05)
    yield root
    proc.terminate()
    proc.wait(timeout=10)


# --- PostgreSQL: a throwaway cluster for the store's contract tests (see tests/pg.py) ---------------------

@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """A throwaway PostgreSQL cluster for the whole session. Skips (with the reason) where the server binaries
    or psycopg are absent; fails instead when ``HARNESS_REQUIRE_POSTGRES=1`` (CI)."""
    from tests import pg

    reason = pg.unavailable()
    if reason is not None:
        if pg.required():
            pytest.fail(f"{pg.REQUIRE_ENV}=1 but PostgreSQL cannot be started: {reason}")
        pytest.skip(f"PostgreSQL tests skipped: {reason} (install Debian's postgresql package to run them)")
    cluster = pg.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: object, tmp_path: Path) -> str:
    """A store URL naming a fresh, empty schema of the throwaway cluster, images in a temporary folder."""
    from tests import pg

    assert isinstance(pg_cluster, pg.Cluster)
    schema = f"s_{os.urandom(6).hex()}"
    pg_cluster.admin(f"CREATE SCHEMA {schema}")
    return pg_cluster.url("postgres", options=f"-c search_path={schema}", images=str(tmp_path / "pg-images"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The location of a fresh store on each backend: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "harness.db")
    return str(request.getfixturevalue("pg_url"))
