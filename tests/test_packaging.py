"""Packaging: a built wheel, installed in a fresh venv, serves a working demo; without
the front-end packages the server log, the /vendor/ URLs and the pages say what to run.

The wheel test (marked ``packaging``: 15 s with pip's cache warm, up to a minute
without) copies the source without web/node_modules, so the build's own
``npm ci --prefix web`` (setup.py) has to bundle three.js and msgpack; it installs
the wheel and its pinned dependencies (from pip's cache or PyPI) in a new venv,
starts ``twistd -n arbiter --port 0`` from there, outside any checkout, and plays
the demo in Chromium. ``make test ARGS="-m 'not packaging'"`` leaves it out.
"""

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import pytest_twisted
import setuptools
import treq
from twisted.logger import formatEvent, globalLogPublisher

from arbiter.config import Config

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ARBITER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--enable-unsafe-swiftshader", "--no-sandbox",
                 "--disable-background-networking", "--disable-component-update"]
BUNDLED = ["web/node_modules/three/build/three.module.js",
           "web/node_modules/three/build/three.core.js",
           "web/node_modules/@msgpack/msgpack/dist.esm/index.mjs"]
# What a fresh checkout has: no venv, no npm install, no build output.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "node_modules",
                                    "*.egg-info", "__pycache__", ".hypothesis", "_trial_temp",
                                    "test-artifacts", "tests", "bench", "docs", "twistd.*")
