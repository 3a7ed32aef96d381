"""Lobby and trust (docs/LOBBY.md), in memory: the authentication hook, private rooms, the
API key's rules for join tokens, seats held by join tokens, and quick match. WebSocket
hellos through FakeClient (real frames), the HTTP API through treq's StubTreq; the
real-socket checks are in tests/test_lobby_integration.py."""

import json

import pytest
from treq.testing import StubTreq
from twisted.internet import defer

from arbiter.app.testing import InMemoryServer
from arbiter.auth import AuthRefused, HmacTokens, Identity
from arbiter.config import Config
from protocols import wire
from protocols.testing import FakeClient

SECRET = "a-shared-secret-of-the-backend"
KEY = "the-api-key"
HTTP = "http://arbiter.test:8080"
JSON_HEADERS = {"Content-Type": ["application/json"]}
WITH_KEY = dict(JSON_HEADERS, Authorization=["Bearer " + KEY])


class Server(InMemoryServer):
    def __init__(self, config=None, authenticator=None):
        super().__init__(config or Config(port=0), authenticator=authenticator)
        self.treq = StubTreq(self.site.resource)

    def call(self, method, path, body=None, headers=JSON_HEADERS):
        d = self.treq.request(method, HTTP + path, headers=headers,
                              data=json.dumps(body).encode() if body is not None else None)
        d.addCallback(lambda resp: resp.content().addCallback(lambda c: (resp.code, c)))
        done = []
        d.addBoth(done.append)
        self.treq.flush()
        assert done, "the API did not answer"
        if not isinstance(done[0], tuple):
            done[0].raiseException()
        code, content = done[0]
        return code, json.loads(content)

    def hello(self, room="main", **fields):
        client = FakeClient(self.factory, (wire.JSON,))
        client.msgs = client.hello(room=room, **fields)
        return client


def said(client):
    client.msgs += client.received()
    return client.msgs


def welcome(client):
    msgs = [m for m in said(client) if m["t"] == "welcome"]
    assert msgs, said(client)
    return msgs[0]


def error(client):
    return [m for m in said(client) if m["t"] == "error"]


@pytest.fixture
def servers(txaio_clock):
    made = []

    def make(*args, **kwargs):
        s = Server(*args, **kwargs)
        made.append(s)
        return s
    yield make
    for s in made:
        s.service.stopService()


@pytest.fixture
def tokens():
    return HmacTokens(SECRET)


# -- the authentication hook -----------------------------------------------------------------
def test_without_an_authenticator_players_are_guests(servers):
    s = servers()
    a = s.hello(name="Alice", auth="whatever")          # credentials are ignored
    w = welcome(a)
    assert w["name"] == "Alice" and "user" not in w
    room = s.service.rooms.get("main")
    assert "user" not in room.state["players"][w["you"]]


def test_a_valid_token_names_the_player(servers, tokens):
    s = servers(authenticator=tokens)
    a = s.hello(name="Mallory", auth=tokens.mint("u-1842", "Alice"))
    w = welcome(a)
    assert w["user"] == "u-1842" and w["name"] == "Alice"     # the token's name, not hello's
    s.tick()
    state = s.service.rooms.get("main").state
    assert state["players"][w["you"]]["user"] == "u-1842"
    assert state["players"][w["you"]]["name"] == "Alice"


@pytest.mark.parametrize("credentials,why", [
    (None, "needs a login"),
    ("not-a-token", "malformed"),
    ("forged", "signature"),
    ("expired", "expired"),
])
def test_refused_credentials_get_unauthorized_and_nothing_else(servers, tokens, credentials, why):
    s = servers(authenticator=tokens)
    if credentials == "forged":
        credentials = HmacTokens("another-secret-entirely").mint("u-1", "Eve")
    elif credentials == "expired":
        credentials = tokens.mint("u-1", "Old", ttl=-60)
    fields = {"auth": credentials} if credentials is not None else {}
    c = s.hello(name="Eve", **fields)
    [err] = error(c)
    assert err["code"] == "unauthorized" and why in err["msg"]
    said(c)
    assert c.close_code == 4006
    assert not [m for m in said(c) if m["t"] == "welcome"]
    assert s.service.rooms.get("main") is None           # no room was made for it


