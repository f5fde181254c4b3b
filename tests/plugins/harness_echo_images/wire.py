"""Wire facts of the echo-images protocol, shared by its adapter and its sandbox server.

``POST {base}/generate`` with JSON ``{"model", "prompt", "width", "height"}`` and ``Authorization: Bearer
KEY``; the answer is the PNG itself (``image/png``) with its id in ``x-echo-request-id``, or an error as
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

GENERATE_PATH = "/generate"
SANDBOX_PREFIX = "/echo/v1"
REQUEST_ID_HEADER = "x-echo-request-id"
DEFAULT_SIZE = (64, 64)
"""Width and height in pixels when a request names no ``WxH`` size."""


def pixel_size(size: str | None) -> tuple[int, int]:
    """``"WxH"`` as integers, else :data:`DEFAULT_SIZE`."""
    if size and "x" in size:
        w, _, h = size.partition("x")
        if w.isdigit() and h.isdigit():
            return int(w), int(h)
    return DEFAULT_SIZE
