"""A pairwise vision-model judge: asked through our OpenRouter adapter, answered in the sandbox from the
pictures' pixels, stored with its raw answer, cached, resumable, and kept under the run's spend cap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.challenges import load
from harness.cli import cli
from harness.judge.ask import JudgeError, JudgeOptions, JudgeSummary, judge_run
from harness.judge.inprocess import BASE_URL, judge_sandboxed, sandbox_client
from harness.judge.pairs import sample_questions
from harness.judge.report import as_battles, final_verdicts, position_bias, self_preference
from harness.judge.rubric import RUBRICS, parse_verdict
from harness.judge.target import JudgeTarget, family_of
from harness.quality.readings import read_outputs
from harness.run import RunOptions, start_run
from harness.sandbox.openrouter import JudgeSettings
from harness.store import Store
from harness.store import judgements as jstore
from harness.store import runs as run_store
from harness.targets import load_targets, resolve_keys, select
from tests.conftest import mask_png, photo_like

TARGETS = ["gemini-3-pro-image-preview@google", "gpt-image-1@openai", "sd-3.5-large@replicate", "flux-dev@fal"]
GOOD_JUDGE = JudgeTarget("google/gemini-2.5-flash", "openrouter")


def write_suite(folder: Path) -> Path:
    (folder / "a.png").write_bytes(photo_like((96, 64), 1))
    (folder / "mask.png").write_bytes(mask_png((96, 64)))
    prompts = ["a red kite over green hills with a wooden windmill and white sheep",
               "a blue teapot beside golden lemons on a marble table with linen napkins",
               "a purple octopus reading maps inside a brass submarine cabin",
               "an orange lighthouse on black rocks under silver clouds with seagulls"]
    body = "challenges:\n" + "".join(
        f"  - id: t{i}\n    title: T{i}\n    category: {'illustration' if i % 2 else 'nature'}\n"
        f"    kind: text-to-image\n    prompt: \"{p}\"\n" for i, p in enumerate(prompts))
    body += ("  - id: e\n    title: E\n    category: portraiture\n    kind: edit\n"
             "    prompt: add a yellow kite and orange balloons\n    references: [a.png]\n"
             "  - id: f\n    title: F\n    category: product\n    kind: inpaint\n"
             "    prompt: fill the hole with tulips and roses\n    references: [a.png]\n    mask: mask.png\n")
    (folder / "suite.yaml").write_text(body, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def sandbox_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    suite = write_suite(tmp_path_factory.mktemp("suite"))
    db = tmp_path_factory.mktemp("store") / "harness.db"
    chosen = select(load_targets(), TARGETS)
    run = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True),
                    RunOptions(sandbox=True, time_scale=0.01, samples=3, sandbox_faults=False,
                               respect_limits=False, max_spend_usd=5.0))
    return db, run.run_id


def ask(db: Path, run_id: str, target: JudgeTarget = GOOD_JUDGE, options: JudgeOptions | None = None,
        judges: dict[str, JudgeSettings] | None = None) -> JudgeSummary:
    """Ask the sandbox's judges in process (ASGI), 1000x faster than real time."""
    with Store.open(db) as store:
        return judge_sandboxed(store, run_id, target, options or JudgeOptions(pairs=12), judges)


def test_every_rubric_has_a_version_and_names_the_request() -> None:
    for kind, rubric in RUBRICS.items():
        assert rubric.id == f"{kind}/v{rubric.version}"
        assert "Request: fox" in rubric.prompt("fox") and "WINNER: A" in rubric.text


@pytest.mark.parametrize(("answer", "verdict"), [
    ("A is sharper.\nWINNER: A", "A"), ("winner: b", "B"), ("**WINNER:** TIE", "tie"), ("WINNER: **TIE**", "tie"),
    ('{"winner": "B", "reason": "x"}', "B"), ("I prefer the first one.", None), ("", None),
    ("WINNER: A\n... on reflection WINNER: B", None), ("WINNER: A\nWINNER: A", "A"),
])
def test_the_rubric_parser_reads_a_verdict_or_says_there_is_none(answer: str, verdict: str | None) -> None:
    assert parse_verdict(answer) == verdict


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_the_parser_never_guesses_from_text_without_a_verdict_line(text: str) -> None:
    found = parse_verdict(text)
    assert found in (None, "A", "B", "tie")
    if "winner" not in text.lower():
        assert found is None


