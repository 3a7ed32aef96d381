"""Integration: the HTTP API under /api (docs/HTTP.md), with treq on a real socket."""

import json

import pytest
import pytest_twisted
import treq
from twisted.internet import defer

from protocols.client import open_socket
from arbiter.config import Config
from arbiter.tokens import Signer

KEY = "sekrit-key"
AUTH = {"Authorization": ["Bearer " + KEY], "Content-Type": ["application/json"]}


@pytest.fixture
def api(make_server):
    """A server with an API key."""
    return make_server(Config(port=0, api_key=KEY))


@defer.inlineCallbacks
def call(method, url, body=None, headers=AUTH, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    resp = yield treq.request(method, url, data=data, headers=headers)
    content = yield resp.content()
    assert resp.headers.getRawHeaders("content-type")[0].startswith("application/json")
    return resp, json.loads(content)


@defer.inlineCallbacks
def hello(server, room, token=None, **extra):
    client = yield open_socket(server.url)
    client.hello(room=room, token=token, **extra)
    yield client.wait_for(lambda c: c.you is not None or c.errors)
    return client


@pytest_twisted.inlineCallbacks
def test_create_list_show_and_delete_a_room(api):
    """POST makes a room (201, Location, join URL); GET lists and shows it; DELETE ends it."""
    resp, room = yield call("POST", api.http + "/api/rooms",
                            {"mode": "lockstep", "id": "arena", "max_players": 4,
                             "min_players": 2, "seed": 42, "config": {"size": 32}})
    assert resp.code == 201
    assert resp.headers.getRawHeaders("location") == ["/api/rooms/arena"]
    assert room["id"] == "arena" and room["mode"] == "lockstep" and room["phase"] == "setup"
    assert room["join_url"] == api.http + "/api/rooms/arena/join"
    assert room["ws_url"] == api.url
    assert room["config"] == {"size": 32} and room["min_players"] == 2
    resp, lobby = yield call("GET", api.http + "/api/rooms", headers={})
    assert resp.code == 200
    assert {"id": "arena", "mode": "lockstep", "phase": "setup", "players": 0,
            "max_players": 4, "spectators": 0, "game": "demo"} in lobby["rooms"]
    resp, shown = yield call("GET", api.http + "/api/rooms/arena", headers={})
    assert resp.code == 200 and shown["members"] == {}
    resp, gone = yield call("DELETE", api.http + "/api/rooms/arena")
    assert resp.code == 200 and gone == {"id": "arena", "phase": "ended"}
    resp, err = yield call("GET", api.http + "/api/rooms/arena", headers={})
    assert resp.code == 404 and err["error"] == "unknown_room"


@pytest_twisted.inlineCallbacks
def test_api_rooms_are_kept_while_empty(api):
    """A room made through the API survives ticks with nobody in it (until DELETE)."""
    yield call("POST", api.http + "/api/rooms", {"id": "quiet"})
    client = yield hello(api, "other")
    for _ in range(3):                    # three acks: at least two whole ticks have run
        yield client.wait_ack(client.say("tick"))
    resp, shown = yield call("GET", api.http + "/api/rooms/quiet", headers={})
    assert resp.code == 200 and shown["mode"] == "realtime" and shown["phase"] == "running"
    yield client.close()


@pytest.mark.parametrize("headers, status, code", [
    ({}, 401, "api_key_required"),
    ({"X-Api-Key": ["wrong"]}, 403, "bad_api_key"),
    ({"Authorization": ["Bearer wrong"]}, 403, "bad_api_key"),
    ({"Authorization": ["Basic " + KEY]}, 401, "api_key_required"),
])
@pytest_twisted.inlineCallbacks
def test_create_without_the_right_key_is_refused(api, headers, status, code):
    """Room creation needs the API key: missing is 401, wrong is 403, as JSON."""
    resp, err = yield call("POST", api.http + "/api/rooms", {"id": "x"}, headers=headers)
    assert resp.code == status and err["error"] == code and err["message"]
    if status == 401:
        assert resp.headers.getRawHeaders("www-authenticate") == ['Bearer realm="arbiter"']


@pytest_twisted.inlineCallbacks
def test_the_x_api_key_header_works_and_delete_needs_the_key(api):
    """X-Api-Key is accepted like a bearer token; DELETE without a key is 401."""
    resp, _ = yield call("POST", api.http + "/api/rooms", {"id": "k"},
                         headers={"X-Api-Key": [KEY]})
    assert resp.code == 201
    resp, err = yield call("DELETE", api.http + "/api/rooms/k", headers={})
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
@pytest_twisted.inlineCallbacks
def test_bad_bodies_are_400_naming_field_value_and_expectation(api, body, words):
    """A bad create body is 400 bad_request and the message names what was wrong."""
    resp, err = yield call("POST", api.http + "/api/rooms", body)
    assert resp.code == 400 and err["error"] == "bad_request"
    for w in words:
        assert w in err["message"]


@pytest_twisted.inlineCallbacks
def test_bad_json_too_large_wrong_method_and_unknown_paths(api):
    """Not JSON is 400, a body over the cap is 413, a wrong method 405, a wrong path 404."""
    resp, err = yield call("POST", api.http + "/api/rooms", raw=b"{nope")
    assert resp.code == 400 and err["error"] == "bad_json"
    resp, err = yield call("POST", api.http + "/api/rooms", raw=b"[1, 2]")
    assert resp.code == 400 and "object" in err["message"]
    big = json.dumps({"id": "big", "config": {"x": "y" * 20000}}).encode()
    resp, err = yield call("POST", api.http + "/api/rooms", raw=big)
    assert resp.code == 413 and err["error"] == "body_too_large"
    resp, err = yield call("PUT", api.http + "/api/rooms", {})
    assert resp.code == 405 and err["error"] == "method_not_allowed"
    assert resp.headers.getRawHeaders("allow") == ["GET, POST"]
    resp, err = yield call("GET", api.http + "/api/nothing", headers={})
    assert resp.code == 404 and err["error"] == "not_found"
    resp, err = yield call("POST", api.http + "/api/rooms/nope/join", {})
    assert resp.code == 404 and err["error"] == "unknown_room" and "nope" in err["message"]


@pytest_twisted.inlineCallbacks
def test_an_existing_id_is_409(api):
    """Creating a room whose id is taken is 409 room_exists."""
    yield call("POST", api.http + "/api/rooms", {"id": "dup"})
    resp, err = yield call("POST", api.http + "/api/rooms", {"id": "dup"})
    assert resp.code == 409 and err["error"] == "room_exists"


@pytest_twisted.inlineCallbacks
def test_join_token_admits_its_player_once(api):
    """A join token brings its player into the room under the token's id; reusing it fails."""
    yield call("POST", api.http + "/api/rooms", {"id": "r1", "mode": "lockstep"})
    resp, join = yield call("POST", api.http + "/api/rooms/r1/join", {"name": "ada"},
                            headers={})
    assert resp.code == 200
    assert join["room"] == "r1" and join["name"] == "ada" and join["role"] == "player"
    assert join["ws_url"] == api.url and join["expires"] > 0
    client = yield hello(api, "r1", token=join["token"])
    assert client.you == join["player"]
    welcome = client.messages[0]
    assert welcome["t"] == "welcome" and welcome["name"] == "ada" and welcome["mode"] == "lockstep"
    again = yield hello(api, "r1", token=join["token"])
    assert again.errors[-1]["code"] == "bad_token"
    yield again.closed
    assert again.close_code == 4001
    yield client.close()


@pytest_twisted.inlineCallbacks
def test_join_without_a_name_is_a_guest(api):
    """No name: the token names a guest with a random suffix."""
    yield call("POST", api.http + "/api/rooms", {"id": "g"})
    resp, join = yield call("POST", api.http + "/api/rooms/g/join", headers={})
    assert resp.code == 200 and join["name"].startswith("guest-") and len(join["name"]) == 14


@pytest.mark.parametrize("forge", ["tampered", "foreign_room", "other_secret", "garbage"])
@pytest_twisted.inlineCallbacks
def test_forged_or_foreign_tokens_are_refused(api, forge):
    """A tampered, other-room, wrongly signed or malformed token: bad_token, then close 4001."""
    yield call("POST", api.http + "/api/rooms", {"id": "home"})
    yield call("POST", api.http + "/api/rooms", {"id": "away"})
    resp, join = yield call("POST", api.http + "/api/rooms/away/join", {"name": "eve"})
    token = join["token"]
    if forge == "tampered":
        body, mac = token.split(".")
        token = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    elif forge == "other_secret":
        token = Signer(b"not the server's").seal(room="home", player="p999", name="eve",
                                                 role="player", exp=2e9)
    elif forge == "garbage":
        token = "not-a-token"
    client = yield hello(api, "home", token=token)
    assert client.you is None
    assert client.errors[-1]["code"] == "bad_token"
    yield client.closed
    assert client.close_code == 4001


@pytest_twisted.inlineCallbacks
def test_expired_join_tokens_are_refused(make_server):
    """A join token past its expiry is bad_token ("expired")."""
    server = make_server(Config(port=0, join_token_ttl=-1.0))
    yield call("POST", server.http + "/api/rooms", {"id": "old"})
    resp, join = yield call("POST", server.http + "/api/rooms/old/join", {})
    client = yield hello(server, "old", token=join["token"])
    assert client.errors[-1]["code"] == "bad_token" and "expired" in client.errors[-1]["msg"]


@pytest_twisted.inlineCallbacks
def test_join_a_full_room_is_409_and_an_ended_one_410(api):
    """A full room answers 409 room_full; spectators still get tokens; a deleted room 404."""
    yield call("POST", api.http + "/api/rooms", {"id": "small", "max_players": 1})
    resp, join = yield call("POST", api.http + "/api/rooms/small/join", {"name": "a"})
    client = yield hello(api, "small", token=join["token"])
    resp, err = yield call("POST", api.http + "/api/rooms/small/join", {"name": "b"})
    assert resp.code == 409 and err["error"] == "room_full" and "1 of 1" in err["message"]
    resp, spec = yield call("POST", api.http + "/api/rooms/small/join", {"role": "spectator"})
    assert resp.code == 200 and spec["role"] == "spectator"
    resp, err = yield call("POST", api.http + "/api/rooms/small/join", {"role": "king"})
    assert resp.code == 400 and "role" in err["message"] and '"king"' in err["message"]
    yield call("DELETE", api.http + "/api/rooms/small")
    yield client.closed
    assert client.close_code == 1000


@pytest_twisted.inlineCallbacks
def test_ended_room_refuses_join_with_410(api):
    """An ended lockstep room: join is 410 room_ended, a hello gets room_ended and close 4004."""
    yield call("POST", api.http + "/api/rooms", {"id": "fin", "mode": "lockstep"})
    api.service.rooms.get("fin").end("over")
    resp, err = yield call("POST", api.http + "/api/rooms/fin/join", {})
    assert resp.code == 410 and err["error"] == "room_ended"
    client = yield hello(api, "fin")
    assert client.errors[-1]["code"] == "room_ended"
    yield client.closed
    assert client.close_code == 4004


@pytest_twisted.inlineCallbacks
def test_a_token_dies_with_its_room_even_if_the_name_comes_back(api):
    """Delete a room and make another of the same id: the old room's join token is refused."""
    yield call("POST", api.http + "/api/rooms", {"id": "phoenix"})
    resp, join = yield call("POST", api.http + "/api/rooms/phoenix/join", {"name": "old"})
    yield call("DELETE", api.http + "/api/rooms/phoenix")
    client = yield hello(api, "phoenix", token=join["token"])
    assert client.errors[-1]["code"] == "bad_token" and "gone" in client.errors[-1]["msg"]
    yield call("POST", api.http + "/api/rooms", {"id": "phoenix"})
    client = yield hello(api, "phoenix", token=join["token"])
    assert client.errors[-1]["code"] == "bad_token" and "earlier room" in client.errors[-1]["msg"]


@pytest_twisted.inlineCallbacks
def test_join_a_running_lockstep_game_gives_a_spectator_token(api):
    """Once a lockstep game runs, join answers a spectator token."""
    yield call("POST", api.http + "/api/rooms", {"id": "live", "mode": "lockstep"})
    resp, first = yield call("POST", api.http + "/api/rooms/live/join", {"name": "a"})
    player = yield hello(api, "live", token=first["token"])
    player.send({"t": "ready"})
    yield player.wait_message("start")
    resp, late = yield call("POST", api.http + "/api/rooms/live/join", {"name": "b"})
    assert resp.code == 200 and late["role"] == "spectator"
    watcher = yield hello(api, "live", token=late["token"])
    assert watcher.messages[0]["role"] == "spectator"
    api.service.rooms.get("live").end()
