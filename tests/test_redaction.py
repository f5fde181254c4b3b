"""The redactor on its own: every encoding of a key, anywhere in any text, and nothing else touched."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.records import AttemptRecord, RequestKey
from harness.redaction import MIN_PARTIAL, REDACTED, Redactor
from harness.run.writer import StoreWriter
from harness.store import Store
from harness.store import runs as run_store
from harness.timing import AttemptClock

KEY = "sk-proj-Ab3/Zx+9_q=wY7-kLm0"


def encodings(key: str) -> dict[str, str]:
    """How a provider (or a proxy) may write a key back: each must disappear."""
    return {
        "raw": key,
        "bearer": f"Bearer {key}",
        "fal": f"Key {key}",
        "token": f"Token {key}",
        "url": quote(key, safe=""),
        "url-lower-hex": quote(key, safe="").replace("%2F", "%2f").replace("%2B", "%2b").replace("%3D", "%3d"),
        "url-plus": quote_plus(key),
        "basic user:key": base64.b64encode(f"user:{key}".encode()).decode(),
        "basic :key": base64.b64encode(f":{key}".encode()).decode(),
        "basic key:": base64.b64encode(f"{key}:".encode()).decode(),
        "base64": base64.b64encode(key.encode()).decode(),
        "base64url": base64.urlsafe_b64encode(key.encode()).decode(),
        "json": json.dumps({"authorization": f"Bearer {key}"}),
        "json-slash": json.dumps(key).replace("/", "\\/"),
        "repr-bytes": repr(key.encode()),
    }


def leaked(text: str, key: str) -> list[str]:
    """Which encodings of ``key`` still appear in ``text`` (the key's base64 core for base64 forms)."""
    found = []
    for name, enc in encodings(key).items():
        if name.startswith(("basic", "base64")):
            core = enc.rstrip("=")[4:-4]
            if core and core in text:
                found.append(name)
        elif name in ("bearer", "fal", "token", "json"):
            continue
        elif enc in text:
            found.append(name)
    return found


@pytest.mark.parametrize("name", list(encodings(KEY)))
def test_every_encoding_of_a_key_is_removed(name: str) -> None:
    text = f"401 You sent: {encodings(KEY)[name]} (see docs)"
    out = Redactor.for_keys([KEY]).text(text)
    assert leaked(out, KEY) == []
    assert REDACTED in out and out.startswith("401 You sent: ") and out.endswith("(see docs)")


def test_a_message_cut_mid_key_loses_the_piece_that_was_left() -> None:
    text = "You sent Authorization: Bearer " + KEY
    cut = text[: len(text) - 10] + "…"
    out = Redactor.for_keys([KEY]).text(cut)
    assert KEY[: len(KEY) - 10] not in out and out.endswith(REDACTED + "…")


def test_short_keys_are_removed_only_as_whole_tokens() -> None:
    redactor = Redactor.for_keys(["abc1"])
    assert redactor.text("key=abc1; abc12 xabc1 abc1") == f"key={REDACTED}; abc12 xabc1 {REDACTED}"


def test_text_without_keys_is_returned_unchanged() -> None:
    text = "rate limited: try again in 12s — request req_123"
    assert Redactor.for_keys([KEY, "other-key-123456"]).text(text) == text
    assert Redactor().text(text) == text and not Redactor()


def test_the_redactor_never_shows_its_keys() -> None:
    redactor = Redactor.for_keys([KEY])
    assert KEY not in repr(redactor) and KEY not in str(redactor)


def test_json_values_are_redacted_in_keys_values_and_lists() -> None:
    value = {"note": f"key {KEY}", KEY: 1, "list": [quote(KEY, safe=""), 3], "n": 2.5}
    out = Redactor.for_keys([KEY]).value(value)
    assert KEY not in json.dumps(out) and quote(KEY, safe="") not in json.dumps(out)
    assert out["n"] == 2.5 and out["list"][1] == 3


def test_image_bytes_hiding_a_key_are_recognised() -> None:
    redactor = Redactor.for_keys([KEY])
    png_with_text = b"\x89PNG\r\n\x1a\n" + b"\0" * 30 + b"tEXtComment\0" + KEY.encode() + b"\0" * 10
    assert redactor.contains(png_with_text)
    assert redactor.contains(b"...." + base64.b64encode(f"u:{KEY}".encode()) + b"....")
    assert not redactor.contains(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)


def test_a_record_is_redacted_in_every_text_field() -> None:
    record = AttemptRecord(
        run_id="r", key=RequestKey("c", "default", "t", 0), model="m", provider="p", protocol="gemini", attempt=1,
        final=True, ok=False, started_at=0.0, sched_ms=0.0, start_ms=0.0, clock=_clock(), error_kind="auth", error_message=f"You sent {KEY}",
        provider_code=KEY, request_id=f"req-{KEY}", usage={"echo": KEY}, provider_timings={"t": [KEY]},
        finish_reason=f"STOP {KEY}")
    n = Redactor.for_keys([KEY]).fields_in_place(record, skip=("image_bytes",))
    assert n == 6
    assert KEY not in repr(record)


def _clock() -> AttemptClock:
    names = AttemptClock.__dataclass_fields__
    return AttemptClock(**dict.fromkeys(names))  # type: ignore[arg-type]


key_alphabet = st.characters(min_codepoint=33, max_codepoint=126)


@settings(max_examples=300, deadline=None)
@given(key=st.text(alphabet=key_alphabet, min_size=8, max_size=64),
       before=st.text(max_size=80), after=st.text(max_size=80),
       encoding=st.sampled_from(list(encodings(KEY))), others=st.lists(st.text(min_size=8, max_size=40), max_size=3))
def test_no_key_survives_anywhere_in_any_text(key: str, before: str, after: str, encoding: str,
                                              others: list[str]) -> None:
    text = before + encodings(key)[encoding] + after
    out = Redactor.for_keys([key, *others]).text(text)
    assert key not in out
    assert quote(key, safe="") not in out or quote(key, safe="") == key
    assert leaked(out, key) == []


@settings(max_examples=200, deadline=None)
@given(key=st.text(alphabet=key_alphabet, min_size=8, max_size=64), text=st.text(max_size=200),
       cut=st.integers(min_value=MIN_PARTIAL, max_value=63))
def test_a_truncated_key_at_the_end_leaves_no_piece_of_it(key: str, text: str, cut: int) -> None:
    piece = key[: min(cut, len(key) - 1)]
    out = Redactor.for_keys([key]).text(text + " " + piece + "…")
    assert not out.endswith(piece + "…")


@settings(max_examples=200, deadline=None)
@given(key=st.text(alphabet=key_alphabet, min_size=8, max_size=64), text=st.text(max_size=200))
def test_text_that_holds_no_key_is_not_changed(key: str, text: str) -> None:
    redactor = Redactor.for_keys([key])
    if redactor.text_counted(text)[1] == 0:
        assert redactor.text(text) == text
    assert key not in redactor.text(text)


def test_the_store_writer_redacts_a_record_before_anyone_sees_it(tmp_path: Path) -> None:
    """Records that no adapter produced (a not-sent reason, a future field) are redacted in ``put`` itself,
    before the run's progress printing (called after ``put``) or the store sees them."""
    db = tmp_path / "harness.db"
    with Store.open(db) as store:
        run_store.create_run(store, run_id="r", created_at="2026-01-01T00:00:00Z", harness_version="t",
                             sandbox=False, time_scale=None, label=None, planned=1, config={}, challenges=[],
                             targets=[])
    writer = StoreWriter(db, tmp_path / "images", redactor=Redactor.for_keys([KEY]))
    record = AttemptRecord(
        run_id="r", key=RequestKey("c", "default", "t", 0), model="m", provider="p", protocol="gemini", attempt=1,
        final=True, ok=False, started_at=0.0, sched_ms=0.0, start_ms=0.0, clock=_clock(), error_kind="not_sent",
        error_message=f"not sent: t answered 401 You sent Bearer {KEY}", usage={"k": quote(KEY, safe="")})
    writer.put(record)
    assert KEY not in repr(record) and quote(KEY, safe="") not in repr(record)
    writer.close()
    assert writer.committed == 1
    assert KEY.encode() not in db.read_bytes() and not any(
        KEY.encode() in p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