def test_the_same_user_on_a_second_connection_takes_over(servers, tokens):
    s = servers(authenticator=tokens)
    first = s.hello(auth=tokens.mint("u-7", "Bo"))
    other = s.hello(auth=tokens.mint("u-8", "Cy"))
    pid = welcome(first)["you"]
    said(other)
    second = s.hello(auth=tokens.mint("u-7", "Bo"))
    assert welcome(second)["you"] == pid                 # the same player, taken over
    said(first)
    assert first.close_code == 4000
    room = s.service.rooms.get("main")
    assert room.player_count == 2
    assert not [m for m in said(other) if m["t"] == "event" and m["kind"] == "leave"]


def test_the_user_id_is_the_same_in_every_room(servers, tokens):
    s = servers(authenticator=tokens)
    token = tokens.mint("u-55", "Di")
    a = welcome(s.hello(room="one", auth=token))
    b = welcome(s.hello(room="two", auth=token))
    assert a["user"] == b["user"] == "u-55"


def test_an_authenticator_may_answer_later(servers):
    """An authenticator that asks a web service (a Deferred): the hello waits; messages
    sent meanwhile are handled after the welcome, in order."""
    pending = []

    def slow(credentials, request):
        d = defer.Deferred()
        pending.append((credentials, request, d))
        return d
    s = servers(authenticator=slow)
    c = s.hello(auth="session-1", name="Ed")
    c.send({"t": "say", "seq": 1, "text": "hi"})
    assert not said(c)
    [(credentials, request, d)] = pending
    assert credentials == "session-1" and request.room == "main" and request.via == "ws"
    d.callback({"user": "u-9", "name": "Ed"})
    w = welcome(c)
    assert w["user"] == "u-9"
    s.tick()
    assert [m for m in said(c) if m["t"] == "event" and m["kind"] == "say"]


def test_an_authenticator_that_fails_or_hangs_is_unavailable(servers):
    def broken(credentials, request):
        raise RuntimeError("database down")
    s = servers(authenticator=broken)
    c = s.hello(auth="x")
    assert error(c)[0]["code"] == "unavailable" and c.close_code == 1013

    s2 = servers(authenticator=lambda credentials, request: defer.Deferred())
    c2 = s2.hello(auth="x")
    assert not said(c2)
    s2.clock.advance(5.1)
    assert error(c2)[0]["code"] == "unavailable" and c2.close_code == 1013


def test_a_reconnect_token_needs_no_new_login(servers, tokens):
    s = servers(authenticator=tokens)
    c = s.hello(auth=tokens.mint("u-3", "Flo"))
    w = welcome(c)
    c.lose()
    back = s.hello(token=w["token"])
    assert welcome(back)["you"] == w["you"]


def test_http_join_with_credentials_mints_a_token_for_the_user(servers, tokens):
    s = servers(authenticator=tokens)
    code, room = s.call("POST", "/api/rooms", {"id": "arena"})
    assert code == 201
    code, out = s.call("POST", "/api/rooms/arena/join", {"auth": tokens.mint("u-4", "Gus")})
    assert code == 200 and out["user"] == "u-4" and out["name"] == "Gus"
    w = welcome(s.hello(room="arena", token=out["token"]))
    assert w["user"] == "u-4" and w["name"] == "Gus"
    code, out = s.call("POST", "/api/rooms/arena/join", {"auth": "nonsense"})
    assert code == 401 and out["error"] == "unauthorized"
    code, out = s.call("POST", "/api/rooms/arena/join", {})
    assert code == 401 and out["error"] == "unauthorized"


def test_the_hmac_example(tokens):
    ident = tokens(tokens.mint("u-1", "Alice", ttl=60))
    assert ident == Identity("u-1", "Alice")
    late = HmacTokens(SECRET, clock=lambda: 10 ** 10)
    with pytest.raises(AuthRefused):
        late(tokens.mint("u-1", "Alice", ttl=60))
    payload, sig = tokens.mint("u-1", "Alice").split(".")
    with pytest.raises(AuthRefused):
        tokens(payload[:-2] + "xx." + sig)                 # tampered


