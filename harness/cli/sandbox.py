"""``harness sandbox serve``: run the simulated providers alone, to point other tools (or SDKs) at them."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click

from harness.cli._common import err_console, handle_errors
from harness.sandbox.servers import start_sandbox


@click.group()
def sandbox() -> None:
    """The embedded sandbox: local servers speaking each provider's real protocol."""


@sandbox.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port (0 = any free port).")
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Multiplies every simulated delay.")
@click.option("--faults", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="Inject the profiles' failures.")
@click.option("--sandbox-profile", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML overriding provider profiles.")
@click.option("--seed", type=int, default=0, show_default=True)
@handle_errors
def serve(port: int, time_scale: float, faults: str, sandbox_profile: Path | None, seed: int) -> None:
    """Serve until interrupted; the first line on stdout maps each simulated provider to its base URL."""
    server = start_sandbox(time_scale=time_scale, faults=faults == "on", seed=seed, profile_file=sandbox_profile,
                           port=port)
    click.echo(json.dumps(server.base_urls()), nl=True)
    err_console().print(f"sandbox listening on {server.root} (time scale {time_scale:g}, faults {faults}); "
                        "Ctrl-C stops it")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
