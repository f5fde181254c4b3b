"""Reads API keys from a ``.env`` file in the working directory without overriding the environment."""

from __future__ import annotations

from pathlib import Path

from dotenv import load_dotenv


def load_dotenv_file(path: Path | None = None) -> bool:
    """Load ``path`` (default ``./.env``) when it exists; variables already set keep their values."""
    env = path or Path.cwd() / ".env"
    if not env.is_file():
        return False
    return load_dotenv(env, override=False)
