"""The arena page in a real browser: Debian's Chromium driven by Playwright votes by click and by
keyboard, sees the names revealed only after each vote, loads the next pair, and leaves screenshots in
``test-artifacts/`` (desktop and phone width).

Skipped only when ``/usr/bin/chromium`` is missing outside CI; under ``CI=true`` a missing browser fails.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from harness.arena.app import create_app
from harness.arena.config import ArenaConfig, RateLimit
from harness.arena.server import BackgroundServer
from tests.browser import ARTIFACTS, chromium_browser
from tests.test_arena_pool import XSS_PROMPT, ArenaStore, build_arena_store, clone_store

GENEROUS = RateLimit(per_minute=1e6, burst=100_000)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ArenaStore]]:
    """An arena for the page's behaviour: votes until a given prompt comes up, so outputs revealed earlier
    must stay in the pool (recognition memory has its own tests in test_arena_recognition.py)."""
    shared = build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")
    store = clone_store(shared, tmp_path_factory.mktemp("browser-store"))
    app = create_app(ArenaConfig(db=store.db, cache_dir=store.cache_dir, voter_votes=GENEROUS, ip_votes=GENEROUS,
                                 reveal_memory="off"))
    server = BackgroundServer(app).start()
    yield server.url, store
    server.stop()


@pytest.fixture(scope="module")
def chromium(served: tuple[str, ArenaStore]) -> Iterator[Any]:
    """Depends on ``served`` so the store is built first: Playwright's sync API keeps an event loop
    running on this thread, under which the sandbox run could not start its own."""
    with chromium_browser() as browser:
        yield browser


def votes(store: ArenaStore) -> list[tuple[str, str, str, float, float | None]]:
    with sqlite3.connect(store.db) as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT v.outcome, v.left_target, v.right_target, v.decision_ms, p.client_ms FROM votes v"
            " JOIN arena_pairs p ON p.pair_id = v.pair_id ORDER BY v.id")]


def dismiss_into(dialogs: list[str]) -> Any:
    """A dialog handler that records the message (a script-injected alert would land here)."""

    def handle(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    return handle


def names_in(text: str, store: ArenaStore) -> list[str]:
    return [n for n in store.names if n.lower() in text.lower()]


def test_vote_by_click_then_by_keyboard_with_reveal_and_next(chromium: Any, served: tuple[str, ArenaStore]) -> None:
    url, store = served
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", dismiss_into(dialogs))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(url + "/")
    left, right = page.locator("#left-img"), page.locator("#right-img")
    page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)")
    assert not names_in(page.content(), store)
    assert page.locator("#left-name").is_hidden() and page.locator("#next").is_hidden()
    first_images = (left.get_attribute("src"), right.get_attribute("src"))
    page.screenshot(path=str(ARTIFACTS / "arena-before-vote.png"), full_page=True)

    page.get_by_role("button", name="Left is better", exact=True).click()
    reveal = page.locator("#left-name")
    reveal.wait_for(state="visible")
    left_shown, right_shown = reveal.inner_text(), page.locator("#right-name").inner_text()
    assert names_in(left_shown, store) and names_in(right_shown, store)
    for name in ("Left is better", "Right is better", "Tie", "Both are bad"):
        assert page.get_by_role("button", name=name, exact=True).is_disabled()
    assert page.get_by_role("button", name="Next pair", exact=True).is_visible()
    page.screenshot(path=str(ARTIFACTS / "arena-after-vote.png"), full_page=True)
    stored = votes(store)
    assert len(stored) == 1 and stored[0][0] == "left"
    assert left_shown.startswith(stored[0][1] + " ") and right_shown.startswith(stored[0][2] + " ")
    assert stored[0][3] > 0 and stored[0][4] is not None  # server- and client-measured decision times

    page.keyboard.press("n")  # next pair, by keyboard
    page.locator("#next").wait_for(state="hidden")
    assert (left.get_attribute("src"), right.get_attribute("src")) != first_images
    assert page.locator("#left-name").is_hidden()
    assert not names_in(page.locator("main").inner_text(), store)
    for key, outcome in (("ArrowRight", "right"), ("3", "tie"), ("ArrowDown", "both_bad")):
        page.keyboard.press(key)
        page.locator("#right-name").wait_for(state="visible")
        page.keyboard.press("Enter")
        page.locator("#next").wait_for(state="hidden")
        assert votes(store)[-1][0] == outcome
    assert [v[0] for v in votes(store)] == ["left", "right", "tie", "both_bad"]
    assert dialogs == [] and errors == []
    page.close()


def test_phone_width_layout_and_untrusted_prompt_shown_as_text(chromium: Any, served: tuple[str, ArenaStore]) -> None:
    url, store = served
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                             has_touch=True)
    dialogs: list[str] = []
    page.on("dialog", dismiss_into(dialogs))
    page.goto(url + "/")
    for _ in range(40):  # vote through pairs until the fox prompt (script-like text) is on screen
        if page.locator("#prompt").inner_text() == XSS_PROMPT:
            break
        page.get_by_role("button", name="Tie", exact=True).tap()
        page.get_by_role("button", name="Next pair", exact=True).tap()
        page.locator("#next").wait_for(state="hidden")
    assert page.locator("#prompt").inner_text() == XSS_PROMPT
    assert page.locator("#prompt script, #prompt img").count() == 0
    assert not names_in(page.content(), store)
    page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing overflows sideways
    boxes = [page.locator(s).bounding_box() for s in ("#left-img", "#right-img")]
    assert all(b is not None for b in boxes)
    left_box, right_box = boxes[0], boxes[1]
    assert left_box is not None and right_box is not None
    assert left_box["x"] + left_box["width"] <= right_box["x"] + 1  # still side by side
    assert abs(left_box["y"] - right_box["y"]) < 1 and left_box["width"] > 150
    for name in ("Left is better", "Right is better", "Tie", "Both are bad"):
        box = page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box is not None and box["height"] >= 44 and box["x"] + box["width"] <= 390  # touch-sized
    page.screenshot(path=str(ARTIFACTS / "arena-phone.png"), full_page=True)
    page.get_by_role("button", name="Right is better", exact=True).tap()
    page.locator("#right-name").wait_for(state="visible")
    assert re.search(r"\(.+, .+\)", page.locator("#right-name").inner_text())
    page.screenshot(path=str(ARTIFACTS / "arena-phone-revealed.png"), full_page=True)
    assert dialogs == []
    page.close()
