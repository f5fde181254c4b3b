"""A hostile provider echoes the key back in every way it can; the key never reaches the store, the run's
printed progress, the exports or the report, for every protocol.

The provider answers ``401 "You sent: " + repr(headers)`` (plus the key URL-encoded, as HTTP Basic and as
JSON, and in its request-id headers): before redaction, every adapter copied that body into the attempt's
``error_message``, from where exports and ``report/index.html`` published it."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from harness.challenges import load
from harness.cli import cli
from harness.records import AttemptRecord
from harness.run import RunObserver, RunOptions, start_run
from harness.targets import Target, resolve_keys

KEY = "sk-live/Echo+Key=42_abcdefXYZ"
KEY_ENV = "HOSTILE_ECHO_KEY"
CREDENTIAL_HEADERS = ("authorization", "x-goog-api-key", "x-api-key")

MODELS = {
    "gemini": "gemini-2.5-flash-image",
    "openai-images": "gpt-image-1",
    "openai-responses": "gpt-4.1",
    "openrouter": "google/gemini-2.5-flash-image",
    "fal": "fal-ai/flux/dev",
    "replicate": "black-forest-labs/flux-dev",
}


@dataclass
class Seen:
    """One request the hostile server received."""

    method: str
    path: str
    headers: dict[str, str]


Handler = Callable[[Seen, str], tuple[int, dict[str, str], bytes]]
"""(request, server root URL) -> (status, headers, body)."""


@dataclass
class HostileServer:
    """A provider on 127.0.0.1 whose answers a test chooses; it records every request it gets."""

    handler: Handler
    root: str = ""
    seen: list[Seen] = field(default_factory=list)


@contextmanager
def hostile_server(handler: Handler) -> Iterator[HostileServer]:
    state = HostileServer(handler)

    class Answer(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
            state.seen.append(seen)
            status, headers, body = state.handler(seen, state.root)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    state.root = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def sent_key(headers: dict[str, str]) -> str:
    """The key the client sent, whatever header and scheme carried it."""
    for name in CREDENTIAL_HEADERS:
        if name in headers:
            return headers[name].split(" ")[-1]
    return ""


def echo(seen: Seen, root: str) -> tuple[int, dict[str, str], bytes]:
    """``401 You sent: {headers!r}`` with the key again URL-encoded, as Basic auth and in JSON."""
    key = sent_key(seen.headers)
    text = (f"You sent: {seen.headers!r} url={quote(key, safe='')} "
            f"basic={base64.b64encode(f'user:{key}'.encode()).decode()} json={json.dumps(key)}")
    headers = {"content-type": "text/plain", "x-request-id": key, "x-fal-request-id": key,
               "x-goog-request-id": key, "x-error-type": key}
    return 401, headers, text.encode()


def echo_json(seen: Seen, root: str) -> tuple[int, dict[str, str], bytes]:
    """The same echo inside each protocol's own error shape (so classify copies it into message and code)."""
    key = sent_key(seen.headers)
    said = f"You sent: {seen.headers!r}"
    body = {"error": {"message": said, "code": key, "status": key, "type": key},
            "detail": [{"msg": said, "type": key}], "title": key}
    return 401, {"content-type": "application/json", "x-request-id": key}, json.dumps(body).encode()


def forms(key: str) -> list[str]:
    """Strings whose presence anywhere means the key leaked."""
    basic = base64.b64encode(f"user:{key}".encode()).decode()
    return [key, quote(key, safe=""), json.dumps(key)[1:-1], basic[8:-4], base64.b64encode(key.encode()).decode()[:-4]]


def leaks_in(data: str | bytes, key: str = KEY) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [f for f in forms(key) if f in text]


def suite(tmp_path: Path) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "suite.yaml").write_text(
        "challenges:\n  - id: fox\n    title: Fox\n    category: illustration\n    kind: text-to-image\n"
        "    prompt: A fox reading a newspaper\n    params: {aspect_ratio: '1:1', seed: 1}\n", encoding="utf-8")
    return folder


class Printed(RunObserver):
    """What the CLI's progress printing would receive."""

    def __init__(self) -> None:
        self.records: list[AttemptRecord] = []

    def on_attempt(self, record: AttemptRecord) -> None:
        self.records.append(record)


