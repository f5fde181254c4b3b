"""User-facing errors and the one table of exit codes every command uses.

A :class:`HarnessError` ends a command with a one-line message on stderr (no traceback) and its
``exit_code``. Commands that end for another reason (a regression found, a dead target, Ctrl-C) exit with a
member of :class:`ExitCode` too, so scripts and CI read one table; ``docs/exit-codes.md`` documents it.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit status of every ``harness`` command. Values never change meaning once released."""

    OK = 0
    """The command did what was asked. For ``run``: every planned request has a final attempt (failed
    requests are measurements, not errors)."""
    CHECK_FAILED = 1
    """A check the command performs failed: ``compare`` found a supported regression, ``challenges
    validate``/``targets check``/``score`` found problems."""
    USAGE = 2
    """Bad option, file, name or configuration (unknown target, missing key, store written by a newer
    harness, not a harness store): nothing was sent."""
    DEAD_TARGET = 3
    """``run`` finished, but stopped sending to at least one target whose first requests all failed with
    the same client error (bad key, unknown model); its remaining requests are recorded as not sent."""
    RUN_LOCKED = 4
    """``run --resume`` refused: another live process holds the run."""
    STORE_UNWRITABLE = 5
    """The store could not be written (disk full, read-only media, I/O error). What was committed is kept
    and the run can be resumed once the store is writable."""
    SPEND_CAP = 6
    """``run`` finished, but a spend cap (``--max-spend``, ``--max-spend-per-target``) stopped at least one
    target before its next request could pass the cap; its remaining requests are recorded as not sent. A dead
    target in the same run exits 3 instead."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention). Committed attempts are kept;
    ``run --resume RUN_ID`` finishes the run."""


class HarnessError(Exception):
    """A problem the user can fix (bad file, unknown name, missing key); its message names what and where."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(HarnessError):
    """A configuration file or option is invalid."""


class RunLockedError(HarnessError):
    """Another live process is executing the run."""

    exit_code = ExitCode.RUN_LOCKED


class StoreWriteError(HarnessError):
    """The store refused a write (disk full, read-only, I/O error); committed data is intact."""

    exit_code = ExitCode.STORE_UNWRITABLE
