"""The HTTP API under /api (docs/HTTP.md), in memory: treq's StubTreq on the site's root
resource of a server built on a task.Clock; WebSocket hellos through FakeClient. The
real-socket checks are in tests/test_api_integration.py."""

import json

import pytest
from treq.testing import StubTreq

from arbiter.config import Config
from arbiter.tokens import Signer
from protocols import wire
from arbiter.app.testing import InMemoryServer
from protocols.testing import FakeClient

KEY = "sekrit-key"
AUTH = {"Authorization": ["Bearer " + KEY], "Content-Type": ["application/json"]}
HTTP = "http://arbiter.test:8080"           # StubTreq's requests carry this Host
WS_URL = "ws://arbiter.test:8080/ws"


class Hello:
    """A FakeClient's hello, seen as the tests of the real client saw it."""

    def __init__(self, client, msgs):
        self.client = client
        self.messages = msgs
        self.you = msgs[0]["you"] if msgs and msgs[0]["t"] == "welcome" else None
        self.errors = [m for m in msgs if m["t"] == "error"]

    def received(self):
        msgs = self.client.received()
        self.messages += msgs
        self.errors += [m for m in msgs if m["t"] == "error"]
        return msgs

    @property
    def close_code(self):
        self.received()
        return self.client.close_code


class ApiServer(InMemoryServer):
    """A server on a task.Clock, its site's root resource behind StubTreq."""

    def __init__(self, config):
        super().__init__(config)
        self.treq = StubTreq(self.site.resource)

    def call(self, method, path, body=None, headers=AUTH, raw=None):
        """(response, decoded JSON body); the resource answers at once, so no waiting."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        d = self.treq.request(method, HTTP + path, data=data, headers=headers)
        d.addCallback(lambda resp: resp.content().addCallback(lambda c: (resp, c)))
        done = []
        d.addBoth(done.append)
        self.treq.flush()
        assert done, "the API did not answer"
        if not isinstance(done[0], tuple):
            done[0].raiseException()
        resp, content = done[0]
        assert resp.headers.getRawHeaders("content-type")[0].startswith("application/json")
        return resp, json.loads(content)

    def hello(self, room, token=None, **extra):
        client = FakeClient(self.factory, (wire.JSON,))
        fields = dict(extra, room=room)
        if token is not None:
            fields["token"] = token
        return Hello(client, client.hello(**fields))

    def tick(self, n=1):
        """Run the service's loop ``n`` times (one slot of the tick period each)."""
        for _ in range(n):
            due = self.service._loop.call.getTime()
            self.clock.advance(max(0.0, due - self.clock.seconds()) + 1e-9)


@pytest.fixture
def make_api(txaio_clock):
    made = []

    def make(config):
        s = ApiServer(config)
        made.append(s)
        return s

    yield make
    for s in made:
        s.service.stopService()


@pytest.fixture
def api(make_api):
    """A server with an API key."""
    return make_api(Config(port=0, api_key=KEY))


def test_create_list_show_and_delete_a_room(api):
    """POST makes a room (201, Location, join URL); GET lists and shows it; DELETE ends it."""
    resp, room = api.call("POST", "/api/rooms",
                          {"mode": "lockstep", "id": "arena", "max_players": 4,
                           "min_players": 2, "seed": 42, "config": {"size": 32}})
    assert resp.code == 201
    assert resp.headers.getRawHeaders("location") == ["/api/rooms/arena"]
    assert room["id"] == "arena" and room["mode"] == "lockstep" and room["phase"] == "setup"
    assert room["join_url"] == HTTP + "/api/rooms/arena/join"
    assert room["ws_url"] == WS_URL
    assert room["config"] == {"size": 32} and room["min_players"] == 2
    resp, lobby = api.call("GET", "/api/rooms", headers={})
    assert resp.code == 200
    assert {"id": "arena", "mode": "lockstep", "phase": "setup", "players": 0,
            "max_players": 4, "spectators": 0, "game": "demo"} in lobby["rooms"]
    resp, shown = api.call("GET", "/api/rooms/arena", headers={})
    assert resp.code == 200 and shown["members"] == {}
    resp, gone = api.call("DELETE", "/api/rooms/arena")
    assert resp.code == 200 and gone == {"id": "arena", "phase": "ended"}
    resp, err = api.call("GET", "/api/rooms/arena", headers={})
    assert resp.code == 404 and err["error"] == "unknown_room"


def test_api_rooms_are_kept_while_empty(api):
    """A room made through the API survives ticks with nobody in it (until DELETE)."""
    api.call("POST", "/api/rooms", {"id": "quiet"})
    client = api.hello("other")
    assert client.you is not None
    other = api.service.rooms.get("other")
    start = other.tick
    for _ in range(100):                           # loop calls: --tick-spread per tick period
        if other.tick >= start + 3:
            break
        api.tick()
    assert other.tick >= start + 3                 # three state ticks: two whole periods ran
    resp, shown = api.call("GET", "/api/rooms/quiet", headers={})
    assert resp.code == 200 and shown["mode"] == "realtime" and shown["phase"] == "running"


