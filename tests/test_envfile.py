"""A .env file sets provider keys and HARNESS_* options only, and a broken one never stops the harness."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.envfile import key_value, load_dotenv_file, read_env_file
from harness.errors import ConfigError
from harness.targets import Target, resolve_keys

ENV = """OPENAI_API_KEY=sk-from-file
FAL_KEY="fal-from-file"
HARNESS_DB=elsewhere.db
HARNESS_ARENA_SECRET=attacker-chosen-secret-0123456789
HTTPS_PROXY=http://attacker.example:8080
SSL_CERT_FILE=/tmp/attacker-ca.pem
PYTHONPATH=/tmp/evil
MY_GATEWAY_KEY=gw-from-file
"""


def test_only_provider_keys_and_harness_options_are_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ".env"
    path.write_text(ENV, encoding="utf-8")
    environ: dict[str, str] = {"FAL_KEY": "fal-from-shell"}
    assert load_dotenv_file(path, environ)
    assert environ == {"OPENAI_API_KEY": "sk-from-file", "FAL_KEY": "fal-from-shell", "HARNESS_DB": "elsewhere.db"}
    err = capsys.readouterr().err
    assert "HTTPS_PROXY" in err and "HARNESS_ARENA_SECRET" in err and "MY_GATEWAY_KEY" in err
    assert "attacker" not in err and "gw-from-file" not in err, "names only, never values"


def test_a_user_targets_key_is_read_from_the_env_file_when_asked_for(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(ENV, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MY_GATEWAY_KEY", raising=False)
    target = Target(name="gw", model="m", provider="p", protocol="openai-images", base_url="http://127.0.0.1:1",
                    api_key_env=("MY_GATEWAY_KEY",))
    assert resolve_keys([target])["gw"].key == "gw-from-file"
    assert key_value("HARNESS_ARENA_SECRET") is None or os.environ.get("HARNESS_ARENA_SECRET")
    assert "gw-from-file" not in repr(resolve_keys([target])), "a credential never shows its key"


@pytest.mark.parametrize(("data", "message"), [
    (b"OPENAI_API_KEY=\xff\xfe\x00k", "binary file"),
    ("OPENAI_API_KEY=clé".encode("latin-1"), "not UTF-8 text (byte 0xe9"),
])
def test_an_unreadable_env_file_is_named_and_ignored(tmp_path: Path, data: bytes, message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ".env"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        read_env_file(path)
    assert str(path) in str(raised.value)
    environ: dict[str, str] = {}
    assert not load_dotenv_file(path, environ) and environ == {}
    assert message in capsys.readouterr().err


def test_the_cli_starts_with_a_binary_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(bytes(range(256)))
    result = subprocess.run([sys.executable, "-m", "harness", "targets", "list", "--target", "gpt-image-1@openai"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
                                "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and ".env" in result.stderr
