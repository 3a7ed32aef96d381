"""The lockstep demo page (/lockstep.html) in real Chromium against a real server."""

import json
import re
import urllib.request
import uuid

import pytest

from conftest import CHROMIUM, IGNORED_CONSOLE, VIEWPORT  # noqa: F401  (fails without Chromium)


def _post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


class Page:
    def __init__(self, browser, server, query):
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and not IGNORED_CONSOLE.search(m.text)
                     and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto("%s/lockstep.html?%s" % (server.base, query))

    def wait(self, expr, arg=None, timeout=15000):
        return self.page.wait_for_function(expr, arg=arg, timeout=timeout).json_value()

    def js(self, expr, arg=None):
        return self.page.evaluate(expr, arg)


@pytest.fixture
def pages(browser, server):
    opened = []

    def open_page(query):
        p = Page(browser, server, query)
        opened.append(p)
        return p

    yield open_page
    errors = [e for p in opened for e in p.errors]
    for p in opened:
        p.context.close()
    assert not errors, "the page logged errors:\n" + "\n".join(errors)


def test_two_pages_play_in_step_and_a_broken_one_is_named(pages, server):
    """Two browsers join, ready, agree on every checksum; one breaks its game: both see desync."""
    room = "ls-" + uuid.uuid4().hex[:8]
    _post(server.base, "/api/rooms", {"mode": "lockstep", "id": room, "min_players": 2,
                                      "turn_ms": 50})
    a = pages("room=%s&name=ada&auto=1" % room)
    b = pages("room=%s&name=bob&auto=1" % room)
    for p in (a, b):
        p.wait("() => window.arbiterLockstep && window.arbiterLockstep.turn >= 30")
    assert a.page.text_content("[data-testid=phase]") == "running"
    a.page.keyboard.press("ArrowRight")
    turn = a.js("window.arbiterLockstep.turn") + 10
    for p in (a, b):
        p.wait("t => window.arbiterLockstep.turn >= t", turn)
    sums_a = a.js("t => [...Array(10).keys()].map(i => window.arbiterLockstep.checksums.get(t - i))", turn)
    sums_b = b.js("t => [...Array(10).keys()].map(i => window.arbiterLockstep.checksums.get(t - i))", turn)
    assert sums_a == sums_b and None not in sums_a
    you_a = a.js("window.arbiterLockstep.you")
    assert a.js("window.arbiterLockstep.game.units.get(window.arbiterLockstep.you)[2]") == 1
    a.page.screenshot(path=str(server_artifact("lockstep-running.png")))
    b.page.click("#corrupt")
    for p in (a, b):
        p.wait("() => window.arbiterLockstep.desync !== null")
        assert p.page.text_content("[data-testid=phase]") == "running.desync"
    desync = a.js("window.arbiterLockstep.desync")
    you_b = b.js("window.arbiterLockstep.you")
    # two players that disagree: no majority, so both are named (docs/LOCKSTEP.md)
    assert sorted(desync["diverged"]) == sorted([you_a, you_b])
    assert b.js("window.arbiterLockstep.desync.turn") == desync["turn"]
    a.page.screenshot(path=str(server_artifact("lockstep-desync.png")))
    # the errors the page reports to its user are not console errors
    assert re.search(r"desync at turn \d+", a.page.text_content("#error"))


def server_artifact(name):
    from pathlib import Path
    d = Path(__file__).resolve().parents[2] / "test-artifacts"
    d.mkdir(exist_ok=True)
    return d / name
