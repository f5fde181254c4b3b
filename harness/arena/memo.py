"""A bounded, thread-safe memory of recent values: what an arena worker keeps of blind images and of the
image ids it served. Least recently used out first, so a busy arena's memory stays the size it was given."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """At most ``capacity`` entries; :meth:`get` and :meth:`put` may be called from any thread."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a memo needs room for at least one entry, not {capacity}")
        self._items: OrderedDict[K, V] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
