"""The cube demo in real Chromium against a two-node cluster on a real Redis.

The page is served by one node and its room lives on the other: the page's hello is
answered with ``moved`` (the owner's WebSocket URL, then close 4005), the JS client
follows it, and the page plays on the room's node as if nothing had happened; a page
served by the room's node itself sees what the first one does. Nodes and Redis come
from the ``cluster`` and ``redis_server`` fixtures (tests/cluster_support.py).
"""

import json
import uuid
from urllib.request import Request, urlopen

from conftest import Player

DEADLINE_MS = 15000


class NodePages:
    """The demo page as one cluster node serves it (what Player needs of a server)."""

    def __init__(self, node):
        self.node = node
        self.base = node.http

    def url(self, room, **params):
        query = "&".join("%s=%s" % kv for kv in {"room": room, **params}.items())
        return "%s/?%s" % (self.base, query)


def create_room(node, room_id):
    """POST /api/rooms on ``node``: returns the answer (its ``node`` is the owner's id)."""
    request = Request(node.http + "/api/rooms", data=json.dumps({"id": room_id}).encode(),
                      headers={"Content-Type": "application/json"}, method="POST")
    with urlopen(request, timeout=10) as response:
        assert response.status == 201
        return json.loads(response.read())


def show_room(node, room_id):
    with urlopen("%s/api/rooms/%s" % (node.http, room_id), timeout=10) as response:
        return json.loads(response.read())


def place_room_away_from_the_page(cluster_nodes, room):
    """Two nodes, rooms placed on the live node with the fewest rooms (ties: either):
    a first room lands on some node P; P then has one room and the other node Q none,
    so a room created through Q goes to Q (Q always counts itself live, and P's count
    is written before the first creation answers). Returns (P, Q): serve the page from
    P, the room lives on Q."""
    a, b = cluster_nodes
    anchor = create_room(a, "anchor-" + uuid.uuid4().hex[:8])
    by_id = {n.node_id: n for n in (a, b)}
    page_node = by_id[anchor["node"]]
    [room_node] = [n for n in (a, b) if n is not page_node]
    created = create_room(room_node, room)
    assert created["node"] == room_node.node_id, (created, page_node, room_node)
    shown = show_room(page_node, room)
    assert shown["node"] == room_node.node_id and shown["ws_url"] == room_node.ws_url, shown
    return page_node, room_node


def test_page_from_one_node_plays_in_a_room_on_the_other(browser, cluster):
    """Loaded from node P for a room on node Q, the page is redirected to Q's ws URL,
    says so in its overlay, spawns a cube; a page loaded from Q sees that cube; no
    page logs an error."""
    room = "c-" + uuid.uuid4().hex[:10]
    page_node, room_node = place_room_away_from_the_page(cluster(2), room)
    assert page_node.ws_url != room_node.ws_url
    pages = []
    try:
        alice = Player(browser, NodePages(page_node), room, "Alice")
        pages.append(alice)
        conn = alice.js("""() => { const c = window.arbiterDemo.client.connection;
                                   return {url: c.url, originUrl: c.originUrl,
                                           status: c.status, room: c.room}; }""")
        assert conn == {"url": room_node.ws_url, "originUrl": page_node.ws_url,
                        "status": "open", "room": room}
        assert alice.page.url.startswith(page_node.http + "/")     # the page stayed put
        assert alice.js("window.arbiterDemo.client.url") == room_node.ws_url
        # the overlay names the node the page plays on; the log says it was moved there
        alice.wait("() => !document.querySelector('#o-node').hidden")
        assert alice.overlay()["node"] == room_node.ws_url
        assert alice.page.is_visible("#o-node") and alice.page.is_visible("#o-node-label")
        assert room_node.ws_url in alice.page.text_content("#log")
        assert "moved" not in alice.page.text_content("#log")     # no error shown

        before = alice.js("window.arbiterDemo.ownCubes()")
        alice.page.click("#spawn")
        cube = alice.wait(
            """before => { const d = window.arbiterDemo;
                 const ids = d.ownCubes().filter(id => !before.includes(id) && d.screenPos(id));
                 return ids.length ? ids[0] : null; }""",
            before, timeout=DEADLINE_MS)

        bob = Player(browser, NodePages(room_node), room, "Bob")
        pages.append(bob)
        assert bob.js("window.arbiterDemo.client.connection.url") == room_node.ws_url
        assert bob.js("window.arbiterDemo.client.connection.originUrl") == room_node.ws_url
        assert bob.page.is_hidden("#o-node")          # served by the room's node: no line
        bob.wait("id => window.arbiterDemo.screenPos(id)", cube, timeout=DEADLINE_MS)
        seen = bob.js("id => window.arbiterDemo.client.state.entities[id]", cube)
        assert seen["kind"] == "cube" and seen["owner"] == alice.you
        alice.wait("you => window.arbiterDemo.client.state.players[you]", bob.you)
        bob.wait("() => document.querySelector('#players').textContent.includes('Alice')")

        # the room really is Q's: Q's API counts both players, P holds no copy of it
        assert show_room(room_node, room)["players"] == 2
        with urlopen(page_node.http + "/api/rooms", timeout=10) as response:
            listed = {r["id"]: r for r in json.loads(response.read())["rooms"]}
        assert listed[room]["node"] == room_node.node_id
    finally:
        errors = [e for p in pages for e in p.errors]
        for p in pages:
            p.close()
    assert not errors, "the page logged errors:\n" + "\n".join(errors)
