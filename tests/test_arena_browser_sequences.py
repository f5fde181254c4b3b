"""A sequence pair in a real browser (Debian's Chromium via Playwright): the page shows every turn's
instruction with both sides' images, no maker's name before the vote, takes the vote on the whole sequence
by keyboard, reveals the names, and goes on to the next pair. Leaves a screenshot in ``test-artifacts/``.

Skipped only when ``/usr/bin/chromium`` is missing outside CI; under ``CI=true`` a missing browser fails.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.arena.app import create_app
from harness.arena.config import ArenaConfig
from harness.arena.server import BackgroundServer
from tests.browser import ARTIFACTS, chromium_browser
from tests.test_arena_browser import GENEROUS, dismiss_into
from tests.test_arena_pool import ArenaStore
from tests.test_arena_sequences import INSTRUCTIONS, NAMES, build

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ArenaStore]]:
    store = build(tmp_path_factory.mktemp("browser-sequences"))
    app = create_app(ArenaConfig(db=store.db, cache_dir=store.cache_dir, voter_votes=GENEROUS, ip_votes=GENEROUS,
                                 reveal_memory="off", min_exposure=0))
    server = BackgroundServer(app).start()
    yield server.url, store
    server.stop()


@pytest.fixture(scope="module")
def chromium(served: tuple[str, ArenaStore]) -> Iterator[Any]:
    """Depends on ``served`` so the sandbox run happens before Playwright starts its event loop here."""
    with chromium_browser() as browser:
        yield browser


def last_vote(db: Path) -> tuple[str, str, str, str]:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT kind, outcome, left_target, right_target FROM votes ORDER BY id DESC").fetchone()
    return str(row[0]), str(row[1]), str(row[2]), str(row[3])


def hashes(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [str(sha)[:12] for (sha,) in conn.execute("SELECT sha256 FROM outputs")]


def shown(page: Any) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('main img')].every(i => i.complete && "
                           "i.naturalWidth > 0)")


def test_a_sequence_pair_is_voted_on_by_keyboard(chromium: Any, served: tuple[str, ArenaStore]) -> None:
    url, store = served
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    dialogs: list[str] = []
    page.on("dialog", dismiss_into(dialogs))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(url + "/")
    turns = page.locator("#turns")
    for _ in range(12):  # single-image pairs come too: judge them by keyboard until a sequence is shown
        shown(page)
        if turns.is_visible():
            break
        assert page.locator("#turn-list li").count() == 0
        page.keyboard.press("3")
        page.locator("#right-name").wait_for(state="visible")
        page.keyboard.press("n")
        page.locator("#next").wait_for(state="hidden")
    assert turns.is_visible(), "no sequence pair in 12 pairs"
    assert page.locator("#headline").inner_text() == "Which sequence is better?"
    instructions = page.locator("#turn-list .turn-text").all_inner_texts()
    assert instructions in list(INSTRUCTIONS.values())
    assert page.locator("#turn-list .turn-no").all_inner_texts() == ["Turn 1", "Turn 2", "Turn 3"]
    assert page.locator("#turn-list .turn-images img").count() == 6
    last = page.locator("#turn-list .turn-images img").nth(4).get_attribute("src")
    assert last == page.locator("#left-img").get_attribute("src")  # the last turn is the pair's own image
    text = page.content()
    assert not [n for n in NAMES if n.lower() in text.lower()]
    assert not [h for h in hashes(store.db) if h in text]
    page.screenshot(path=str(ARTIFACTS / "arena-sequence-before-vote.png"), full_page=True)
    page.locator("#turn-list .turn-images img").nth(1).click()  # a turn's image enlarges like the pair's
    assert page.locator("#zoom").is_visible() and page.locator("#zoom-title").inner_text() == "Right, turn 1"
    page.keyboard.press("Escape")
    page.locator("#zoom").wait_for(state="hidden")

    page.keyboard.press("1")  # the sequence on the left is better
    page.locator("#left-name").wait_for(state="visible")
    kind, outcome, left_target, _ = last_vote(store.db)
    assert (kind, outcome) == ("multi-turn", "left")
    assert page.locator("#left-name").inner_text().startswith(left_target + " ")
    page.keyboard.press("n")
    page.locator("#next").wait_for(state="hidden")
    shown(page)
    assert turns.is_visible() == (page.locator("#turn-list li").count() > 0)
    assert page.locator("#left-name").is_hidden()
    assert dialogs == [] and errors == []
    page.close()
