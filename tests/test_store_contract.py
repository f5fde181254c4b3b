"""The store's whole contract, run against every backend: a SQLite file and a real PostgreSQL server (a
throwaway cluster, see tests/pg.py). Nothing is mocked; each test gets a fresh store on each backend."""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from harness.errors import RunLockedError
from harness.records import AttemptRecord, OutputRecord, RequestKey
from harness.run.lock import locks_for
from harness.store import SCHEMA_VERSION, Store, StoreError, arena_seen, runs, scores, votes
from harness.timing import AttemptClock

CLOCK_FIELDS = [f.name for f in dataclasses.fields(AttemptClock)]


def clock(latency_ms: float) -> AttemptClock:
    values: dict[str, object] = dict.fromkeys(CLOCK_FIELDS)
    values.update(latency_ms=latency_ms, http_calls=1, conn_reused=0)
    return AttemptClock(**values)  # type: ignore[arg-type]


def new_run(store: Store, run_id: str = "r1", planned: int = 4) -> None:
    runs.create_run(
        store, run_id=run_id, created_at=f"2026-01-01T00:00:0{len(run_id) % 10}+00:00", harness_version="t",
        sandbox=True, time_scale=0.01, label="contract", planned=planned, config={"b": 1, "a": [1, 2]},
        challenges=[{"id": f"c{i}", "version": 1, "content_hash": "h", "kind": "t2i", "category": "cat",
                     "title": f"C{i}"} for i in (2, 1)],
        targets=[{"name": n, "model": "m", "provider": "p", "protocol": "openai"} for n in ("z@p", "a@p")],
    )


def attempt(run_id: str, challenge: str, target: str, sample: int, n: int, *, final: bool, ok: bool,
            started: float, cost: float = 0.01, outputs: int = 0) -> AttemptRecord:
    return AttemptRecord(
        run_id=run_id, key=RequestKey(challenge, "v0", target, sample), model="m", provider="p", protocol="openai",
        attempt=n, final=final, ok=ok, started_at=started, sched_ms=0.0, start_ms=1.0, clock=clock(250.0),
        error_kind=None if ok else "http_5xx", http_status=200 if ok else 503, cost_usd=cost, n_images=outputs,
        usage={"tokens": 3}, retry_after_ms=None if ok else 1500.0,
        outputs=[OutputRecord(i, f"{challenge}{target}{sample}{i}".ljust(64, "0"), "png", 8, 8, 100)
                 for i in range(outputs)],
    )


def test_runs_are_created_listed_got_and_continued_where_they_stopped(store_url: str) -> None:
    with Store.open(store_url) as store:
        new_run(store, "r1")
        new_run(store, "r22")
        runs.insert_attempts(store, [
            attempt("r1", "c1", "a@p", 0, 1, final=False, ok=False, started=100.0),
            attempt("r1", "c1", "a@p", 0, 2, final=True, ok=True, started=102.0, outputs=2),
            attempt("r1", "c2", "a@p", 0, 1, final=False, ok=False, started=103.0),
        ])
        listed = runs.list_runs(store)
        assert [r.id for r in listed] == ["r1", "r22"]
        info = runs.get_run(store, "r1")
        assert (info.attempts, info.requests_done, info.requests_planned) == (3, 1, 4)
        assert info.status == "interrupted"  # stored as running, but no live process holds it
        assert info.config == {"a": [1, 2], "b": 1} and info.sandbox and info.time_scale == 0.01
        assert runs.get_run(store, "latest").id == "r22"
        with pytest.raises(StoreError, match="Did you mean r1"):
            runs.get_run(store, "r11")
        assert [c["id"] for c in runs.run_challenges(store, "r1")] == ["c2", "c1"]  # stored order
        assert [t["name"] for t in runs.run_targets(store, "r1")] == ["z@p", "a@p"]
        done, unfinished = runs.request_progress(store, "r1")
        assert done == {RequestKey("c1", "v0", "a@p", 0)}
        left = unfinished[RequestKey("c2", "v0", "a@p", 0)]
        assert (left.last_attempt, left.first_started_at, left.last_retry_after_ms) == (1, 103.0, 1500.0)
        assert left.last_ended_at == pytest.approx(103.25)
        assert runs.last_activity(store, "r1") == pytest.approx(103.25)
        finals = runs.first_finals(store, "r1", 5)
        assert list(finals) == ["a@p"] and finals["a@p"][0].ok
        assert runs.spend_by_run(store) == {"r1": pytest.approx(0.03)}
        assert runs.spend_by_target(store, "r1") == {"a@p": pytest.approx(0.03)}
        runs.set_run_status(store, "r1", "finished", "2026-01-01T01:00:00+00:00")
        assert runs.get_run(store, "r1").status == "finished"


