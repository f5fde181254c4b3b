"""``harness sandbox serve``: run the simulated providers alone, to point other tools (or SDKs) at them."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click

from harness.cli._common import err_console, handle_errors
from harness.errors import ConfigError
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
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Serve HTTPS with this certificate (PEM), for SDKs that only build https:// URLs.")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key (PEM) of --ssl-certfile.")
@handle_errors
def serve(port: int, time_scale: float, faults: str, sandbox_profile: Path | None, seed: int,
          ssl_certfile: Path | None, ssl_keyfile: Path | None) -> None:
    """Serve until interrupted; the first line on stdout maps each simulated provider to its base URL."""
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together")
    server = start_sandbox(time_scale=time_scale, faults=faults == "on", seed=seed, profile_file=sandbox_profile,
                           port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
    click.echo(json.dumps(server.base_urls()), nl=True)
    for protocol, reason in server.skipped.items():
        err_console().print(f"sandbox: not serving protocol {protocol!r}: {reason}", markup=False)
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
