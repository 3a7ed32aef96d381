"""Browser-test fixtures: a real Arbiter server in a subprocess, real Chromium via Playwright.

The server runs as ``python -m arbiter --port 0`` (Playwright's sync API and a
running Twisted reactor must not share a process) and prints ``ARBITER_PORT=<n>``
once it listens. Every page records console errors and uncaught exceptions; a
test fails if any page it opened logged one.
"""

import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from playwright import sync_api  # noqa: E402  (installed by `make test`)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ARBITER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--enable-unsafe-swiftshader",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
]
VIEWPORT = {"width": 1280, "height": 720}
# Chromium chatter that is not an error of the page.
IGNORED_CONSOLE = re.compile(r"GL Driver Message|GPU stall due to ReadPixels|WebGL")

# Browser tests never skip: a missing browser or front-end install is a failure
# (`make test` installs both).
if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
    pytest.fail("no Chromium at %s: run `make test` (it installs Debian's chromium)" % CHROMIUM,
                pytrace=False)
if not (ROOT / "web" / "node_modules" / "three" / "build").is_dir():
    pytest.fail("three.js is not installed: run npm ci --prefix web (make test does)",
                pytrace=False)


class PortProcess:
    """A subprocess that prints ``<NAME>_PORT=<n>`` once it listens: ``port`` and ``base``
    (http://127.0.0.1:<port>) then; its output is kept for failure reports."""

    def __init__(self, argv, marker="ARBITER_PORT", what="arbiter"):
        self.proc = subprocess.Popen(argv, cwd=str(ROOT), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = []
        found = threading.Event()
        self.port = None
        pattern = re.compile(marker + r"=(\d+)")

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line)
                m = pattern.search(line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(30) or self.port is None:
            self.stop()
            raise RuntimeError("%s did not report its port:\n%s" % (what, "".join(self.lines)))
        self.base = "http://127.0.0.1:%d" % self.port

    def url(self, room, **params):
        """The demo page for ``room`` (with more query parameters) on this port."""
        query = "&".join("%s=%s" % kv for kv in {"room": room, **params}.items())
        return "%s/?%s" % (self.base, query)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ArbiterProcess(PortProcess):
    """``python -m arbiter --port 0 [args]`` in a subprocess (``prefix``: a command to run it
    under, e.g. ``ip netns exec NS``)."""

    def __init__(self, *args, prefix=()):
        super().__init__([*prefix, sys.executable, "-m", "arbiter", "--port", "0", *args])


@pytest.fixture(scope="session")
def server():
    srv = ArbiterProcess()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def room():
    """A fresh room name, so tests sharing the server never see each other."""
    return "t-" + uuid.uuid4().hex[:10]


class Player:
    """One browser window (its own context, like a separate tab) on the demo page."""

    def __init__(self, browser, server, room, name, **params):
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append("pageerror: %s" % exc))
        self.url = server.url(room, name=name, **params)
        self.page.goto(self.url)
        self.wait_ready()

    def _console(self, msg):
        if msg.type == "error" and not IGNORED_CONSOLE.search(msg.text):
            self.errors.append("console.error: %s" % msg.text)

    def wait_ready(self):
        self.page.wait_for_function(
            "window.arbiterDemo && window.arbiterDemo.ready && window.arbiterDemo.client.avatarId !== null"
            " && window.arbiterDemo.screenPos(window.arbiterDemo.client.avatarId) !== null",
            timeout=15000,
        )

    def js(self, expr, arg=None):
        return self.page.evaluate(expr, arg)

    def wait(self, expr, arg=None, timeout=10000):
        """Wait until the JS expression (a function of arg) is truthy; returns its value."""
        return self.page.wait_for_function(expr, arg=arg, timeout=timeout).json_value()

    @property
    def you(self):
        return self.js("window.arbiterDemo.client.you")

    @property
    def avatar_id(self):
        return self.js("window.arbiterDemo.client.avatarId")

    def overlay(self):
        return self.js(
            """() => Object.fromEntries([...document.querySelectorAll('#overlay dt')]
                 .map(dt => [dt.textContent, dt.nextElementSibling.textContent]))"""
        )

    def close(self):
        self.context.close()


@pytest.fixture
def players(browser, server):
    """players(room, name, **query) opens a page; checks none logged an error."""
    opened = []

    def open_player(room, name, **params):
        p = Player(browser, server, room, name, **params)
        opened.append(p)
        return p

    yield open_player
    errors = [e for p in opened for e in p.errors]
    for p in opened:
        p.close()
    assert not errors, "the page logged errors:\n" + "\n".join(errors)
