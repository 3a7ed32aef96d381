"""``tag``'s ``view_frac`` (PROTOCOL.md 23): lag compensation at the fraction of a tick the
tagger's frame was drawn at, between the positions of ticks ``view`` and ``view + 1``."""

import pytest

from arbiter.app.testing import InMemoryServer
from arbiter.config import Config


@pytest.fixture
def two(txaio_clock):
    server = InMemoryServer(Config(port=0))
    a = server.join("A")
    b = server.join("B")
    room = server.service.rooms.get("main")
    game = room.game
    game.place_avatar(a.you, 0, 0)
    game.place_avatar(b.you, 3, 0)           # tick T: 3 away (out of reach: 2)
    server.tick()
    t = room.tick
    game.place_avatar(b.you, 1.5, 0)         # tick T + 1: 1.5 away
    server.tick()
    server.tick()
    a.received()
    yield server, room, a, game.avatars[b.you], t
    server.stop()


def verdict(server, a, msg):
    a.send(msg)
    server.tick()
    got = a.received()
    if [m for m in got if m["t"] == "reject" and m["seq"] == msg["seq"]]:
        return "miss"
    assert [m for m in got if m["t"] == "event" and m["kind"] == "tag"]
    return "hit"


@pytest.mark.parametrize("frac,expect", [(None, "miss"), (0.5, "miss"), (0.6, "miss"),
                                         (0.7, "hit"), (0.99, "hit")])
def test_the_target_is_taken_between_the_two_ticks(two, frac, expect):
    server, room, a, target, t = two
    msg = {"t": "tag", "seq": 1, "id": target, "view": t}
    if frac is not None:
        msg["view_frac"] = frac          # 3 - 1.5 * frac: within 2 from frac 2/3 on
    assert verdict(server, a, msg) == expect


@pytest.mark.parametrize("bad", [1.0, -0.1, "half", True, None])
def test_a_view_frac_out_of_range_is_a_bad_message(two, bad):
    server, room, a, target, t = two
    a.send({"t": "tag", "seq": 1, "id": target, "view": t, "view_frac": bad})
    [err] = [m for m in a.received() if m["t"] == "error"]
    assert err["code"] == "bad_message" and "view_frac" in err["msg"]
