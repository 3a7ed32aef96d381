"""The code in docs/LOBBY.md is real: the token minters (Python, and Node.js when ``node`` is
installed) make tokens that ``HmacTokens`` accepts, byte for byte the ones it mints itself;
the first authenticator works in a server; the treq authenticator asks a real web service and
logs a player in on a real server. Also: the page's links name headings that exist."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.web import resource, server

from arbiter.app.testing import InMemoryServer
from arbiter.auth import AuthRefused, AuthRequest, HmacTokens, Identity

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
SECRET = "the-backend-and-arbiter-share-this"
NOW = 1700000000.25


def read(name):
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return f.read()


def block(lang, marker):
    """The one ```lang block of LOBBY.md that contains ``marker``."""
    found = [code for code in re.findall(r"^```%s\n(.*?)^```$" % lang, read("LOBBY.md"),
                                         re.M | re.S) if marker in code]
    assert len(found) == 1, "LOBBY.md: %d %s blocks with %r" % (len(found), lang, marker)
    return found[0]


def run_python(marker):
    ns = {"__name__": "lobby_md"}
    exec(compile(block("python", marker), os.path.join(DOCS, "LOBBY.md"), "exec"), ns)
    return ns


# -- HmacTokens' format, from the backend's side ----------------------------------------------
def test_the_python_minter_makes_the_tokens_hmac_tokens_makes(monkeypatch):
    mint_token = run_python("def mint_token")["mint_token"]
    monkeypatch.setattr(time, "time", lambda: NOW)
    token = mint_token(SECRET, "u-1842", "Alice")
    assert token == HmacTokens(SECRET, clock=lambda: NOW).mint("u-1842", "Alice", ttl=3600)
    checker = HmacTokens(SECRET, clock=lambda: NOW + 3599)
    assert checker(token) == Identity("u-1842", "Alice")
    assert HmacTokens(SECRET, clock=lambda: NOW)(
        mint_token(SECRET, "bob@example.com", "Bøb 🎲", ttl=60)) == Identity("bob@example.com",
                                                                             "Bøb 🎲")
    with pytest.raises(AuthRefused, match="signature"):
        checker(mint_token("another-secret-of-16+", "u-1842", "Alice"))
    with pytest.raises(AuthRefused, match="expired"):
        HmacTokens(SECRET, clock=lambda: NOW + 3600 + 31)(token)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_minter_makes_tokens_hmac_tokens_accepts(tmp_path):
    script = tmp_path / "mint.cjs"
    script.write_text(block("js", "function mintToken") + """
Date.now = () => %d;
console.log(JSON.stringify([mintToken(process.argv[2], "u-1842", "Alice"),
                            mintToken(process.argv[2], "bob@example.com", "Bøb 🎲", 60)]));
""" % int(NOW * 1000), encoding="utf-8")
    done = subprocess.run(["node", str(script), SECRET], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    alice, bob = json.loads(done.stdout)
    assert alice == HmacTokens(SECRET, clock=lambda: NOW).mint("u-1842", "Alice", ttl=3600)
    checker = HmacTokens(SECRET, clock=lambda: NOW)
    assert checker(alice) == Identity("u-1842", "Alice")
    assert checker(bob) == Identity("bob@example.com", "Bøb 🎲")


# -- the first authenticator -------------------------------------------------------------------
def test_the_first_example_logs_a_player_in(txaio_clock):
    authenticate = run_python("def authenticate")["authenticate"]
    s = InMemoryServer(authenticator=authenticate)
    try:
        welcome = s.client().hello(room="hall", name="Mallory", auth="let-me-in")[0]
        assert (welcome["user"], welcome["name"]) == ("u-1842", "Alice")
        c = s.client()
        err = c.hello(room="hall", auth="guess")[0]
        assert err["code"] == "unauthorized" and err["msg"] == "not logged in: unknown session"
        c.received()
        assert c.close_code == 4006
    finally:
        s.service.stopService()


# -- the treq authenticator, against a web service -----------------------------------------------
class Accounts(resource.Resource):
    """The accounts service of the example: POST {"session", "room"}."""

    isLeaf = True

    def render_POST(self, request):
        request.setHeader(b"connection", b"close")     # leave no connection behind
        body = json.loads(request.content.read())
        self.asked = body
        session = body["session"]
        if session == "good":
            return json.dumps({"user_id": "u-9", "display_name": "Ivy"}).encode()
        request.setResponseCode(500 if session == "boom" else 401)
        return b"no"


@pytest.fixture
def accounts():
    from twisted.internet import reactor
    service = Accounts()
    port = reactor.listenTCP(0, server.Site(service), interface="127.0.0.1")
    service.url = "http://127.0.0.1:%d/sessions/check" % port.getHost().port
    yield service
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest_twisted.inlineCallbacks
def test_the_treq_example_asks_the_service(accounts, make_server):
    from protocols.client import JoinRefused, connect
    ns = run_python("treq.post")
    ns["ACCOUNTS_URL"] = accounts.url
    check_session = ns["check_session"]
    request = AuthRequest(room="hall", name="x", via="ws", peer="tcp4:127.0.0.1:1")
    d = check_session("good", request)
    assert isinstance(d, defer.Deferred)
    assert (yield d) == Identity("u-9", "Ivy")
    assert accounts.asked == {"session": "good", "room": "hall"}
    with pytest.raises(AuthRefused):
        yield check_session("stale", request)
    with pytest.raises(RuntimeError):
        yield check_session("boom", request)
    with pytest.raises(AuthRefused):
        check_session(None, request)
    # plugged into a real server: a login, a refusal, a failure
    arbiter = make_server(authenticator=check_session)
    ivy = yield connect(arbiter.url, room="hall", auth="good")
    assert (ivy.user, ivy.name) == ("u-9", "Ivy")
    for session, code in (("stale", "unauthorized"), ("boom", "unavailable")):
        with pytest.raises(JoinRefused) as refused:
            yield connect(arbiter.url, room="hall", auth=session)
        assert refused.value.code == code
    ivy.close()


# -- links -----------------------------------------------------------------------------------------
def slug(heading):
    """GitHub's anchor for a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


@pytest.mark.parametrize("name", ["LOBBY.md", "HTTP.md"])
def test_links_name_headings_that_exist(name):
    text = read(name)
    links = re.findall(r"\]\(([A-Z]+\.md)?#([^)]+)\)", text)
    assert links
    for target, anchor in links:
        anchors = {slug(h) for h in re.findall(r"^#{1,4} (.+)$", read(target or name), re.M)}
        assert anchor in anchors, "%s links to %s#%s, which has no such heading" % (
            name, target or name, anchor)
