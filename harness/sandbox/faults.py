"""Faults the sandbox injects, and the error class each must be recorded as.

Every class of the error taxonomy has at least one fault, plus transport faults (connection reset before
the response, a body cut short, a body that drips slowly). Each protocol server turns a fault into its
provider's real wire behaviour (status, body shape, headers, or a 200 that carries no image).

A fault is chosen per request by the provider profile's rates; tests force one with the request header
``x-sandbox-fault: <fault>`` or by putting ``[sandbox-fault:<fault>]`` in the prompt (which works through
every official SDK unchanged).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

from harness.providers.base import ErrorKind


class Fault(enum.StrEnum):
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    AUTH = "auth"
    INVALID_REQUEST = "invalid_request"
    REFUSED = "refused"
    REFUSED_OUTPUT = "refused_output"
    NO_IMAGE = "no_image"
    SERVER_ERROR = "server_error"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    CONNECTION_RESET = "connection_reset"
    TRUNCATED_BODY = "truncated_body"
    SLOW_DRIP = "slow_drip"
    CORRUPT_IMAGE = "corrupt_image"
    NOT_AN_IMAGE = "not_an_image"
    WRONG_SIZE = "wrong_size"
    MID_STREAM_ERROR = "mid_stream_error"


EXPECTED_KIND: Mapping[Fault, ErrorKind | None] = {
    Fault.RATE_LIMITED: ErrorKind.RATE_LIMITED,
    Fault.QUOTA_EXHAUSTED: ErrorKind.QUOTA_EXHAUSTED,
    Fault.AUTH: ErrorKind.AUTH,
    Fault.INVALID_REQUEST: ErrorKind.INVALID_REQUEST,
    Fault.REFUSED: ErrorKind.REFUSED,
    Fault.REFUSED_OUTPUT: ErrorKind.REFUSED,
    Fault.NO_IMAGE: ErrorKind.NO_IMAGE,
    Fault.SERVER_ERROR: ErrorKind.SERVER_ERROR,
    Fault.OVERLOADED: ErrorKind.SERVER_ERROR,
    Fault.TIMEOUT: ErrorKind.TIMEOUT,
    Fault.CONNECTION_RESET: ErrorKind.CONNECTION,
    Fault.TRUNCATED_BODY: ErrorKind.CONNECTION,
    Fault.SLOW_DRIP: None,
    Fault.CORRUPT_IMAGE: ErrorKind.BAD_OUTPUT,
    Fault.NOT_AN_IMAGE: ErrorKind.BAD_OUTPUT,
    Fault.WRONG_SIZE: None,
    Fault.MID_STREAM_ERROR: ErrorKind.SERVER_ERROR,
}
"""How the harness must classify each fault; ``None``: the attempt succeeds — slower (``slow_drip``), or with
an image of another size than requested (``wrong_size``: a success counted as not "size as asked", a
``bad_output`` failure only under ``--strict-size``)."""

FAULT_HEADER = "x-sandbox-fault"
_PROMPT_FAULT = re.compile(r"\[sandbox-fault:([a-z_]+)\]")


def forced_fault(headers: Mapping[str, str], prompt: str | None) -> Fault | None:
    """A fault requested by header or prompt marker; unknown names are ignored."""
    name = headers.get(FAULT_HEADER)
    if not name and prompt:
        match = _PROMPT_FAULT.search(prompt)
        name = match.group(1) if match else None
    if not name:
        return None
    try:
        return Fault(name.strip())
    except ValueError:
        return None