def test_attempts_read_back_as_frames_with_their_outputs(store_url: str) -> None:
    with Store.open(store_url) as store:
        new_run(store)
        rows = [attempt("r1", f"c{1 + i % 2}", "a@p", i, 1, final=True, ok=i % 3 != 0, started=100.0 + i,
                        outputs=1 if i % 3 else 0) for i in range(12)]
        runs.insert_attempts(store, rows)
        runs.record_images(store, [("ref".ljust(64, "0"), "png", 4, 4, 10)] * 2)
        frame = runs.attempts_frame(store, ["r1"])
        assert len(frame) == 12 and list(frame["id"]) == sorted(frame["id"])
        assert frame["ok"].sum() == 8 and set(frame["kind"]) == {"t2i"}
        assert frame["latency_ms"].tolist() == [250.0] * 12
        outputs = runs.outputs_frame(store, ["r1"])
        assert len(outputs) == 8 and set(outputs["ext"]) == {"png"}
        assert set(runs.attempt_columns(store)) >= set(runs.ATTEMPT_FRAME_COLUMNS)
        assert store.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 9


def test_an_error_body_with_a_nul_character_is_still_recorded(store_url: str) -> None:
    with Store.open(store_url) as store:
        new_run(store)
        failed = dataclasses.replace(attempt("r1", "c1", "a@p", 0, 1, final=True, ok=False, started=1.0),
                                     error_message="bad\x00body 100%")
        runs.insert_attempts(store, [failed])
        (message,) = store.conn.execute("SELECT error_message FROM attempts").fetchone()
        assert message.startswith("bad") and message.endswith("body 100%")
        assert store.conn.execute("SELECT COUNT(*) FROM attempts WHERE error_message LIKE 'bad%'").fetchone()[0] == 1


def test_a_store_opened_read_only_refuses_writes(store_url: str) -> None:
    with Store.open(store_url) as store:
        new_run(store)
    with Store.open(store_url, readonly=True) as store:
        with pytest.raises(Exception, match=r"(?i)read.?only"):
            runs.set_run_status(store, "r1", "finished")
        assert runs.get_run(store, "r1").status == "interrupted"


def test_a_duplicate_attempt_rolls_back_its_whole_batch(store_url: str) -> None:
    with Store.open(store_url) as store:
        new_run(store)
        first = attempt("r1", "c1", "a@p", 0, 1, final=True, ok=True, started=1.0)
        runs.insert_attempts(store, [first])
        with pytest.raises(Exception):  # noqa: B017 - each backend's own integrity error
            runs.insert_attempts(store, [attempt("r1", "c2", "a@p", 0, 1, final=True, ok=True, started=2.0), first])
        assert runs.get_run(store, "r1").attempts == 1


def vote(uid: str, outcome: str = "left", **extra: object) -> votes.Vote:
    return votes.Vote(vote_uid=uid, left_target="a@p", right_target="b@q", left_model="a", right_model="b",
                      outcome=outcome, voted_at=float(len(uid)), source="import", **extra)  # type: ignore[arg-type]


def test_votes_are_stored_once_each_and_read_as_battles(store_url: str) -> None:
    with Store.open(store_url) as store:
        assert votes.insert_vote(store, vote("u1"))
        assert not votes.insert_vote(store, vote("u1", "right"))
        assert votes.insert_votes(store, [vote("u1"), vote("u22", "tie"), vote("u333", "both_bad")]) == 2
        assert votes.count_votes(store) == 3
        battles = votes.battles_frame(store)
        assert battles["winner"].tolist() == ["model_a", "tie", "tie (bothbad)"]
        assert votes.vote_tallies(store) == sorted(votes.vote_tallies(store)) or len(votes.vote_tallies(store)) == 3
        with pytest.raises(ValueError):
            votes.insert_vote(store, vote("u4", "sideways"))
        assert votes.count_votes(store) == 3