def run_against(tmp_path: Path, protocol: str, base_url: str, observer: RunObserver | None = None,
                **options: object) -> tuple[Path, str]:
    target = Target(name=f"hostile@{protocol}", model=MODELS[protocol], provider="hostile", protocol=protocol,
                    base_url=base_url, api_key_env=(KEY_ENV,), price_per_image_usd=0.01, options=dict(options))
    db = tmp_path / "results" / "harness.db"
    credentials = resolve_keys([target], {KEY_ENV: KEY})
    result = start_run(db, load(suite(tmp_path)), [target], credentials,
                       RunOptions(timeout_s=20, connect_timeout_s=5, retries=1), observer=observer)
    return db, result.run_id


def every_file(folder: Path) -> Iterator[Path]:
    return (p for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("handler", [echo, echo_json], ids=["text", "json"])
@pytest.mark.parametrize("protocol", list(MODELS))
def test_a_provider_echoing_the_key_gets_it_into_no_store_export_or_report(
        tmp_path: Path, protocol: str, handler: Handler) -> None:
    printed = Printed()
    with hostile_server(handler) as server:
        db, run_id = run_against(tmp_path, protocol, server.root, printed)
    assert server.seen and all(sent_key(s.headers) == KEY for s in server.seen), "the key was sent to its origin"

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT error_kind, error_message FROM attempts WHERE run_id=?", (run_id,)).fetchall()
        dump = "\n".join(conn.iterdump())
    assert rows and all(kind == "auth" for kind, _ in rows)
    assert any("You sent" in (message or "") for _, message in rows), "the echo itself is kept, minus the key"
    assert leaks_in(dump) == []
    assert printed.records and all(leaks_in(repr(r)) == [] for r in printed.records)

    runner = CliRunner()
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"export-{fmt}"
        result = runner.invoke(cli, ["export", run_id, "--format", fmt, "--out", str(out), "--db", str(db)])
        assert result.exit_code == 0, result.output
        files = list(every_file(out))
        assert files and all(leaks_in(f.read_bytes()) == [] for f in files)
    report = tmp_path / "report"
    result = runner.invoke(cli, ["report", run_id, "--out", str(report), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert (report / "index.html").is_file()
    assert [str(f) for f in every_file(report) if leaks_in(f.read_bytes())] == []
    assert leaks_in(result.output) == []


def png_with_key(key: str) -> bytes:
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"made for {key}")
    out = io.BytesIO()
    Image.new("RGB", (1024, 1024), (200, 10, 10)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def test_an_image_carrying_the_key_in_its_metadata_is_refused_not_stored(tmp_path: Path) -> None:
    def answer(seen: Seen, root: str) -> tuple[int, dict[str, str], bytes]:
        data = base64.b64encode(png_with_key(sent_key(seen.headers))).decode()
        return 200, {"content-type": "application/json"}, json.dumps({"data": [{"b64_json": data}]}).encode()

    with hostile_server(answer) as server:
        db, run_id = run_against(tmp_path, "openai-images", server.root)
    with sqlite3.connect(db) as conn:
        kind, code = conn.execute("SELECT error_kind, provider_code FROM attempts WHERE run_id=?", (run_id,)).fetchone()
    assert (kind, code) == ("bad_output", "key_in_output")
    assert [str(f) for f in every_file(db.parent) if leaks_in(f.read_bytes())] == []


def test_harness_run_prints_no_key_while_a_provider_echoes_it(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's own progress and error printing, end to end (the dead-target notice quotes the message)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("CI", "true")
    with hostile_server(echo) as server:
        targets = tmp_path / "targets.yaml"
        targets.write_text(
            "targets:\n  - name: hostile@gemini\n    model: gemini-2.5-flash-image\n    provider: hostile\n"
            f"    protocol: gemini\n    base_url: {server.root}\n    api_key_env: {KEY_ENV}\n", encoding="utf-8")
        result = CliRunner().invoke(cli, ["run", "--challenges", str(suite(tmp_path)), "--targets", str(targets),
                                          "--target", "hostile@gemini", "--samples", "12", "--concurrency", "1", "--timeout", "20",
                                          "--db", str(tmp_path / "h.db")])
    printed = result.output + (result.stderr if result.stderr_bytes else "")
    assert server.seen and "hostile@gemini" in printed, printed
    assert leaks_in(printed) == []