@pytest.mark.parametrize("headers, status, code", [
    ({}, 401, "api_key_required"),
    ({"X-Api-Key": ["wrong"]}, 403, "bad_api_key"),
    ({"Authorization": ["Bearer wrong"]}, 403, "bad_api_key"),
    ({"Authorization": ["Basic " + KEY]}, 401, "api_key_required"),
])
def test_create_without_the_right_key_is_refused(api, headers, status, code):
    """Room creation needs the API key: missing is 401, wrong is 403, as JSON."""
    resp, err = api.call("POST", "/api/rooms", {"id": "x"}, headers=headers)
    assert resp.code == status and err["error"] == code and err["message"]
    if status == 401:
        assert resp.headers.getRawHeaders("www-authenticate") == ['Bearer realm="arbiter"']


def test_the_x_api_key_header_works_and_delete_needs_the_key(api):
    """X-Api-Key is accepted like a bearer token; DELETE without a key is 401."""
    resp, _ = api.call("POST", "/api/rooms", {"id": "k"}, headers={"X-Api-Key": [KEY]})
    assert resp.code == 201
    resp, err = api.call("DELETE", "/api/rooms/k", headers={})
    assert resp.code == 401 and err["error"] == "api_key_required"


@pytest.mark.parametrize("body, words", [
    ({"mode": "chess"}, ["mode", '"chess"', "'realtime' or 'lockstep'"]),
    ({"max_players": 0}, ["max_players", "0", "[1, 64]"]),
    ({"max_players": "4"}, ["max_players", '"4"', "integer"]),
    ({"id": "no spaces"}, ["id", '"no spaces"', "[A-Za-z0-9_-]"]),
    ({"mode": "lockstep", "turn_ms": 5000}, ["turn_ms", "5000", "[0, 1000]"]),
    ({"colour": "red"}, ["colour", "no such field"]),
    ({"config": [1]}, ["config", "map"]),
    ({"turn_ms": 10}, ["turn_ms", "lockstep option"]),
    ({"game": "chess"}, ["game", '"chess"', "--game"]),
    ({"min_players": 17}, ["min_players", "17", "[1, 16]"]),
    ({"max_players": 4, "min_players": 5}, ["min_players", "5", "[1, 4]"]),
])
def test_bad_bodies_are_400_naming_field_value_and_expectation(api, body, words):
    """A bad create body is 400 bad_request and the message names what was wrong."""
    resp, err = api.call("POST", "/api/rooms", body)
    assert resp.code == 400 and err["error"] == "bad_request"
    for w in words:
        assert w in err["message"]


def test_bad_json_too_large_wrong_method_and_unknown_paths(api):
    """Not JSON is 400, a body over the cap is 413, a wrong method 405, a wrong path 404."""
    resp, err = api.call("POST", "/api/rooms", raw=b"{nope")
    assert resp.code == 400 and err["error"] == "bad_json"
    resp, err = api.call("POST", "/api/rooms", raw=b"[1, 2]")
    assert resp.code == 400 and "object" in err["message"]
    big = json.dumps({"id": "big", "config": {"x": "y" * 20000}}).encode()
    resp, err = api.call("POST", "/api/rooms", raw=big)
    assert resp.code == 413 and err["error"] == "body_too_large"
    resp, err = api.call("PUT", "/api/rooms", {})
    assert resp.code == 405 and err["error"] == "method_not_allowed"
    assert resp.headers.getRawHeaders("allow") == ["GET, POST"]
    resp, err = api.call("GET", "/api/nothing", headers={})
    assert resp.code == 404 and err["error"] == "not_found"
    resp, err = api.call("POST", "/api/rooms/nope/join", {})
    assert resp.code == 404 and err["error"] == "unknown_room" and "nope" in err["message"]


def test_an_existing_id_is_409(api):
    """Creating a room whose id is taken is 409 room_exists."""
    api.call("POST", "/api/rooms", {"id": "dup"})
    resp, err = api.call("POST", "/api/rooms", {"id": "dup"})
    assert resp.code == 409 and err["error"] == "room_exists"


def test_join_token_admits_its_player_once(api):
    """A join token brings its player into the room under the token's id; reusing it fails.
    (A self-service room: its tokens need no API key; tests/test_lobby.py has the rules.)"""
    api.call("POST", "/api/rooms", {"id": "r1", "mode": "lockstep", "self_service": True})
    resp, join = api.call("POST", "/api/rooms/r1/join", {"name": "ada"}, headers={})
    assert resp.code == 200
    assert join["room"] == "r1" and join["name"] == "ada" and join["role"] == "player"
    assert join["ws_url"] == WS_URL and join["expires"] > 0
    client = api.hello("r1", token=join["token"])
    assert client.you == join["player"]
    welcome = client.messages[0]
    assert welcome["t"] == "welcome" and welcome["name"] == "ada" and welcome["mode"] == "lockstep"
    again = api.hello("r1", token=join["token"])
    assert again.errors[-1]["code"] == "bad_token"
    assert again.close_code == 4001


