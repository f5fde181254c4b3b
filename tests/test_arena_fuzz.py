"""The API fuzzed from its own OpenAPI schema (schemathesis strategies, driven by hypothesis) against the
app served by uvicorn on loopback: no generated request, valid or deliberately invalid, causes a server
error, and every answer matches the documented status codes, content types and bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from harness.arena.app import create_app
from harness.arena.config import ArenaConfig, RateLimit
from harness.arena.server import BackgroundServer
from tests.test_arena_pool import build_arena_store, clone_store

GENEROUS = RateLimit(per_minute=1e6, burst=100_000)
OPERATIONS = [("/api/pair", "GET"), ("/api/vote", "POST"), ("/api/skip", "POST"), ("/api/health", "GET"),
              ("/img/{image_id}", "GET"), ("/leaderboard.json", "GET")]


@pytest.fixture(scope="module")
def live_arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """An arena that never runs out of pairs for one client: the fuzzing votes far more often than a person,
    so recognition memory and the serving cap (tested in test_arena_recognition.py) are off here."""
    shared = build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")
    store = clone_store(shared, tmp_path_factory.mktemp("fuzz-store"))
    app = create_app(ArenaConfig(db=store.db, cache_dir=store.cache_dir, voter_votes=GENEROUS, ip_votes=GENEROUS,
                                 reveal_memory="off", max_servings=None))
    server = BackgroundServer(app).start()
    yield server.url, schemathesis.openapi.from_dict(app.openapi())
    server.stop()


def test_every_published_operation_is_fuzzed(live_arena: tuple[str, Any]) -> None:
    _, schema = live_arena
    published = {(op.ok().path, op.ok().method.upper()) for op in schema.get_all_operations()}
    assert published == set(OPERATIONS)


@pytest.mark.parametrize(("path", "method", "mode"), [
    *((path, method, GenerationMode.POSITIVE) for path, method in OPERATIONS),
    # invalid inputs exist only where there are inputs: a body and a path parameter
    ("/api/vote", "POST", GenerationMode.NEGATIVE), ("/img/{image_id}", "GET", GenerationMode.NEGATIVE),
])
def test_no_generated_request_causes_a_server_error(live_arena: tuple[str, Any], path: str, method: str,
                                                    mode: GenerationMode) -> None:
    url, schema = live_arena
    statuses: list[int] = []

    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        response = case.call(base_url=url)
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                 content_type_conformance, response_schema_conformance])

    fuzz()
    assert statuses and max(statuses) < 500


def test_votes_with_real_tokens_and_arbitrary_fields_are_stored_or_refused_never_crash(
        live_arena: tuple[str, Any]) -> None:
    """Past the token check, into the store: each example fetches a real pair and votes with arbitrary
    outcome, timing and extra fields; every answer is 200 (then stored once) or 422 (nothing stored)."""
    url, _ = live_arena
    outcomes: list[int] = []
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
    body = st.fixed_dictionaries(
        {"outcome": st.one_of(st.sampled_from(["left", "right", "tie", "both_bad"]), scalars)},
        optional={"client_ms": scalars, "extra": scalars},
    )

    with httpx.Client(base_url=url) as client:
        before = client.get("/api/health").json()["votes"]

        @given(fields=body)
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def vote(fields: dict[str, Any]) -> None:
            token = client.get("/api/pair").json()["token"]
            answer = client.post("/api/vote", content=json.dumps({"token": token, **fields}, allow_nan=True),
                                 headers={"content-type": "application/json"})
            assert answer.status_code in (200, 422), answer.text
            outcomes.append(answer.status_code)

        vote()
        after = client.get("/api/health").json()["votes"]
    assert after - before == outcomes.count(200) > 0
    assert outcomes.count(422) > 0