MISSING = "The front-end packages are missing"


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("ARBITER_NODE_MODULES", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def _run(cmd, **kwargs):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, "%s failed:\n%s%s" % (cmd, done.stdout, done.stderr)
    return done


class Server:
    """A server subprocess; ``port`` is read from its output (``pattern``)."""

    def __init__(self, cmd, pattern, **kwargs):
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, **kwargs)
        self.lines = []
        self.port = None
        found = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line)
                m = re.search(pattern, line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(30) or self.port is None:
            self.stop()
            raise AssertionError("%s did not report its port:\n%s" % (cmd, self.log))
        self.base = "http://127.0.0.1:%d" % self.port

    @property
    def log(self):
        return "".join(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _status(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# Chromium runs in a child process: this test session may hold a Playwright already (the
# browser tests' session fixture), and a second sync Playwright can't start beside it.
BROWSE = r"""
import json, re, sys
from playwright.sync_api import sync_playwright
chromium, args, url, wait_for, check = sys.argv[1], json.loads(sys.argv[2]), *sys.argv[3:6]
ignored = re.compile(r"GL Driver Message|GPU stall due to ReadPixels|WebGL")
errors = []
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, headless=True, args=args)
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.on("console", lambda m: m.type == "error" and not ignored.search(m.text)
            and errors.append("console.error: " + m.text))
    page.on("pageerror", lambda exc: errors.append("pageerror: %s" % exc))
    page.goto(url)
    page.wait_for_function(wait_for, timeout=20000)
    result = page.evaluate(check)
    browser.close()
print(json.dumps({"result": result, "errors": errors}))
"""


def _browse(server, path, wait_for, check):
    """Open the server's page at path in Chromium, wait until the JS expression wait_for
    is truthy, and return (the value of the JS function check, the console errors and
    uncaught exceptions)."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail("no Chromium at %s: run `make test` (it installs Debian's chromium)"
                    % CHROMIUM, pytrace=False)
    done = subprocess.run([sys.executable, "-c", BROWSE, CHROMIUM, json.dumps(CHROMIUM_ARGS),
                           server.base + path, wait_for, check],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, "the page %s failed:\n%s\nthe server's log:\n%s" % (
        path, done.stderr[-3000:], server.log)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["result"], out["errors"]


@pytest.mark.packaging
def test_wheel_in_a_fresh_venv_serves_the_demo(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    assert not (src / "web" / "node_modules").exists()
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", src],
         env=_env(), timeout=300)
    [wheel] = (tmp_path / "dist").glob("arbiter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [f for f in BUNDLED if f not in names], "the wheel lacks the front-end packages"
    assert "web/static/index.html" in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], timeout=120)
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], env=_env(), timeout=600)

    run_dir = tmp_path / "run"                       # no web/node_modules to fall back on
    run_dir.mkdir()
    server = Server([venv / "bin" / "twistd", "-n", "--pidfile=", "arbiter", "--port", "0"],
                    r"Site starting on (\d+)", cwd=run_dir, env=_env())
    try:
        assert MISSING not in server.log
        status, body = _status(server.base + "/vendor/three/three.module.js")
        assert status == 200 and len(body) > 100000
        assert _status(server.base + "/vendor/msgpack/index.mjs")[0] == 200

        drawn, errors = _browse(
            server, "/?room=packaging&name=wheel",
            "window.arbiterDemo && window.arbiterDemo.ready && window.arbiterDemo.client.avatarId !== null"
            " && window.arbiterDemo.screenPos(window.arbiterDemo.client.avatarId) !== null",
            """() => ({canvas: document.getElementById("view").width,
                      you: window.arbiterDemo.client.you,
                      avatar: window.arbiterDemo.screenPos(window.arbiterDemo.client.avatarId),
                      missing: document.getElementById("missing-packages")?.textContent ?? null})""")
        assert drawn["canvas"] > 0 and drawn["you"] and drawn["avatar"], drawn
        assert drawn["missing"] is None, drawn["missing"]
        assert not errors, "the page logged errors:\n" + "\n".join(errors)
    finally:
        server.stop()
    assert MISSING not in server.log, server.log


# -- without the front-end packages --------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_missing_front_end_is_logged_and_explained_at_vendor(make_server, monkeypatch, tmp_path):
    monkeypatch.setenv("ARBITER_NODE_MODULES", str(tmp_path))       # holds nothing
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        server = make_server(Config(port=0))
    finally:
        globalLogPublisher.removeObserver(events.append)
    warned = [e for e in events if MISSING in formatEvent(e)]
    assert [e["log_level"].name for e in warned] == ["warn"]
    warnings = [formatEvent(e) for e in warned]
    assert "npm ci --prefix web" in warnings[0] and str(tmp_path) in warnings[0]
    for path in ("/vendor/three/three.module.js", "/vendor/msgpack/index.mjs"):
        resp = yield treq.get(server.http + path)
        body = yield resp.text()
        assert resp.code == 404
        assert resp.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
        assert body.strip() == warnings[0]
    resp = yield treq.get(server.http + "/")
    assert resp.code == 200
    yield resp.content()


def test_missing_front_end_message_names_the_command(monkeypatch, tmp_path):
    from web import site

    monkeypatch.delenv("ARBITER_NODE_MODULES", raising=False)
    monkeypatch.setattr(site, "SOURCE_WEB", str(tmp_path))           # an installed wheel
    text = site.missing_front_end_message(["three"])
    assert text.startswith(MISSING)
    assert "built without npm" in text and "pip install ." in text
    (tmp_path / "package-lock.json").write_text("{}")                # a checkout's web/
    text = site.missing_front_end_message(["three"])
    assert "run `npm ci --prefix %s`" % tmp_path in text
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setattr(site, "SOURCE_WEB", str(tmp_path.parent / "web"))
    (tmp_path.parent / "web").mkdir(exist_ok=True)
    (tmp_path.parent / "web" / "package-lock.json").write_text("{}")
    assert "run `npm ci --prefix web`" in site.missing_front_end_message(["three"])


def test_missing_front_end_is_shown_on_the_pages(tmp_path):
    server = Server([sys.executable, "-m", "arbiter", "--port", "0"], r"ARBITER_PORT=(\d+)",
                    cwd=ROOT, env=_env(ARBITER_NODE_MODULES=str(tmp_path)))
    try:
        assert MISSING in server.log
        for path in ("/?room=packaging&name=none", "/lockstep.html"):
            note, _ = _browse(server, path, "document.getElementById('missing-packages')",
                              """() => { const note = document.getElementById("missing-packages");
                                         const box = note.getBoundingClientRect();
                                         return {text: note.textContent,
                                                 shown: box.width > 0 && box.height > 0}; }""")
            assert note["text"].startswith(MISSING) and "npm ci --prefix web" in note["text"], note
            assert note["shown"], note
    finally:
        server.stop()


# -- setup.py: when the build runs npm ci ----------------------------------------------------


def test_build_runs_npm_only_when_node_modules_is_missing_or_stale(monkeypatch, tmp_path):
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: None)
    front_end_problem = runpy.run_path(str(ROOT / "setup.py"))["front_end_problem"]
    web = tmp_path / "web"
    modules = web / "node_modules"
    lock = (ROOT / "web" / "package-lock.json").read_text()
    web.mkdir()
    (web / "package-lock.json").write_text(lock)
    assert "missing" in front_end_problem(str(web))
    for f in ("three/build/three.module.js", "@msgpack/msgpack/dist.esm/index.mjs"):
        (modules / f).parent.mkdir(parents=True, exist_ok=True)
        (modules / f).write_text("//")
    assert "does not match" in front_end_problem(str(web))       # no record of npm ci
    (modules / ".package-lock.json").write_text(lock)
    assert front_end_problem(str(web)) is None
    (modules / ".package-lock.json").write_text(lock.replace('"version": "0.187.0"',
                                                             '"version": "0.186.0"'))
    assert "does not match" in front_end_problem(str(web))
