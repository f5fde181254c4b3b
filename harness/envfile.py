"""Reads API keys and ``HARNESS_*`` options from a ``.env`` file in the working directory, and nothing else.

A ``.env`` file travels with a project folder (a cloned repository, a shared drive), so the variables it may
set are limited to what the harness itself reads:

* the provider key variables the built-in catalog names (``OPENAI_API_KEY``, ``GEMINI_API_KEY``, ``FAL_KEY``
  …), and those a user's targets file names, which :func:`key_value` looks up on demand;
* ``HARNESS_*`` options (``HARNESS_DB`` …), except :data:`NEVER_FROM_FILE`.

Everything else is ignored, named (never its value) in a note on stderr: a ``.env`` that set ``HTTPS_PROXY``
or ``SSL_CERT_FILE`` could route every request, keys included, through someone else's proxy, and the arena's
signing secret belongs to the operator's environment, not to a file beside the data. Variables already set in
the environment always win.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from dotenv import dotenv_values

from harness.errors import ConfigError
from harness.textfiles import read_text_file

OPTION_PREFIX = "HARNESS_"
NEVER_FROM_FILE = frozenset({"HARNESS_ARENA_SECRET"})
"""``HARNESS_*`` variables a ``.env`` file may not set."""
MAX_ENV_FILE_BYTES = 1 << 20


@cache
def catalog_key_variables() -> frozenset[str]:
    """Every key variable the built-in catalog's targets name."""
    from harness.targets import load_catalog

    names: set[str] = set()
    for raw in load_catalog().values():
        value = raw.get("api_key_env") or ()
        names.update([value] if isinstance(value, str) else value)
    return frozenset(names)


def loadable(name: str, extra_keys: frozenset[str] = frozenset()) -> bool:
    """Whether a ``.env`` file may set ``name``."""
    if name in NEVER_FROM_FILE:
        return False
    return name in catalog_key_variables() or name in extra_keys or name.startswith(OPTION_PREFIX)


def read_env_file(path: Path) -> dict[str, str]:
    """The variables a ``.env`` file sets; a :class:`ConfigError` naming the file when it cannot be read as
    UTF-8 text (binary, another encoding, too large)."""
    text = read_text_file(path, label=str(path), max_bytes=MAX_ENV_FILE_BYTES, expected="KEY=value lines")
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


def load_dotenv_file(path: Path | None = None, environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    """Set the loadable variables of ``path`` (default ``./.env``) that the environment lacks.

    Never raises: an unreadable file or ignored variables are reported on stderr (names only), because this
    runs before any command, including those that need no key. Returns whether a file was read."""
    env_path = path or Path.cwd() / ".env"
    target = os.environ if environ is None else environ
    if not env_path.is_file():
        return False
    try:
        values = read_env_file(env_path)
    except ConfigError as exc:
        print(f"warning: {exc}; it was ignored", file=sys.stderr)
        return False
    ignored = sorted(name for name in values if not loadable(name))
    for name, value in values.items():
        if loadable(name) and name not in target:
            target[name] = value
    if ignored:
        print(f"note: {env_path}: ignored {', '.join(ignored)} (a .env file may set only provider keys and "
              "HARNESS_* options; set others in the environment)", file=sys.stderr)
    return True


def key_value(name: str, environ: Mapping[str, str] | None = None, path: Path | None = None) -> str | None:
    """The value of a key variable: from the environment, else from ``./.env`` (for the key variables a
    user's targets file names, which :func:`load_dotenv_file` cannot know in advance)."""
    env = os.environ if environ is None else environ
    if env.get(name):
        return env[name]
    if environ is not None:
        return None
    env_path = path or Path.cwd() / ".env"
    if name in NEVER_FROM_FILE or not env_path.is_file():
        return None
    try:
        return read_env_file(env_path).get(name) or None
    except ConfigError:
        return None
