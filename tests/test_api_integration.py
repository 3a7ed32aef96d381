"""Integration: the HTTP API (docs/HTTP.md) on a real socket, with treq and a real
WebSocket. The API's unit tests run in memory (tests/test_api.py)."""

import json

import pytest
import pytest_twisted
import treq
from twisted.internet import defer

from arbiter.config import Config
from protocols.client import open_socket

KEY = "sekrit-key"
AUTH = {"Authorization": ["Bearer " + KEY], "Content-Type": ["application/json"]}


@pytest.fixture
def api(make_server):
    """A server with an API key."""
    return make_server(Config(port=0, api_key=KEY))


@defer.inlineCallbacks
def call(method, url, body=None, headers=AUTH):
    data = json.dumps(body).encode() if body is not None else None
    resp = yield treq.request(method, url, data=data, headers=headers)
    content = yield resp.content()
    assert resp.headers.getRawHeaders("content-type")[0].startswith("application/json")
    return resp, json.loads(content)


@defer.inlineCallbacks
def hello(url, room, token=None):
    client = yield open_socket(url)
    client.hello(room=room, token=token)
    yield client.wait_for(lambda c: c.you is not None or c.errors)
    return client


@pytest_twisted.inlineCallbacks
def test_create_join_and_hello_with_the_token(api):
    """POST a room, ask its join URL for a token, say hello with it on the ws_url given."""
    resp, room = yield call("POST", api.http + "/api/rooms", {"id": "arena", "mode": "lockstep",
                                                              "self_service": True})
    assert resp.code == 201
    assert room["join_url"] == api.http + "/api/rooms/arena/join" and room["ws_url"] == api.url
    resp, join = yield call("POST", room["join_url"], {"name": "ada"}, headers={})
    assert resp.code == 200 and join["ws_url"] == api.url and join["role"] == "player"
    client = yield hello(join["ws_url"], "arena", token=join["token"])
    assert client.you == join["player"]
    welcome = client.messages[0]
    assert welcome["t"] == "welcome" and welcome["name"] == "ada" and welcome["mode"] == "lockstep"
    resp, shown = yield call("GET", api.http + "/api/rooms/arena", headers={})
    assert resp.code == 200 and shown["players"] == 1
    again = yield hello(api.url, "arena", token=join["token"])
    assert again.errors[-1]["code"] == "bad_token"
    yield again.closed
    assert again.close_code == 4001
    yield client.close()


@pytest_twisted.inlineCallbacks
def test_api_rooms_are_kept_while_empty(api):
    """A room made through the API survives real ticks with nobody in it."""
    yield call("POST", api.http + "/api/rooms", {"id": "quiet"})
    client = yield hello(api.url, "other")
    for _ in range(3):                    # three acks: at least two whole ticks have run
        yield client.wait_ack(client.say("tick"))
    resp, shown = yield call("GET", api.http + "/api/rooms/quiet", headers={})
    assert resp.code == 200 and shown["mode"] == "realtime" and shown["phase"] == "running"
    yield client.close()


@pytest_twisted.inlineCallbacks
def test_delete_closes_the_players_websocket(api):
    """DELETE ends the room: its player's real WebSocket is closed with 1000."""
    yield call("POST", api.http + "/api/rooms", {"id": "small", "max_players": 1})
    resp, join = yield call("POST", api.http + "/api/rooms/small/join", {"name": "a"})
    client = yield hello(api.url, "small", token=join["token"])
    assert client.you == join["player"]
    resp, gone = yield call("DELETE", api.http + "/api/rooms/small")
    assert resp.code == 200 and gone == {"id": "small", "phase": "ended"}
    yield client.closed
    assert client.close_code == 1000