def test_a_judge_target_names_a_provider_with_a_judge_adapter() -> None:
    assert JudgeTarget.parse("google/gemini-2.5-flash@openrouter") == GOOD_JUDGE
    for bad in ("gemini", "x@nowhere", "@openrouter"):
        with pytest.raises(Exception, match="--judge"):
            JudgeTarget.parse(bad)
    assert family_of("google/gemini-2.5-flash") == family_of("gemini-3-pro-image-preview") == "google"
    assert family_of("openai/gpt-4o") == family_of("gpt-image-1") == "openai"


def test_pairs_are_of_one_challenge_from_two_targets_and_asked_in_both_orders(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    with Store.open(db, readonly=True) as store:
        outputs = run_store.outputs_frame(store, [run_id])
    questions = sample_questions(outputs, 10, seed=3)
    assert len(questions) == 20
    assert questions == sample_questions(outputs, 10, seed=3)
    for q, back in zip(questions[::2], questions[1::2], strict=True):
        assert back == q.swapped() and q.first.target != q.second.target
    comparable = {c for c, g in outputs.groupby("challenge_id") if g["target"].nunique() >= 2}
    assert {q.challenge_id for q in questions} == comparable, "a small sample still covers every challenge"


def test_a_judge_that_cannot_see_images_is_refused_before_anything_is_asked(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    with pytest.raises(JudgeError, match=r"cannot take images .*text"):
        ask(db, run_id, JudgeTarget("meta-llama/llama-3.1-8b-instruct", "openrouter"))
    with pytest.raises(JudgeError, match="not in the provider's model list"):
        ask(db, run_id, JudgeTarget("nobody/vision-9000", "openrouter"))
    with Store.open(db, readonly=True) as store:
        assert jstore.judgements_frame(store, judge="meta-llama/llama-3.1-8b-instruct@openrouter").empty


def test_verdicts_are_stored_with_raw_answer_cost_and_latency_and_a_second_pass_is_all_cache(
        sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    first = ask(db, run_id, JudgeTarget("openai/gpt-4o", "openrouter"))
    assert first.questions == 24 and first.asked == 24 and first.verdicts == 24 and first.spent_usd > 0
    again = ask(db, run_id, JudgeTarget("openai/gpt-4o", "openrouter"))
    assert again.cached == 24 and again.asked == 0 and again.spent_usd == 0
    with Store.open(db, readonly=True) as store:
        rows = jstore.judgements_frame(store, judge="openai/gpt-4o@openrouter")
    assert len(rows) == 24 and rows["raw_answer"].str.contains("WINNER").all()
    assert (rows["cost_usd"] > 0).all() and (rows["latency_ms"] > 0).all()
    assert set(rows["rubric"]) == {"text-to-image/v1", "edit/v1", "inpaint/v1"}


def test_the_sandbox_judge_prefers_the_picture_that_shows_more_of_the_request(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    ask(db, run_id, options=JudgeOptions(pairs=40))
    with Store.open(db, readonly=True) as store:
        verdicts = final_verdicts(store, [run_id], GOOD_JUDGE.spec)
        readings = read_outputs(store, run_store.outputs_frame(store, [run_id]))
    agree = total = 0
    for row in verdicts.itertuples():
        a, b = readings[row.first_sha].quality, readings[row.second_sha].quality
        if row.verdict in ("first", "second") and abs(a - b) > 0.3:
            total += 1
            agree += (row.verdict == "first") == (a > b)
    assert total >= 10 and agree / total > 0.85


def test_an_answer_without_a_verdict_is_kept_as_unparseable_and_asked_again_never_guessed(
        sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    rambler = {"x/rambler": JudgeSettings(unparseable_rate=1.0)}
    summary = ask(db, run_id, JudgeTarget("x/rambler", "openrouter"), JudgeOptions(pairs=3, retries=2), rambler)
    assert summary.questions == 6 and summary.asked == 18 and summary.unparseable == 18 and summary.verdicts == 0
    with Store.open(db, readonly=True) as store:
        rows = jstore.judgements_frame(store, judge="x/rambler@openrouter")
        verdicts = final_verdicts(store, [run_id], "x/rambler@openrouter")
    assert sorted(set(rows["try_no"])) == [0, 1, 2] and (rows["verdict"] == "unparseable").all()
    assert rows["raw_answer"].str.len().min() > 0
    assert as_battles(verdicts).empty and position_bias(verdicts)["unparseable"] == 6
    again = ask(db, run_id, JudgeTarget("x/rambler", "openrouter"), JudgeOptions(pairs=3, retries=2), rambler)
    assert again.asked == 0 and again.cached == 6


def test_a_judge_never_spends_past_the_run_s_cap(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    with Store.open(db, readonly=True) as store:
        already = run_store.spend_by_run(store)[run_id] + jstore.spent(store, run_id)
    cap = already + 0.01
    summary = ask(db, run_id, JudgeTarget("openai/gpt-4o-mini", "openrouter"),
                  JudgeOptions(pairs=40, max_spend_usd=cap, concurrency=3))
    assert summary.not_sent_for_cap > 0 and summary.asked > 0
    with Store.open(db, readonly=True) as store:
        assert run_store.spend_by_run(store)[run_id] + jstore.spent(store, run_id) <= cap


def test_a_position_biased_judge_is_caught_by_asking_both_orders(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    biased = {"x/first-lover": JudgeSettings(noise_sd=0.05, position_bias=5.0)}
    ask(db, run_id, JudgeTarget("x/first-lover", "openrouter"), JudgeOptions(pairs=20), biased)
    with Store.open(db, readonly=True) as store:
        report = position_bias(final_verdicts(store, [run_id], "x/first-lover@openrouter"))
    assert report["first_wins"]["share"] == 1.0 and report["consistent"]["share"] == 0.0


def test_self_preference_compares_the_judge_with_the_store_s_voters(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    ask(db, run_id, options=JudgeOptions(pairs=40))
    with Store.open(db, readonly=True) as store:
        report = self_preference(store, [run_id], GOOD_JUDGE.spec)
    assert report["family"] == "google" and report["judge_own_wins"]["n"] > 0
    assert report["voters_own_wins"]["share"] is None and report["gap"] is None


def test_judgements_live_in_their_own_table_on_both_backends(store_url: str) -> None:
    row = jstore.Judgement("m@openrouter", "edit/v1", "a" * 64, "b" * 64, 0, "first", "run", "c", "default", None,
                           "edit", 1, 2, "t1", "t2", "m1", "m2", "WINNER: A", None, 0.001, 12.5, 1.0)
    with Store.open(store_url) as store:
        assert jstore.insert_judgements(store, [row, row]) == 1
        assert jstore.cached(store, "m@openrouter", "edit/v1")[("a" * 64, "b" * 64)] == row
        assert jstore.spent(store, "run") == pytest.approx(0.001)


def test_the_cli_judges_a_sandboxed_run_and_reports_on_it(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    runner = CliRunner()
    result = runner.invoke(cli, ["judge", run_id, "--judge", "openai/gpt-4o@openrouter", "--pairs", "4", "--db",
                                 str(db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["questions"] == 8
    report = runner.invoke(cli, ["judge", "report", run_id, "--judge", "openai/gpt-4o@openrouter", "--db",
                                 str(db), "--json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["position"]["first_wins"]["n"] > 0
    refused = runner.invoke(cli, ["judge", run_id, "--judge", "meta-llama/llama-3.1-8b-instruct@openrouter",
                                  "--db", str(db)])
    assert refused.exit_code == 2 and "cannot take images" in refused.output


def test_a_judge_cut_off_midway_resumes_and_loses_nothing(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    target = JudgeTarget("x/resumer", "openrouter")
    judges = {"x/resumer": JudgeSettings()}
    options = JudgeOptions(pairs=10, seed=7, concurrency=1)

    async def cut_off() -> JudgeSummary:
        async with sandbox_client(judges) as inner:
            answered = 0

            async def handler(request: httpx.Request) -> httpx.Response:
                nonlocal answered
                if request.url.path.endswith("/chat/completions"):
                    answered += 1
                    if answered > 7:
                        raise httpx.ConnectError("network went away")
                reply = await inner.send(inner.build_request(request.method, str(request.url),
                                                             headers=request.headers, content=request.content))
                return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)

            async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
                with Store.open(db) as store:
                    return await judge_run(store, run_id, target, options, client=client, base_url=BASE_URL,
                                           api_key="k")

    first = asyncio.run(cut_off())
    assert first.verdicts == 7 and first.errors == 13
    second = ask(db, run_id, target, options, judges)
    assert second.asked == 13 and second.verdicts == 13 and second.cached == 7
    with Store.open(db, readonly=True) as store:
        rows = jstore.judgements_frame(store, judge=target.spec)
        final = final_verdicts(store, [run_id], target.spec)
        outputs = run_store.outputs_frame(store, [run_id])
    assert (rows["verdict"] == "error").sum() == 13 and rows["error"].dropna().str.contains("transport").all()
    sampled = {(q.first.sha256, q.second.sha256) for q in sample_questions(outputs, 10, 7)}
    assert set(zip(final["first_sha"], final["second_sha"], strict=True)) == sampled
    assert final["verdict"].isin(["first", "second", "tie"]).all(), "every question answered in the end"


def gemini_api(seen_keys: list[str]) -> httpx.MockTransport:
    """The Gemini API's model entry and generateContent as https://ai.google.dev/api/generate-content shapes
    them, answered from the pictures' pixels by the sandbox judge's own eyes."""
    import base64

    from harness.sandbox.openrouter import judge_answer

    def handler(request: httpx.Request) -> httpx.Response:
        seen_keys.append(request.headers.get("x-goog-api-key", ""))
        path = request.url.path
        if request.method == "GET":
            model = path.rsplit("/", 1)[-1]
            methods = ["embedContent"] if "embedding" in model else ["generateContent", "countTokens"]
            if model.startswith("nope"):
                return httpx.Response(404, json={"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
            return httpx.Response(200, json={"name": f"models/{model}", "supportedGenerationMethods": methods})
        body = json.loads(request.content)
        labelled, texts, label = [], [], ""
        for part in body["contents"][0]["parts"]:
            if "text" in part:
                texts.append(part["text"])
                label = part["text"]
            else:
                labelled.append((label, base64.b64decode(part["inline_data"]["data"])))
        answer = judge_answer("gemini", JudgeSettings(), "\n".join(texts), labelled)
        return httpx.Response(200, json={
            "candidates": [{"content": {"parts": [{"text": answer}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 3000, "candidatesTokenCount": 40}, "responseId": "resp-1"})

    return httpx.MockTransport(handler)


def test_a_gemini_judge_is_asked_through_generate_content_and_priced_from_its_tokens(
        sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    keys: list[str] = []
    target = JudgeTarget.parse("gemini-2.5-flash@google")

    async def go(t: JudgeTarget) -> JudgeSummary:
        async with httpx.AsyncClient(transport=gemini_api(keys)) as client:
            with Store.open(db) as store:
                return await judge_run(store, run_id, t, JudgeOptions(pairs=4), client=client,
                                       base_url="https://generativelanguage.googleapis.com", api_key="g-secret")

    summary = asyncio.run(go(target))
    assert summary.verdicts == 8 and summary.spent_usd == pytest.approx(8 * (3000 * 0.30e-6 + 40 * 2.50e-6))
    assert set(keys) == {"g-secret"}
    with Store.open(db, readonly=True) as store:
        rows = jstore.judgements_frame(store, judge="gemini-2.5-flash@google")
    assert not rows.astype(str).apply(lambda c: c.str.contains("g-secret")).any().any(), "the key is never stored"
    with pytest.raises(JudgeError, match="cannot take images"):
        asyncio.run(go(JudgeTarget("gemini-embedding-001", "google")))
    with pytest.raises(JudgeError, match="not in the provider's model list"):
        asyncio.run(go(JudgeTarget("nope-1", "google")))


def test_a_real_judge_without_its_key_is_refused_and_a_sandboxed_gemini_judge_answers(sandbox_run: tuple[Path, str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    db, run_id = sandbox_run
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["judge", run_id, "--judge", "openai/gpt-4o@openrouter", "--no-sandbox",
                                      "--base-url", "http://127.0.0.1:9", "--db", str(db)])
    assert result.exit_code == 2 and "OPENROUTER_API_KEY" in result.output
    google = CliRunner().invoke(cli, ["judge", run_id, "--judge", "gemini-2.5-flash@google", "--pairs", "3",
                                      "--db", str(db), "--json"])
    assert google.exit_code == 0, google.output
    summary = json.loads(google.stdout)
    assert summary["judge"] == "gemini-2.5-flash@google" and summary["questions"] == 6
    assert summary["verdicts"] + summary["cached"] == 6, "asked of the sandbox's Gemini judge, or already cached"


def flaky_judge(judges: dict[str, JudgeSettings], first_reply: Callable[[], httpx.Response],
                failures: int = 1) -> httpx.AsyncClient:
    """The sandbox's judges in process, except that the first ``failures`` times each question is asked
    ``first_reply`` answers instead (an answer without a verdict, a 429); then the judge answers properly."""
    inner = sandbox_client(judges)
    seen: dict[bytes, int] = {}

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions") and seen.get(request.content, 0) < failures:
            seen[request.content] = seen.get(request.content, 0) + 1
            return first_reply()
        reply = await inner.send(inner.build_request(request.method, str(request.url), headers=request.headers,
                                                     content=request.content))
        return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def rambling() -> httpx.Response:
    return httpx.Response(200, json={"id": "gen-1", "choices": [{"message": {
        "role": "assistant", "content": "Both pictures have their charm; hard to say."}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "cost": 0.0001}})


def ask_flaky(db: Path, run_id: str, name: str, options: JudgeOptions, first_reply: Callable[[], httpx.Response],
              waits: list[float], failures: int = 1) -> JudgeSummary:
    async def record(seconds: float) -> None:
        waits.append(seconds)

    async def go() -> JudgeSummary:
        async with flaky_judge({name: JudgeSettings()}, first_reply, failures) as client:
            with Store.open(db) as store:
                return await judge_run(store, run_id, JudgeTarget(name, "openrouter"), options, client=client,
                                       base_url=BASE_URL, api_key="k", sleep=record)
    return asyncio.run(go())


def test_an_unparseable_answer_is_asked_again_in_the_same_invocation_and_the_first_answer_is_kept(
        sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    waits: list[float] = []
    summary = ask_flaky(db, run_id, "x/second-thoughts", JudgeOptions(pairs=3, retries=1), rambling, waits)
    assert summary.questions == 6 and summary.asked == 12 and summary.unparseable == 6 and summary.verdicts == 6
    assert waits == [], "an answer without a verdict is asked again at once (no server asked us to wait)"
    with Store.open(db, readonly=True) as store:
        rows = jstore.judgements_frame(store, judge="x/second-thoughts@openrouter")
        final = final_verdicts(store, [run_id], "x/second-thoughts@openrouter")
    first = rows[rows["try_no"] == 0]
    assert (first["verdict"] == "unparseable").all() and first["raw_answer"].str.contains("charm").all()
    assert rows[rows["try_no"] == 1]["verdict"].isin(["first", "second", "tie"]).all()
    assert len(final) == 6 and final["verdict"].isin(["first", "second", "tie"]).all()


def test_with_the_run_s_retry_budget_of_zero_an_unparseable_answer_stays_unparseable(
        sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    with Store.open(db, readonly=True) as store:
        assert RunOptions.from_config(run_store.get_run(store, run_id).config).retries == 0
    summary = ask_flaky(db, run_id, "x/one-shot", JudgeOptions(pairs=3), rambling, [])
    assert summary.retries == 0 and summary.asked == 6 and summary.unparseable == 6 and summary.verdicts == 0
    with Store.open(db, readonly=True) as store:
        final = final_verdicts(store, [run_id], "x/one-shot@openrouter")
    assert (final["verdict"] == "unparseable").all() and len(final) == 6, "never guessed"


def test_a_rate_limited_judge_waits_out_retry_after_and_is_asked_again_in_the_same_invocation(
        sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    waits: list[float] = []

    def slow_down() -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "7"},
                              json={"error": {"code": 429, "message": "Rate limit exceeded"}})

    summary = ask_flaky(db, run_id, "x/busy", JudgeOptions(pairs=2, retries=2), slow_down, waits)
    assert summary.errors == 4 and summary.retried_errors == 4 and summary.verdicts == 4
    assert waits == [7.0] * 4, "the provider's Retry-After, as the runner honours it"
    with Store.open(db, readonly=True) as store:
        rows = jstore.judgements_frame(store, judge="x/busy@openrouter")
    assert (rows[rows["try_no"] == 0]["verdict"] == "error").all() and len(rows) == 8
    assert rows[rows["try_no"] == 0]["error"].str.contains("rate_limited").all()


def test_a_failed_request_without_retry_after_backs_off_like_the_runner(sandbox_run: tuple[Path, str]) -> None:
    db, run_id = sandbox_run
    waits: list[float] = []

    def unavailable() -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": 503, "message": "upstream unavailable"}})

    summary = ask_flaky(db, run_id, "x/wobbly", JudgeOptions(pairs=1, retries=3, concurrency=1), unavailable,
                        waits, failures=2)
    assert summary.verdicts == 2 and summary.errors == 4 and summary.retried_errors == 4
    assert waits == [1.0, 2.0, 1.0, 2.0], "exponential backoff per question: 1 s, then 2 s"
    short = ask_flaky(db, run_id, "x/wobblier", JudgeOptions(pairs=1, retries=1, concurrency=1), unavailable,
                      [], failures=2)
    assert short.verdicts == 0 and short.errors == 4, "past the budget a failure waits for the next invocation"
