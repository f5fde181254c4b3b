"""The arena's bounded memory (harness.arena.memo): never over its size, least recently used out first,
the same answers as a plain model of an LRU under any sequence of reads and writes, from many threads."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.arena.memo import BoundedMemo

operations = st.lists(st.tuples(st.sampled_from(["put", "get"]), st.integers(0, 12), st.integers()), max_size=200)


@given(capacity=st.integers(1, 6), ops=operations)
def test_a_memo_answers_as_a_least_recently_used_list_would(capacity: int, ops: list[tuple[str, int, int]]) -> None:
    memo: BoundedMemo[int, int] = BoundedMemo(capacity)
    model: list[tuple[int, int]] = []  # oldest first
    for op, key, value in ops:
        held = next((v for k, v in model if k == key), None)
        if op == "put":
            model = [(k, v) for k, v in model if k != key] + [(key, value)]
            model = model[-capacity:]
            memo.put(key, value)
        else:
            assert memo.get(key) == held
            if held is not None:
                model = [(k, v) for k, v in model if k != key] + [(key, held)]
        assert len(memo) == len(model) <= capacity


def test_a_memo_stays_within_its_size_under_threads() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(64)

    def write(n: int) -> None:
        for i in range(2000):
            memo.put(f"{n}-{i}", i)
            memo.get(f"{n}-{i - 1}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(memo) == 64
    assert any(memo.get(f"{n}-1999") == 1999 for n in range(4))  # the last write of all is never evicted


def test_a_memo_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one entry"):
        BoundedMemo(0)
