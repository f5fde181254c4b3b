"""The store: runs, attempts, votes and scores in SQLite (default) or PostgreSQL, with content-addressed
images in a folder. The only package that speaks SQL."""

from harness.store.core import DEFAULT_DB, SCHEMA_VERSION, Store, StoreError
from harness.store.url import StoreUrlError

__all__ = ["DEFAULT_DB", "SCHEMA_VERSION", "Store", "StoreError", "StoreUrlError"]