# -- private rooms and the API key ------------------------------------------------------------
def test_a_private_room_is_not_listed_and_takes_join_tokens_only(servers):
    s = servers()
    assert s.call("POST", "/api/rooms", {"id": "hidden", "private": True})[0] == 201
    assert s.call("POST", "/api/rooms", {"id": "open"})[0] == 201
    code, listed = s.call("GET", "/api/rooms")
    assert [r["id"] for r in listed["rooms"]] == ["open"]
    c = s.hello(room="hidden", name="Nosy")
    [err] = error(c)
    assert err["code"] == "private_room" and c.close_code == 4007
    code, out = s.call("POST", "/api/rooms/hidden/join", {"name": "Invited"})
    assert code == 200
    assert welcome(s.hello(room="hidden", token=out["token"]))["name"] == "Invited"
    code, shown = s.call("GET", "/api/rooms/hidden")
    assert code == 200 and shown["private"] is True and shown["players"] == 1


@pytest.mark.parametrize("private", [False, True])
@pytest.mark.parametrize("self_service", [False, True])
@pytest.mark.parametrize("given", ["none", "right", "wrong"])
def test_who_may_mint_join_tokens_with_an_api_key(servers, private, self_service, given):
    """With --api-key: the key is needed to mint join tokens unless the room is
    self-service; a wrong key is always refused (403)."""
    s = servers(Config(port=0, api_key=KEY))
    body = {"id": "r", "private": private, "self_service": self_service}
    assert s.call("POST", "/api/rooms", body, WITH_KEY)[0] == 201
    headers = {"none": JSON_HEADERS, "right": WITH_KEY,
               "wrong": dict(JSON_HEADERS, Authorization=["Bearer nope"])}[given]
    code, out = s.call("POST", "/api/rooms/r/join", {"name": "P"}, headers)
    if given == "wrong":
        assert (code, out["error"]) == (403, "bad_api_key")
    elif given == "right" or self_service:
        assert code == 200 and out["token"]
    else:
        assert (code, out["error"]) == (401, "api_key_required")


@pytest.mark.parametrize("private", [False, True])
def test_without_an_api_key_anyone_may_mint_join_tokens(servers, private):
    s = servers()
    assert s.call("POST", "/api/rooms", {"id": "r", "private": private})[0] == 201
    assert s.call("POST", "/api/rooms/r/join", {"name": "P"})[0] == 200


def test_join_tokens_hold_seats_until_used_or_expired(servers):
    s = servers(Config(port=0, join_token_ttl=10))
    s.call("POST", "/api/rooms", {"id": "duo", "max_players": 2})
    first = s.call("POST", "/api/rooms/duo/join", {"name": "A"})[1]
    s.call("POST", "/api/rooms/duo/join", {"name": "B"})
    code, out = s.call("POST", "/api/rooms/duo/join", {"name": "C"})
    assert (code, out["error"]) == (409, "room_full")
    # a spectator still gets in
    assert s.call("POST", "/api/rooms/duo/join", {"role": "spectator"})[0] == 200
    welcome(s.hello(room="duo", token=first["token"]))     # A's seat is used, B's held
    assert s.call("POST", "/api/rooms/duo/join", {"name": "C"})[0] == 409
    s.clock.advance(11)                                       # B's token expired
    assert s.call("POST", "/api/rooms/duo/join", {"name": "C"})[0] == 200


# -- quick match -----------------------------------------------------------------------------
def test_quick_match_fills_rooms_of_four_exactly(servers):
    s = servers()
    answers = [s.call("POST", "/api/match", {"max_players": 4, "name": "p%d" % i})
               for i in range(100)]
    assert all(code == 200 for code, _ in answers)
    rooms = {}
    for _, out in answers:
        assert out["ws_url"] == "ws://arbiter.test:8080/ws" and out["token"]
        rooms.setdefault(out["room"], []).append(out)
    assert len(rooms) == 25 and all(len(v) == 4 for v in rooms.values())
    assert sum(out["created"] for _, out in answers) == 25
    # every token gets in, and no room has more than 4
    for _, out in answers:
        welcome(s.hello(room=out["room"], token=out["token"]))
    assert sorted(s.service.rooms.get(r).player_count for r in rooms) == [4] * 25