def served(pair_id: str, voter: str = "v1", expires_at: float = 1e12) -> votes.ServedPair:
    left = votes.ServedSide("r1", "a@p", "a", "p", 1, "1" * 64)
    right = votes.ServedSide("r1", "b@q", "b", "q", 2, "2" * 64)
    return votes.ServedPair(pair_id, voter, "c1/v0/h", "c1", "v0", "cat", "t2i", left, right, 10.0, expires_at)


def seed_pairs(store: Store, count: int, **kw: float) -> None:
    new_run(store)
    runs.insert_attempts(store, [attempt("r1", "c1", t, 0, 1, final=True, ok=True, started=1.0, outputs=1)
                                 for t in ("a@p", "b@q")])
    for i in range(count):
        votes.record_served_pair(store, served(f"p{i}", **kw), [
            votes.ServedImage(f"img{i}l", "left", "1" * 64, "png", (8, 8)),
            votes.ServedImage(f"img{i}r", "right", "2" * 64, "png")])


def test_a_pair_is_voted_once_by_its_voter_before_it_expires(store_url: str) -> None:
    with Store.open(store_url) as store:
        seed_pairs(store, 1)
        votes.record_served_pair(store, served("old", expires_at=50.0), [])
        cast = votes.cast_vote
        assert cast(store, pair_id="nope", voter="v1", outcome="left", voted_at=20.0, vote_uid="x").status == "unknown"
        assert cast(store, pair_id="p0", voter="v2", outcome="left", voted_at=20.0, vote_uid="x").status == "wrong_voter"
        assert cast(store, pair_id="old", voter="v1", outcome="left", voted_at=60.0, vote_uid="x").status == "expired"
        ok = cast(store, pair_id="p0", voter="v1", outcome="right", voted_at=20.0, vote_uid="x", client_ms=5.0)
        assert ok.status == "accepted" and ok.vote is not None and ok.vote.decision_ms == pytest.approx(10_000.0)
        assert cast(store, pair_id="p0", voter="v1", outcome="left", voted_at=21.0, vote_uid="y").status == "used"
        assert votes.count_votes(store) == 1
        assert votes.served_image(store, "img0l") == ("1" * 64, "png", (8, 8))
        assert votes.served_image(store, "img0r") == ("2" * 64, "png", None)
        assert votes.served_counts(store) == [("c1/v0/h", "a@p", "b@q", 2)]
        assert votes.battles_frame(store, run_ids=["r1"])["winner"].tolist() == ["model_b"]


def _consume_all(url: str, pair_ids: list[str], worker: int, start_at: float) -> list[str]:
    won: list[str] = []
    with Store.open(url) as store:
        while time.time() < start_at:
            time.sleep(0.001)
        for pair_id in pair_ids:
            result = votes.cast_vote(store, pair_id=pair_id, voter="v1", outcome="left", voted_at=20.0,
                                     vote_uid=f"{pair_id}-{worker}")
            if result.status == "accepted":
                won.append(pair_id)
            else:
                assert result.status == "used", result.status
    return won


def test_a_pair_token_is_single_use_across_concurrent_processes(store_url: str) -> None:
    """Four processes (as four app servers would) race to vote on the same 40 pairs: each pair yields exactly
    one accepted vote and one stored vote."""
    pairs = [f"p{i}" for i in range(40)]
    with Store.open(store_url) as store:
        seed_pairs(store, len(pairs))
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0
    with context.Pool(4) as pool:
        results = pool.starmap(_consume_all, [(store_url, pairs[::step], w, start_at)
                                              for w, step in enumerate((1, 1, -1, -1))])
    winners = [p for won in results for p in won]
    assert sorted(winners) == sorted(pairs)
    with Store.open(store_url) as store:
        assert votes.count_votes(store) == len(pairs)
        voted = store.conn.execute("SELECT COUNT(*) FROM arena_pairs WHERE state='voted'").fetchone()[0]
        assert voted == len(pairs)


