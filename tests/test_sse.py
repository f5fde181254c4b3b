"""The event-stream parser accepts every framing the providers use, however the bytes are chunked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from harness.sse import SSEEvent, aparse_lines, encode_comment, encode_event, parse_events, split_lines

line_text = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40)
event_name = st.from_regex(r"[a-z][a-z_.]{0,20}", fullmatch=True)
events = st.lists(st.tuples(st.lists(line_text, min_size=1, max_size=4).map("\n".join),
                            st.one_of(st.none(), event_name)), min_size=1, max_size=8)


@given(events, st.booleans())
def test_encoded_events_parse_back_identically(items: list[tuple[str, str | None]], crlf: bool) -> None:
    wire = b"".join(encode_event(data, event=name, crlf=crlf) for data, name in items).decode()
    parsed = parse_events(wire)
    assert parsed == [SSEEvent(data=data, event=name or "message") for data, name in items]


@given(events, st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_incremental_parsing_ignores_how_the_stream_is_chunked(items: list[tuple[str, str | None]],
                                                              cuts: list[int]) -> None:
    wire = b"".join(encode_comment("OPENROUTER PROCESSING") + encode_event(d, event=n) for d, n in items).decode()

    async def lines() -> AsyncIterator[str]:
        buffer, pos, i = "", 0, 0
        while pos < len(wire):
            step = cuts[i % len(cuts)]
            buffer += wire[pos:pos + step]
            pos += step
            i += 1
            *complete, buffer = buffer.split("\n")
            for line in complete:
                yield line
        if buffer:
            yield buffer

    async def collect() -> list[SSEEvent]:
        return [e async for e in aparse_lines(lines())]

    assert asyncio.run(collect()) == [SSEEvent(data=d, event=n or "message") for d, n in items]


def test_comments_are_skipped_and_a_stream_without_final_blank_line_still_dispatches() -> None:
    text = ": OPENROUTER PROCESSING\n\ndata: {\"a\": 1}\n\ndata: [DONE]"
    assert [e.data for e in parse_events(text)] == ['{"a": 1}', "[DONE]"]


def test_google_crlf_framing_and_field_without_space() -> None:
    text = 'data: {"x":1}\r\n\r\ndata:{"y":2}\r\n\r\n'
    assert [e.data for e in parse_events(text)] == ['{"x":1}', '{"y":2}']


def test_event_and_id_fields_are_kept() -> None:
    (event,) = parse_events("event: image_generation.completed\nid: 7\ndata: {}\n\n")
    assert (event.event, event.id, event.data) == ("image_generation.completed", "7", "{}")


@given(st.text(max_size=200))
def test_split_lines_handles_every_line_ending(text: str) -> None:
    assert split_lines(text) == text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
