"""The voter's controls in a real browser (Debian's Chromium via Playwright): skip by button and by key,
zoom on either image by keyboard (Esc closes, focus returns, no vote while it is open), the vote counter,
and the link to the leaderboard, whose page loads under the arena's content security policy.

Skipped only when ``/usr/bin/chromium`` is missing outside CI; under ``CI=true`` a missing browser fails.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.arena.app import create_app
from harness.arena.config import ArenaConfig
from harness.arena.server import BackgroundServer
from tests.browser import ARTIFACTS, chromium_browser
from tests.test_arena_browser import GENEROUS, dismiss_into, names_in
from tests.test_arena_leaderboard import arena_votes
from tests.test_arena_pool import ArenaStore, build_arena_store, clone_store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ArenaStore]]:
    shared = build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")
    store = clone_store(shared, tmp_path_factory.mktemp("browser-ux-store"))
    app = create_app(ArenaConfig(db=store.db, cache_dir=store.cache_dir, voter_votes=GENEROUS, ip_votes=GENEROUS,
                                 reveal_memory="off"))
    server = BackgroundServer(app).start()
    yield server.url, store
    server.stop()


@pytest.fixture(scope="module")
def chromium(served: tuple[str, ArenaStore]) -> Iterator[Any]:
    with chromium_browser() as browser:
        yield browser


def count(store: ArenaStore, table: str) -> int:
    with sqlite3.connect(store.db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def watched_page(chromium: Any, errors: list[str], dialogs: list[str], **options: Any) -> Any:
    page = chromium.new_page(**options)
    page.on("dialog", dismiss_into(dialogs))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return page


def test_skip_by_button_and_key_loads_another_pair_and_reveals_nothing(chromium: Any,
                                                                      served: tuple[str, ArenaStore]) -> None:
    url, store = served
    errors: list[str] = []
    dialogs: list[str] = []
    page = watched_page(chromium, errors, dialogs, viewport={"width": 1280, "height": 900})
    page.goto(url + "/")
    skips, votes = count(store, "arena_skips"), count(store, "votes")
    assert page.locator("#votes-cast").inner_text() == "0"
    first = page.locator("#left-img").get_attribute("src")
    page.get_by_role("button", name="Skip this pair", exact=True).click()
    page.wait_for_function(f"() => document.getElementById('left-img').getAttribute('src') !== {first!r}")
    assert "Skipped" in page.locator("#status").inner_text()
    assert page.locator("#left-name").is_hidden() and not names_in(page.locator("main").inner_text(), store)
    second = page.locator("#left-img").get_attribute("src")
    page.keyboard.press("s")
    page.wait_for_function(f"() => document.getElementById('left-img').getAttribute('src') !== {second!r}")
    assert count(store, "arena_skips") == skips + 2 and count(store, "votes") == votes
    assert page.locator("#votes-cast").inner_text() == "0"
    page.keyboard.press("1")
    page.locator("#left-name").wait_for(state="visible")
    assert page.locator("#votes-cast").inner_text() == "1"
    assert page.get_by_role("button", name="Skip this pair", exact=True).is_hidden()
    page.keyboard.press("s")  # after the vote, a skip key does nothing
    assert count(store, "arena_skips") == skips + 2
    page.keyboard.press("n")
    page.locator("#next").wait_for(state="hidden")
    assert page.get_by_role("button", name="Skip this pair", exact=True).is_visible()
    assert errors == [] and dialogs == []
    page.close()


def test_zoom_either_image_by_keyboard_and_close_with_escape(chromium: Any, served: tuple[str, ArenaStore]) -> None:
    url, store = served
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    dialogs: list[str] = []
    page = watched_page(chromium, errors, dialogs, viewport={"width": 1280, "height": 900})
    page.goto(url + "/")
    page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)")
    votes = count(store, "votes")
    enlarge_left = page.get_by_role("button", name="Enlarge left image", exact=True)
    enlarge_left.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#zoom")
    dialog.wait_for(state="visible")
    zoomed = page.locator("#zoom-frame img")
    assert zoomed.get_attribute("src") == page.locator("#left-img").get_attribute("src")
    page.wait_for_function("() => document.querySelector('#zoom-frame img').naturalWidth > 0")
    box = zoomed.bounding_box()
    small = page.locator("#left-img").bounding_box()
    assert box is not None and small is not None and box["width"] > small["width"]
    page.screenshot(path=str(ARTIFACTS / "arena-zoom.png"))
    page.keyboard.press("1")  # no vote while the enlarged image is open
    assert count(store, "votes") == votes and page.locator("#left-name").is_hidden()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    page.wait_for_function("() => document.activeElement.getAttribute('aria-label') === 'Enlarge left image'")
    page.keyboard.press("x")
    dialog.wait_for(state="visible")
    assert zoomed.get_attribute("src") == page.locator("#right-img").get_attribute("src")
    assert "Right image" in page.locator("#zoom-title").inner_text()
    page.get_by_role("button", name="Close", exact=False).click()
    dialog.wait_for(state="hidden")
    page.wait_for_function("() => document.querySelector('#zoom-frame img') === null")  # dropped on close
    assert not names_in(page.content(), store)
    assert errors == [] and dialogs == []
    page.close()


def test_the_leaderboard_link_opens_the_board_under_the_security_policy(chromium: Any,
                                                                         served: tuple[str, ArenaStore]) -> None:
    """On a phone: the board (with real votes behind it: 300 arena votes an hour old) fits the width."""
    url, store = served
    arena_votes(store, 300, time.time() - 3600)
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    dialogs: list[str] = []
    page = watched_page(chromium, errors, dialogs, viewport={"width": 390, "height": 844}, is_mobile=True,
                        has_touch=True)
    page.goto(url + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_role("link", name="Leaderboard").click()
    page.wait_for_url(url + "/leaderboard")
    assert page.get_by_role("heading", name="Leaderboard", exact=True).is_visible()
    assert page.get_by_role("heading", name="How this board is made").is_visible()
    assert page.locator("table#overall tbody tr").count() == 4
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "arena-leaderboard.png"), full_page=True)
    page.get_by_role("link", name="Vote in the arena").click()
    page.wait_for_url(url + "/")
    assert errors == [] and dialogs == []
    page.close()
