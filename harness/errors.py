"""User-facing errors: anything that should end a command with a clear one-line message (exit code 2)."""

from __future__ import annotations


class HarnessError(Exception):
    """A problem the user can fix (bad file, unknown name, missing key); its message names what and where."""


class ConfigError(HarnessError):
    """A configuration file or option is invalid."""