def test_quick_match_keeps_tags_and_sizes_apart_and_skips_other_rooms(servers):
    s = servers()
    s.call("POST", "/api/rooms", {"id": "plain", "max_players": 4})       # not a match room
    a = s.call("POST", "/api/match", {"max_players": 4, "tag": "ranked"})[1]
    b = s.call("POST", "/api/match", {"max_players": 4, "tag": "casual"})[1]
    c = s.call("POST", "/api/match", {"max_players": 2, "tag": "ranked"})[1]
    d = s.call("POST", "/api/match", {"max_players": 4, "tag": "ranked"})[1]
    assert len({a["room"], b["room"], c["room"]}) == 3 and "plain" not in (a["room"],)
    assert d["room"] == a["room"] and not d["created"]
    listed = {r["id"]: r for r in s.call("GET", "/api/rooms")[1]["rooms"]}
    assert listed[a["room"]]["tag"] == "ranked" and listed[a["room"]]["match"] is True


def test_quick_match_for_lockstep_puts_players_in_a_setup_room(servers):
    s = servers()
    one = s.call("POST", "/api/match", {"mode": "lockstep", "max_players": 2})[1]
    two = s.call("POST", "/api/match", {"mode": "lockstep", "max_players": 2})[1]
    three = s.call("POST", "/api/match", {"mode": "lockstep", "max_players": 2})[1]
    assert one["room"] == two["room"] != three["room"]
    room = s.service.rooms.get(one["room"])
    assert room.mode == "lockstep" and room.phase == "setup"


def test_quick_match_rooms_go_when_nobody_comes(servers):
    s = servers(Config(port=0, join_token_ttl=5))
    out = s.call("POST", "/api/match", {"max_players": 4})[1]
    s.tick()
    assert s.service.rooms.get(out["room"]) is not None        # seats held: kept
    s.clock.advance(6)
    s.tick()
    assert s.service.rooms.get(out["room"]) is None


def test_quick_match_checks_its_fields(servers):
    s = servers()
    for body, field in [({"mode": "chess"}, "mode"), ({"max_players": 0}, "max_players"),
                        ({"tag": "a b"}, "tag"), ({"game": "x"}, "game"),
                        ({"colour": 1}, "colour")]:
        code, out = s.call("POST", "/api/match", body)
        assert code == 400 and out["error"] == "bad_request" and field in out["message"]


def test_quick_match_with_an_authenticator(servers, tokens):
    s = servers(authenticator=tokens)
    code, out = s.call("POST", "/api/match", {"auth": tokens.mint("u-6", "Hal")})
    assert code == 200 and out["user"] == "u-6"
    assert s.call("POST", "/api/match", {})[0] == 401


def test_a_hello_by_name_cannot_take_a_seat_a_token_holds(servers):
    s = servers()
    s.call("POST", "/api/rooms", {"id": "duo", "max_players": 2})
    held = s.call("POST", "/api/rooms/duo/join", {"name": "A"})[1]
    welcome(s.hello(room="duo", name="B"))               # the free seat
    stranger = s.hello(room="duo", name="C")
    assert error(stranger)[0]["code"] == "room_full"
    welcome(s.hello(room="duo", token=held["token"]))      # the holder still gets in
    listed = s.call("GET", "/api/rooms")[1]["rooms"]
    assert [r["players"] for r in listed] == [2] and "reserved" not in listed[0]


def test_a_user_back_in_a_private_room_takes_over_without_a_token(servers, tokens):
    s = servers(authenticator=tokens)
    s.call("POST", "/api/rooms", {"id": "den", "private": True})
    ticket = s.call("POST", "/api/rooms/den/join", {"auth": tokens.mint("u-2", "Ivy")})[1]
    first = s.hello(room="den", token=ticket["token"])
    pid = welcome(first)["you"]
    again = s.hello(room="den", auth=tokens.mint("u-2", "Ivy"))
    assert welcome(again)["you"] == pid
    assert error(s.hello(room="den", auth=tokens.mint("u-3", "Jo")))[0]["code"] == "private_room"
