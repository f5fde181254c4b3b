"""`harness run --strict-size` reaches each attempt: an image of another size than asked is a success shown
as not as asked by default, and a failed request with the flag (and the flag survives a resume)."""

from __future__ import annotations

import base64
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


class _OtherSize(BaseHTTPRequestHandler):
    """An OpenAI-Images gateway that always answers with a 48x32 image, whatever size was asked."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"created": 0, "data": [{"b64_json": base64.b64encode(_png(48, 32)).decode()}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OtherSize)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("strict", [False, True])
def test_strict_size_turns_a_wrong_size_into_a_failed_request(tmp_path: Path, tiny_suite: Path, gateway: str,
                                                             strict: bool) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text(f"""targets:
  - name: gateway
    model: gpt-image-1
    provider: mygateway
    protocol: openai-images
    base_url: {gateway}
    api_key_env: GATEWAY_KEY
""", encoding="utf-8")
    db = tmp_path / "r" / "harness.db"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--challenges", str(tiny_suite), "--targets",
                           str(targets), "--target", "gateway", "--variant", "default", "--db", str(db), "--json",
                           *(["--strict-size"] if strict else [])],
                          capture_output=True, text=True, env={**os.environ, "GATEWAY_KEY": "k", "CI": "true"},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT ok, error_kind, provider_code, size_as_asked FROM attempts WHERE"
                            " challenge_id='fox'").fetchall()
        config = json.loads(conn.execute("SELECT config_json FROM runs").fetchone()[0])
    assert config["strict_size"] is strict
    (ok, kind, code, as_asked), = rows
    if strict:
        assert (ok, kind, code) == (0, "bad_output", "size_mismatch")
    else:
        assert (ok, kind, as_asked) == (1, None, 0)
