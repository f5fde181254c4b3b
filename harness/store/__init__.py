"""The store: SQLite (WAL) plus content-addressed images. The only package that speaks SQL."""

from harness.store.core import DEFAULT_DB, SCHEMA_VERSION, Store, StoreError

__all__ = ["DEFAULT_DB", "SCHEMA_VERSION", "Store", "StoreError"]