def test_scores_and_embeddings_round_trip_and_a_rescore_replaces(store_url: str) -> None:
    with Store.open(store_url) as store:
        new_run(store)
        runs.insert_attempts(store, [attempt("r1", "c1", "a@p", 0, 1, final=True, ok=True, started=1.0, outputs=1)])
        attempt_id = int(runs.outputs_frame(store, ["r1"])["attempt_id"][0])
        scorer = scores.ScorerRow("s1", "open_clip:B:W", "B", "W", None, "2.0", "resize", "fp32", 77, {"x": 1})
        scores.register_scorer(store, scorer, "2026-01-01")
        scores.register_scorer(store, scorer, "2027-01-01")
        row = scores.ScoreRow(attempt_id, 0, "i" * 64, "clip_t", 0.25, True, truncated=False, prompt_tokens=9)
        scores.insert_scores(store, "s1", [row], "2026-01-01T00:00:00")
        scores.insert_scores(store, "s1", [dataclasses.replace(row, value=0.5)], "2026-01-02T00:00:00")
        frame = scores.scores_frame(store, ["r1"])
        assert frame["value"].tolist() == [0.5] and frame["scorer"].tolist() == ["open_clip:B:W"]
        assert bool(frame["truncated"][0]) is False and int(frame["prompt_tokens"][0]) == 9
        assert scores.latest_scorer(store, ["r1"]) == "s1"
        assert scores.scored_outputs(store, "s1", [attempt_id, 999]) == {(attempt_id, 0)}
        vector = np.arange(4, dtype="<f4") / 7
        scores.put_embeddings(store, "s1", "text", [("k", vector)])
        scores.put_embeddings(store, "s1", "text", [("k", vector * 2)])
        got = scores.cached_embeddings(store, "s1", "text", ["k", "missing"])
        assert list(got) == ["k"] and np.array_equal(got["k"], vector)
        assert scores.embedding_count(store) == {"image": 0, "text": 1}


def test_arena_memory_keeps_identities_and_64_bit_hashes(store_url: str) -> None:
    with Store.open(store_url) as store:
        seed_pairs(store, 1)
        ident = arena_seen.address_identity(store, "203.0.113.9")
        assert ident == arena_seen.address_identity(store, "203.0.113.9") and ident.startswith("ip:")
        arena_seen.remember_revealed(store, [ident, "cookie:1"], ["1" * 64], 5.0)
        arena_seen.remember_revealed(store, [ident], ["1" * 64, "2" * 64], 6.0)
        assert arena_seen.revealed_to(store, ["cookie:1"]) == {"1" * 64}
        hashes = {"a": 2**64 - 1, "b": 2**63, "c": 0, "d": 12345}
        arena_seen.save_output_hashes(store, hashes.items())
        arena_seen.save_output_hashes(store, [("d", 54321)])
        assert arena_seen.output_hashes(store) == {**hashes, "d": 54321}
        sides = arena_seen.pair_sides(store, "p0")
        assert sides is not None and sides.open and sides.left_sha == "1" * 64
        assert arena_seen.serving_counts(store) == {"1" * 64: 1, "2" * 64: 1}


def test_an_older_store_gains_the_columns_added_since(store_url: str) -> None:
    with Store.open(store_url) as store:
        new_run(store)
        store.conn.execute("ALTER TABLE attempts DROP COLUMN time_to_image_ms")
        store.conn.execute("ALTER TABLE runs DROP COLUMN clock_version")
        store.conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    with Store.open(store_url) as store:
        assert "time_to_image_ms" in runs.attempt_columns(store)
        assert runs.get_run(store, "r1").clock_version == 1  # the declared default for runs written before
        assert store.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_a_store_from_a_newer_harness_is_refused_and_left_unchanged(store_url: str) -> None:
    with Store.open(store_url) as store:
        new_run(store)
        store.conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
        store.conn.execute("ALTER TABLE attempts DROP COLUMN time_to_image_ms")
    for readonly in (False, True):
        with pytest.raises(StoreError, match="newer than this harness"):
            Store.open(store_url, readonly=readonly)
    # nothing was written: the dropped column is still missing (the migration never ran)
    if not store_url.startswith("postgresql"):
        import sqlite3

        conn = sqlite3.connect(store_url)
        cols = {r[1] for r in conn.execute("PRAGMA table_info(attempts)")}
        conn.close()
    else:
        from harness.store.backends.postgres import column_names, connect
        from harness.store.url import PostgresLocation, parse_location

        location = parse_location(store_url)
        assert isinstance(location, PostgresLocation)
        conn = connect(location)
        cols = set(column_names(conn, "attempts"))
        conn.close()
    assert "time_to_image_ms" not in cols


