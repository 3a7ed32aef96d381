"""The lobby page (/lobby.html) in real Chromium against real servers: the live room list,
join and watch with join tokens, private rooms and their invite links, quick match, the API
key's refusals, and the servers heard on the LAN (two announcing servers and Chromium inside
a network namespace the test creates: nothing reaches a real network).

The game pages are read through their test hooks (window.arbiterDemo: room, role();
window.arbiterLockstep); the lobby through window.arbiterLobby and what it shows.
"""

import json
import re
import urllib.error
import urllib.request
import uuid

import pytest
from playwright.sync_api import expect

from conftest import CHROMIUM, CHROMIUM_ARGS, IGNORED_CONSOLE, VIEWPORT, ArbiterProcess
from netns_support import loopback_namespace

KEY = "lobby-test-key"
# A refusal the page shows (and the test asks for) is an HTTP error in Chromium's console too.
EXPECTED_REFUSALS = re.compile(r"Failed to load resource: the server responded with a status "
                               r"of (401|403|404|409|410)")
GAME_READY = "() => window.arbiterDemo && window.arbiterDemo.ready"


def fresh(prefix):
    return prefix + uuid.uuid4().hex[:10]


def call(base, method, path, body=None, key=None):
    """(status, JSON answer) of an API request."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    req = urllib.request.Request(base + path, method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Tab:
    """One browser window (its own context) on a page; console errors are recorded."""

    def __init__(self, browser, url):
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append("pageerror: %s" % exc))
        self.page.goto(url)

    def _console(self, msg):
        if (msg.type == "error" and not IGNORED_CONSOLE.search(msg.text)
                and not EXPECTED_REFUSALS.search(msg.text)):
            self.errors.append("console.error: %s" % msg.text)

    def js(self, expr, arg=None):
        return self.page.evaluate(expr, arg)

    def wait(self, expr, arg=None, timeout=15000):
        return self.page.wait_for_function(expr, arg=arg, timeout=timeout).json_value()

    def row(self, room):
        return self.page.locator('#rooms tr[data-room="%s"]' % room)

    def polls_pass(self, n=2):
        """Wait until the lobby has listed the rooms ``n`` more times."""
        seen = self.js("window.arbiterLobby.polls")
        self.wait("n => window.arbiterLobby.polls >= n", seen + n, timeout=10000)

    def game_room(self):
        """The room the game page it went to was welcomed into (once it is ready)."""
        self.wait(GAME_READY)
        return self.js("window.arbiterDemo.room")

    def close(self):
        self.context.close()


@pytest.fixture
def tabs(browser):
    """tabs(url) opens a page in a new window; checks none logged an error."""
    opened = []

    def open_tab(url):
        t = Tab(browser, url)
        opened.append(t)
        return t

    yield open_tab
    errors = [e for t in opened for e in t.errors]
    for t in opened:
        t.close()
    assert not errors, "the page logged errors:\n" + "\n".join(errors)


@pytest.fixture(scope="module")
def keyed():
    """A server with an API key."""
    srv = ArbiterProcess("--api-key", KEY)
    yield srv
    srv.stop()


def lobby(tabs, server, query=""):
    tab = tabs("%s/lobby.html%s" % (server.base, query))
    tab.wait("() => window.arbiterLobby && window.arbiterLobby.polls > 0")
    return tab


# -- the list -------------------------------------------------------------------------------

def test_the_list_shows_a_room_made_through_the_api_and_its_players(tabs, players, server):
    room = fresh("lb-")
    tab = lobby(tabs, server)
    assert call(server.base, "POST", "/api/rooms", {"id": room, "max_players": 4})[0] == 201
    row = tab.row(room)
    expect(row).to_be_visible(timeout=3000)
    expect(row.locator("td.mode")).to_have_text("realtime")
    expect(row.locator("td.phase")).to_have_text(re.compile("^running"))
    expect(row.locator("td.players")).to_have_text("0/4")
    expect(row.locator("td.spectators")).to_have_text("0")

    players(room, "Ada")                      # a plain ?room= page: a hello by name
    expect(row.locator("td.players")).to_have_text("1/4", timeout=3000)

    # "join" from the list: a join token, then the cube page in that room with it
    other = lobby(tabs, server)
    other.page.fill("#name", "Bea")
    other.row(room).locator("button[data-action=join]").click()
    other.page.wait_for_url(re.compile(r"/\?room=%s&token=" % room))
    assert other.game_room() == room
    assert other.js("window.arbiterDemo.role()") == "player"
    assert other.js("window.arbiterDemo.joinedWithToken") is True
    assert other.js("window.arbiterDemo.client.connection.name") == "Bea"
    expect(row.locator("td.players")).to_have_text("2/4", timeout=3000)

    # the game page reloaded: the join token is spent, the player resumes with its own
    you = other.js("window.arbiterDemo.client.you")
    other.page.reload()
    other.wait(GAME_READY)
    assert other.js("window.arbiterDemo.client.you") == you
    assert other.js("window.arbiterDemo.errors") == []

    # the lobby links from the game pages
    assert other.page.get_attribute("#lobby-link", "href") == "/lobby.html"
    lockstep = tabs(server.base + "/lockstep.html")
    assert lockstep.page.get_attribute("#lobby-link", "href") == "/lobby.html"


def test_watch_joins_as_a_spectator(tabs, players, server):
    room = fresh("lw-")
    call(server.base, "POST", "/api/rooms", {"id": room, "max_players": 2})
    players(room, "Ada")
    tab = lobby(tabs, server)
    watch = tab.row(room).locator("button[data-action=watch]")
    expect(watch).to_be_visible(timeout=3000)
    watch.click()
    tab.wait("() => window.arbiterDemo && window.arbiterDemo.ready"
             " && window.arbiterDemo.client.tick !== null")
    assert tab.js("window.arbiterDemo.room") == room
    assert tab.js("window.arbiterDemo.role()") == "spectator"
    assert "spectator" in tab.page.text_content("#o-you")
    assert tab.page.is_disabled("#spawn")
    # a spectator has no avatar and no player entry; it sees the player's avatar
    assert tab.js("window.arbiterDemo.client.avatarId") is None
    assert tab.js("Object.keys(window.arbiterDemo.client.state.players).length") == 1
    tab.wait("() => window.arbiterDemo.drawnIds('avatar').length === 1")
    # the list counts the spectator apart from the players
    other = lobby(tabs, server)
    expect(other.row(room).locator("td.spectators")).to_have_text("1", timeout=3000)
    expect(other.row(room).locator("td.players")).to_have_text("1/2")
    # ?role=spectator watches without a token (and without asking a name)
    plain = tabs("%s/?room=%s&role=spectator" % (server.base, room))
    plain.wait("() => window.arbiterDemo.ready && window.arbiterDemo.client.tick !== null")
    assert plain.js("window.arbiterDemo.role()") == "spectator"
    assert plain.js("window.arbiterDemo.joinedWithToken") is False
    expect(other.row(room).locator("td.spectators")).to_have_text("2", timeout=3000)

    # a lockstep room: the lockstep page, with the spectator's token
    ls = fresh("lws-")
    call(server.base, "POST", "/api/rooms", {"id": ls, "mode": "lockstep", "min_players": 2})
    other.row(ls).locator("button[data-action=watch]").click()
    other.page.wait_for_url(re.compile(r"/lockstep\.html\?room=%s&token=" % ls))
    other.wait("() => window.arbiterLockstep && window.arbiterLockstep.conn.welcome")
    assert other.js("window.arbiterLockstep.conn.welcome.room") == ls
    assert other.js("window.arbiterLockstep.conn.welcome.role") == "spectator"
    expect(other.page.locator("#s-you")).to_contain_text("spectator")


# -- private rooms and invites ---------------------------------------------------------------

def test_a_private_room_is_unlisted_and_its_invite_link_joins_it(tabs, server):
    room = fresh("lp-")
    tab = lobby(tabs, server)
    tab.page.fill("#c-id", room)
    tab.page.check("#c-private")
    tab.page.click("#create")
    link = tab.page.locator("#invite-link")
    expect(link).to_be_visible()
    invite = link.get_attribute("href")
    assert invite == "%s/lobby.html?invite=%s" % (server.base, room)
    expect(tab.page.locator("#created-text")).to_contain_text("private")

    # never in the list: not in the page's, nor in the API's
    tab.polls_pass(2)
    assert room not in [r["id"] for r in tab.js("window.arbiterLobby.rooms")]
    expect(tab.row(room)).to_have_count(0)
    assert room not in [r["id"] for r in call(server.base, "GET", "/api/rooms")[1]["rooms"]]

    # the invite link: a join token, then the game page welcomed into that room
    guest = tabs(invite)
    guest.page.wait_for_url(re.compile(r"/\?room=%s&token=" % room))
    assert guest.game_room() == room
    assert guest.js("window.arbiterDemo.role()") == "player"

    # a plain ?room= page is refused, and says why
    plain = tabs("%s/?room=%s&name=Eve" % (server.base, room))
    plain.wait("() => window.arbiterDemo.refused")
    assert [e["code"] for e in plain.js("window.arbiterDemo.errors")] == ["private_room"]
    assert plain.page.text_content("[data-testid=status]") == "refused"
    banner = plain.page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("private")
    assert plain.js("window.arbiterDemo.room") is None

    # an invite to a room that is not there: the error, on the lobby page
    gone = lobby(tabs, server, "?invite=" + fresh("nope-"))
    expect(gone.page.locator("#error")).to_be_visible()
    assert gone.page.get_attribute("#error", "data-code") == "unknown_room"
    expect(gone.page.locator("#error")).to_contain_text("no such room")


# -- quick match -----------------------------------------------------------------------------

def test_quick_match_fills_a_room_of_two_then_opens_another(tabs, server):
    tag = fresh("q")

    def match():
        tab = lobby(tabs, server)
        tab.page.select_option("#m-mode", "realtime")
        tab.page.fill("#m-max", "2")
        tab.page.fill("#m-tag", tag)
        tab.page.click("#match")
        tab.page.wait_for_url(re.compile(r"/\?room=m-[0-9a-f]+&token="))
        return tab.game_room()

    first, second, third = match(), match(), match()
    assert first == second
    assert third != first
    # the match rooms are listed as such, with their tag and counts
    tab = lobby(tabs, server)
    row = tab.row(first)
    expect(row.locator("td.players")).to_have_text("2/2", timeout=3000)
    expect(row.locator("td.tag")).to_have_text("quick match: " + tag)
    expect(tab.row(third).locator("td.players")).to_have_text("1/2", timeout=3000)

    # a full room's "join" is refused, and the page says so
    row.locator("button[data-action=join]").click()
    error = tab.page.locator("#error")
    expect(error).to_be_visible()
    assert tab.page.get_attribute("#error", "data-code") == "room_full"
    expect(error).to_contain_text("full")
    assert tab.js("window.arbiterLobby.navigating") is None


def test_quick_match_for_lockstep_opens_the_lockstep_page(tabs, server):
    tag = fresh("ql")
    tab = lobby(tabs, server)
    tab.page.select_option("#m-mode", "lockstep")
    tab.page.fill("#m-max", "2")
    tab.page.fill("#m-tag", tag)
    tab.page.fill("#name", "Lin")
    tab.page.click("#match")
    tab.page.wait_for_url(re.compile(r"/lockstep\.html\?room=m-[0-9a-f]+&token="))
    tab.wait("() => window.arbiterLockstep && window.arbiterLockstep.conn.welcome")
    welcome = tab.js("window.arbiterLockstep.conn.welcome")
    assert welcome["role"] == "player" and welcome["name"] == "Lin"
    assert welcome["room"] == tab.page.url.split("room=")[1].split("&")[0]
    expect(tab.page.locator("[data-testid=phase]")).to_have_text("setup")


# -- the API key -------------------------------------------------------------------------------

def test_with_an_api_key_creating_needs_it_and_self_service_rooms_do_not(tabs, keyed):
    tab = lobby(tabs, keyed)
    open_room, closed_room = fresh("ls-"), fresh("lk-")
    tab.page.fill("#c-id", closed_room)
    tab.page.click("#create")
    error = tab.page.locator("#error")
    expect(error).to_be_visible()
    assert tab.page.get_attribute("#error", "data-code") == "api_key_required"
    expect(error).to_contain_text("API key")
    assert call(keyed.base, "GET", "/api/rooms/" + closed_room)[0] == 404

    tab.page.fill("#api-key", "not-the-key")
    tab.page.click("#create")
    expect(error).to_have_attribute("data-code", "bad_api_key")

    tab.page.fill("#api-key", KEY)
    tab.page.click("#create")
    expect(tab.page.locator("#created")).to_be_visible()
    expect(error).to_be_hidden()
    expect(tab.row(closed_room)).to_be_visible(timeout=3000)
    tab.page.fill("#c-id", open_room)
    tab.page.check("#c-self")
    tab.page.click("#create")
    expect(tab.row(open_room)).to_be_visible(timeout=3000)

    # without the key: a room that is not self-service gives no join token...
    guest = lobby(tabs, keyed)
    guest.row(closed_room).locator("button[data-action=join]").click()
    expect(guest.page.locator("#error")).to_have_attribute("data-code", "api_key_required")
    # ...a self-service one does
    guest.row(open_room).locator("button[data-action=join]").click()
    assert guest.game_room() == open_room


# -- servers on the LAN --------------------------------------------------------------------------

def test_lan_discovery_off_is_said(tabs, server):
    tab = lobby(tabs, server)
    tab.wait("() => window.arbiterLobby.lanPolls > 0")
    expect(tab.page.locator("#lan-status")).to_have_text(re.compile("LAN discovery is off on this server"))
    expect(tab.page.locator("#lan li")).to_have_count(0)


@pytest.fixture
def netns():
    """A fresh network namespace with only loopback, multicast on it: the servers announce
    there and Chromium runs there, so no datagram reaches a real network. Deleted after."""
    with loopback_namespace('arbiter-lobby', 'the LAN lobby test') as name:
        yield name


def NsServer(ns, *args):
    """``python -m arbiter`` inside the namespace ``ns``."""
    return ArbiterProcess(*args, prefix=("ip", "netns", "exec", ns))


def test_the_lobby_lists_the_servers_heard_on_the_lan(browser, netns, tmp_path):
    servers = []
    ns_browser = None
    try:
        alpha = NsServer(netns, "--lan-announce", "--lan-name", "alpha", "--lan-interval", "0.5")
        servers.append(alpha)
        beta = NsServer(netns, "--lan-announce", "--lan-name", "beta", "--lan-interval", "0.5")
        servers.append(beta)
        # Chromium in the namespace too (Playwright drives it over a pipe, not the network)
        wrapper = tmp_path / "chromium-in-netns"
        wrapper.write_text('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (netns, CHROMIUM))
        wrapper.chmod(0o755)
        ns_browser = browser.browser_type.launch(executable_path=str(wrapper), headless=True,
                                                 args=CHROMIUM_ARGS)
        tab = Tab(ns_browser, alpha.base + "/lobby.html")
        lan = tab.page.locator("#lan li")
        expect(lan).to_have_count(2, timeout=15000)
        expect(tab.page.locator("#lan li .name")).to_have_text(["alpha", "beta"])
        assert tab.js("window.arbiterLobby.lan.listening") is True
        expect(tab.page.locator("#lan-status")).to_contain_text("2 servers heard")
        entry = tab.page.locator('#lan li[data-name="alpha"]')
        expect(entry).to_contain_text("(this server)")
        beta_link = tab.page.locator('#lan li[data-name="beta"] a.url')
        expect(beta_link).to_have_text("%s/lobby.html" % beta.base)
        expect(tab.page.locator('#lan li[data-name="beta"]')).not_to_contain_text("this server")

        # beta's lobby, through the link: it hears both as well, and is "this server" there
        beta_link.click()
        tab.page.wait_for_url(beta.base + "/lobby.html")
        expect(tab.page.locator("#lan li .name")).to_have_text(["alpha", "beta"], timeout=15000)
        expect(tab.page.locator('#lan li[data-name="beta"]')).to_contain_text("(this server)")
        assert not tab.errors, tab.errors
        tab.close()
    finally:
        if ns_browser is not None:
            ns_browser.close()
        for s in servers:
            s.stop()
