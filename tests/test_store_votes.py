"""The vote record is the one declaration of the ``votes`` table: its columns, the insert and the battle
frame follow the :class:`~harness.store.votes.Vote` fields, on both backends. Blind arena votes are marked
``anony`` = 1; imports keep what their file said; an arena vote stored before the column existed reads as
blind all the same."""

from __future__ import annotations

import dataclasses

from harness.ratings.battles import validate_battles
from harness.store import Store, votes


def served(pair_id: str) -> votes.ServedPair:
    left = votes.ServedSide("r1", "a@p", "a", "p", 1, "1" * 64)
    right = votes.ServedSide("r1", "b@q", "b", "q", 2, "2" * 64)
    return votes.ServedPair(pair_id, "v1", "c1/v0/h", "c1", "v0", "cat", "t2i", left, right, 10.0, 1e12)


def imported(uid: str, anony: int | None) -> votes.Vote:
    return votes.Vote(vote_uid=uid, left_target="a", right_target="b", left_model="a", right_model="b",
                      outcome="tie", voted_at=5.0, source="import", anony=anony)


def stored_columns(store: Store) -> list[str]:
    if store.dialect.is_sqlite:
        return [r[1] for r in store.conn.execute("PRAGMA table_info(votes)")]
    from harness.store.backends.postgres import column_names

    return column_names(store.conn, "votes")


def test_the_votes_table_has_exactly_the_fields_of_the_vote_record(store_url: str) -> None:
    with Store.open(store_url) as store:
        assert set(stored_columns(store)) == {"id", *(f.name for f in dataclasses.fields(votes.Vote))}


def test_an_arena_vote_is_blind_and_an_import_keeps_its_own_flag(store_url: str) -> None:
    with Store.open(store_url) as store:
        votes.record_served_pair(store, served("p1"), [])
        result = votes.cast_vote(store, pair_id="p1", voter="v1", outcome="left", voted_at=12.5, vote_uid="u-arena")
        assert result.status == "accepted" and result.vote is not None
        assert result.vote.anony == 1
        assert (result.vote.shown_at, result.vote.voted_at, result.vote.decision_ms) == (10.0, 12.5, 2500.0)
        votes.insert_votes(store, [imported("u-named", 0), imported("u-unknown", None)])
        rows = dict(store.conn.execute("SELECT vote_uid, anony FROM votes").fetchall())
        frame = votes.battles_frame(store)
    assert rows == {"u-arena": 1, "u-named": 0, "u-unknown": None}
    assert frame[["source", "anony"]].values.tolist() == [["import", 0], ["import", None], ["arena", 1]]
    assert len(validate_battles(frame, "store votes")) == 3


def test_an_older_store_gains_the_anony_column_and_its_arena_votes_read_as_blind(store_url: str) -> None:
    with Store.open(store_url) as store:
        votes.record_served_pair(store, served("p1"), [])
        votes.cast_vote(store, pair_id="p1", voter="v1", outcome="right", voted_at=11.0, vote_uid="u1")
        votes.insert_vote(store, imported("u2", None))
        store.conn.execute("ALTER TABLE votes DROP COLUMN anony")
        store.conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    with Store.open(store_url, readonly=True) as store:
        assert votes.battles_frame(store)["anony"].tolist() == [None, 1]
    with Store.open(store_url) as store:
        assert "anony" in stored_columns(store)
        assert votes.battles_frame(store)["anony"].tolist() == [None, 1]
        assert votes.count_votes(store) == 2
