"""The echo-images protocol spec: what the ``harness.protocols`` entry point names.

Kept apart from the adapter and the server so that listing protocols imports neither.
"""

from __future__ import annotations

from harness.protocols import ProtocolSpec
from harness_echo_images import wire

SPEC = ProtocolSpec(
    name="echo-images",
    description="Echo Images: POST a prompt, get the PNG back (test plugin)",
    adapter="harness_echo_images.adapter:EchoImagesProvider",
    server="harness_echo_images.server:EchoImagesServer",
    mount=wire.SANDBOX_PREFIX,
    profile={
        "latency": {"median_s": 2.0, "p95_s": 4.0},
        "faults": {"server_error": 0.05},
        "price_per_image_usd": 0.01,
        "source": "invented for the test plugin: a 2 s median, 4 s p95, 5 % server errors",
    },
)
