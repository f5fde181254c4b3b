"""The store writer: commits attempts from a dedicated thread, images first, in small transactions.

It is the one path every attempt takes to the store, so it is where the run's keys are removed for good:
:meth:`StoreWriter.put` redacts every text field of the record in place (error message, provider code,
request id, finish reason, usage and provider-timings JSON …) before anything else sees it; the run's
progress printing (``RunObserver.on_attempt``, called after ``put``) and everything read from the store later
(exports, reports, the arena) see only the redacted record."""

from __future__ import annotations

import queue
import threading
from dataclasses import replace
from pathlib import Path

from harness.records import AttemptRecord
from harness.redaction import Redactor
from harness.store import Store
from harness.store import runs as run_store


class StoreWriter:
    """Commits attempts from a dedicated thread (one connection, small transactions, images first)."""

    def __init__(self, db_path: Path, images_dir: Path | None, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor()
        """Removes the run's keys from each record (build it with ``Redactor.for_credentials``)."""
        self._queue: queue.Queue[AttemptRecord | None] = queue.Queue()
        self._db_path = db_path
        self._images_dir = images_dir
        self.error: BaseException | None = None
        self.committed = 0
        self._thread = threading.Thread(target=self._run, name="harness-store-writer", daemon=True)
        self._thread.start()

    def put(self, record: AttemptRecord) -> None:
        if self.error is not None:
            raise RuntimeError(f"store writer failed: {self.error}") from self.error
        self.redactor.fields_in_place(record, skip=("image_bytes", "clock", "outputs"))
        self._queue.put(record)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"store writer failed: {self.error}") from self.error

    def _run(self) -> None:
        try:
            store = Store.open(self._db_path, images_dir=self._images_dir)
        except BaseException as exc:
            self.error = exc
            return
        try:
            done = False
            while not done:
                batch: list[AttemptRecord] = []
                item = self._queue.get()
                while True:
                    if item is None:
                        done = True
                        break
                    batch.append(item)
                    if len(batch) >= 256:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    for record in batch:
                        record.outputs = [replace(out, sha256=store.put_image(data, out.ext, out.sha256 or None))
                                          for out, data in zip(record.outputs, record.image_bytes, strict=True)]
                        record.image_bytes = []
                    run_store.insert_attempts(store, batch)
                    self.committed += len(batch)
        except BaseException as exc:
            self.error = exc
        finally:
            store.close()


