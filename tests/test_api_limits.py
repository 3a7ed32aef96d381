"""The HTTP API's integer limits follow the wire contract: ±(2^53 − 1) (docs/PROTOCOL.md 1, 13.4)."""

import json

import pytest
from treq.testing import StubTreq
from twisted.internet import task

from arbiter.app.server import build
from arbiter.codes import MAX_INT
from arbiter.config import Config

HEADERS = {"Content-Type": ["application/json"]}


@pytest.fixture
def post_room():
    clock = task.Clock()
    service, _, site = build(Config(port=0), clock=clock, monotonic=clock.seconds)
    service.startService()
    treq = StubTreq(site.resource)

    def post(body):
        d = treq.request("POST", "http://arbiter.test/api/rooms",
                         data=json.dumps(body).encode(), headers=HEADERS)
        d.addCallback(lambda resp: resp.content().addCallback(lambda c: (resp.code, c)))
        done = []
        d.addBoth(done.append)
        treq.flush()
        assert done and isinstance(done[0], tuple), done
        code, content = done[0]
        return code, json.loads(content), service

    yield post
    service.stopService()


@pytest.mark.parametrize("mode", ["lockstep", "realtime"])
def test_a_seed_of_2_to_the_53_minus_1_is_taken(post_room, mode):
    code, room, service = post_room({"id": "big", "mode": mode, "seed": MAX_INT})
    assert code == 201, room
    assert MAX_INT == 2 ** 53 - 1
    if mode == "lockstep":
        assert service.rooms.get("big").seed == MAX_INT


@pytest.mark.parametrize("seed", [2 ** 53, 2 ** 53 + 1, -1])
def test_a_seed_outside_0_to_2_to_the_53_minus_1_is_bad_request(post_room, seed):
    code, err, service = post_room({"id": "big", "mode": "lockstep", "seed": seed})
    assert code == 400 and err["error"] == "bad_request"
    assert "seed" in err["message"] and str(MAX_INT) in err["message"]
    assert service.rooms.get("big") is None