def test_a_run_lock_is_held_by_one_process_and_dies_with_it(store_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    with Store.open(store_url) as store:
        new_run(store)
        locks = locks_for(store)
        assert locks.holder("r1") is None
        held = locks.acquire("r1")
        assert locks.holder("r1") is not None
        with pytest.raises(RunLockedError, match="is being run by process"):
            locks.acquire("r1")
        held.release()
        assert locks.holder("r1") is None
        code = ("import sys, time; from harness.store import Store; from harness.run.lock import locks_for\n"
                f"s = Store.open({store_url!r}); held = locks_for(s).acquire('r1'); print('held', flush=True)\n"
                "time.sleep(60)")
        with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as holder:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            assert locks.holder("r1") is not None and locks.holder("r1").pid == holder.pid  # type: ignore[union-attr]
            holder.kill()
            holder.wait()
        deadline = time.monotonic() + 10
        while locks.holder("r1") is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert locks.holder("r1") is None
        assert locks.last_holder("r1") is not None
        locks.acquire("r1").release()


SLOW = "openai: {faults: {}, rpm: null, latency: {median_s: 10.0, p95_s: 12.0}}"


def _harness(*args: str) -> tuple[int, str, str]:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          env={**os.environ, "CI": "true"}, timeout=180)
    return done.returncode, done.stdout, done.stderr


def _attempt_rows(url: str) -> list[tuple[object, ...]]:
    with Store.open(url, readonly=True) as store:
        return [tuple(r) for r in store.conn.execute(
            "SELECT id, challenge_id, variant, target, sample, attempt, final, ok, started_at FROM attempts ORDER BY id")]


def test_a_run_killed_with_sigkill_resumes_without_losing_or_repeating_a_request(
        store_url: str, tiny_suite: Path, tmp_path: Path) -> None:
    """A real `harness run --db URL` process, killed with SIGKILL mid-run: what it committed survives, the run
    reads as interrupted (its lock died with it), and `--resume` performs exactly the requests left."""
    import json
    import os
    import signal
    import subprocess
    import sys

    profile = tmp_path / "profile.yaml"
    profile.write_text(SLOW, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--challenges", str(tiny_suite), "--target",
                             "gpt-image-1@openai", "--sandbox", "--sandbox-profile", str(profile), "--db", store_url,
                             "--samples", "8", "--concurrency", "2", "--time-scale", "0.02"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CI": "true"})
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"run ended before the test could act: {proc.communicate()}"
            assert time.monotonic() < deadline, "the run never recorded enough attempts"
            time.sleep(0.1)
            try:
                if len(_attempt_rows(store_url)) >= 3:
                    break
            except StoreError:
                continue
        code, out, err = _harness("runs", "--json", "--db", store_url)
        assert code == 0, err
        (listed,) = json.loads(out)
        assert listed["status"] == "running" and f"process {proc.pid} " in str(listed["held_by"])
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killed = _attempt_rows(store_url)
    assert 3 <= len(killed) < 40
    deadline = time.monotonic() + 10
    while True:
        code, out, err = _harness("runs", "--json", "--db", store_url)
        (listed,) = json.loads(out)
        if listed["status"] == "interrupted" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert listed["status"] == "interrupted"
    code, out, err = _harness("run", "--resume", str(listed["id"]), "--db", store_url, "--json")
    assert code == 0, err
    after = _attempt_rows(store_url)
    assert after[: len(killed)] == killed
    finals = [r[1:5] for r in after if r[6]]
    assert len(finals) == len(set(finals)) == 40 and len(after) == 40
    code, out, err = _harness("runs", "--json", "--db", store_url)
    assert json.loads(out)[0]["status"] == "finished"