def test_join_without_a_name_is_a_guest(api):
    """No name: the token names a guest with a random suffix."""
    api.call("POST", "/api/rooms", {"id": "g", "self_service": True})
    resp, join = api.call("POST", "/api/rooms/g/join", headers={})
    assert resp.code == 200 and join["name"].startswith("guest-") and len(join["name"]) == 14


@pytest.mark.parametrize("forge", ["tampered", "foreign_room", "other_secret", "garbage"])
def test_forged_or_foreign_tokens_are_refused(api, forge):
    """A tampered, other-room, wrongly signed or malformed token: bad_token, then close 4001."""
    api.call("POST", "/api/rooms", {"id": "home"})
    api.call("POST", "/api/rooms", {"id": "away"})
    resp, join = api.call("POST", "/api/rooms/away/join", {"name": "eve"})
    token = join["token"]
    if forge == "tampered":
        body, mac = token.split(".")
        token = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    elif forge == "other_secret":
        token = Signer(b"not the server's").seal(room="home", player="p999", name="eve",
                                                 role="player", exp=2e9)
    elif forge == "garbage":
        token = "not-a-token"
    client = api.hello("home", token=token)
    assert client.you is None
    assert client.errors[-1]["code"] == "bad_token"
    assert client.close_code == 4001


def test_expired_join_tokens_are_refused(make_api):
    """A join token past its expiry is bad_token ("expired")."""
    server = make_api(Config(port=0, join_token_ttl=-1.0))
    server.call("POST", "/api/rooms", {"id": "old"})
    resp, join = server.call("POST", "/api/rooms/old/join", {})
    client = server.hello("old", token=join["token"])
    assert client.errors[-1]["code"] == "bad_token" and "expired" in client.errors[-1]["msg"]


def test_join_a_full_room_is_409_and_an_ended_one_410(api):
    """A full room answers 409 room_full; spectators still get tokens; a deleted room 404."""
    api.call("POST", "/api/rooms", {"id": "small", "max_players": 1})
    resp, join = api.call("POST", "/api/rooms/small/join", {"name": "a"})
    client = api.hello("small", token=join["token"])
    assert client.you == join["player"]
    resp, err = api.call("POST", "/api/rooms/small/join", {"name": "b"})
    assert resp.code == 409 and err["error"] == "room_full" and "1 of 1" in err["message"]
    resp, spec = api.call("POST", "/api/rooms/small/join", {"role": "spectator"})
    assert resp.code == 200 and spec["role"] == "spectator"
    resp, err = api.call("POST", "/api/rooms/small/join", {"role": "king"})
    assert resp.code == 400 and "role" in err["message"] and '"king"' in err["message"]
    api.call("DELETE", "/api/rooms/small")
    assert client.close_code == 1000


def test_ended_room_refuses_join_with_410(api):
    """An ended lockstep room: join is 410 room_ended, a hello gets room_ended and close 4004."""
    api.call("POST", "/api/rooms", {"id": "fin", "mode": "lockstep"})
    api.service.rooms.get("fin").end("over")
    resp, err = api.call("POST", "/api/rooms/fin/join", {})
    assert resp.code == 410 and err["error"] == "room_ended"
    client = api.hello("fin")
    assert client.errors[-1]["code"] == "room_ended"
    assert client.close_code == 4004


def test_a_token_dies_with_its_room_even_if_the_name_comes_back(api):
    """Delete a room and make another of the same id: the old room's join token is refused."""
    api.call("POST", "/api/rooms", {"id": "phoenix"})
    resp, join = api.call("POST", "/api/rooms/phoenix/join", {"name": "old"})
    api.call("DELETE", "/api/rooms/phoenix")
    client = api.hello("phoenix", token=join["token"])
    assert client.errors[-1]["code"] == "bad_token" and "gone" in client.errors[-1]["msg"]
    api.call("POST", "/api/rooms", {"id": "phoenix"})
    client = api.hello("phoenix", token=join["token"])
    assert client.errors[-1]["code"] == "bad_token" and "earlier room" in client.errors[-1]["msg"]


def test_join_a_running_lockstep_game_gives_a_spectator_token(api):
    """Once a lockstep game runs, join answers a spectator token."""
    api.call("POST", "/api/rooms", {"id": "live", "mode": "lockstep"})
    resp, first = api.call("POST", "/api/rooms/live/join", {"name": "a"})
    player = api.hello("live", token=first["token"])
    player.client.send({"t": "ready"})
    for _ in range(200):                   # the start, within 10 s of server time
        if any(m["t"] == "start" for m in player.messages):
            break
        api.tick()
        player.received()
    assert any(m["t"] == "start" for m in player.messages)
    resp, late = api.call("POST", "/api/rooms/live/join", {"name": "b"})
    assert resp.code == 200 and late["role"] == "spectator"
    watcher = api.hello("live", token=late["token"])
    assert watcher.messages[0]["role"] == "spectator"
    api.service.rooms.get("live").end()
