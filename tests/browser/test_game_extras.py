"""The cube game's extras in real Chromium against a real server: the server's drones and
pickups drawn in shapes of their own and never picked, the scoreboard, the result of a
round in a banner until the next one starts, and the view radius (a ring around your
avatar; what leaves it leaves the scene, what comes near appears).

Pages are driven with real keyboard and mouse input; window.arbiterDemo is read to learn
what is drawn (drawnEntities, scoreboard, roundBanner, viewRing, toasts, rounds, phases).
"""

import math
import os
import re
import uuid
from pathlib import Path

import pytest

from conftest import ArbiterProcess, Player

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

DRONE = "#ff2d55"
PICKUP = "#ffd60a"


def make_args():
    """``make run``'s demo options: DEMO_ARGS of the Makefile."""
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^DEMO_ARGS \?=(.*)$", text, re.M)
    assert m, "the Makefile has no DEMO_ARGS"
    return m.group(1).split()


@pytest.fixture(scope="module")
def extras():
    """Drones, pickups, rounds to 1 point with a 4 s pause, everyone sees everything."""
    srv = ArbiterProcess("--drones", "2", "--pickups", "2", "--round-points", "1",
                         "--round-pause", "4")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def views():
    """A view radius of 8, one round to 1 point and no more, tags that reach anywhere."""
    srv = ArbiterProcess("--view-radius", "8", "--round-points", "1", "--round-once",
                         "--tag-radius", "100")
    yield srv
    srv.stop()


@pytest.fixture
def pages(browser):
    """pages(server, room, name) opens a demo page; checks none logged an error."""
    opened = []

    def open_page(server, room, name, **params):
        p = Player(browser, server, room, name, **params)
        opened.append(p)
        return p

    yield open_page
    errors = [e for p in opened for e in p.errors]
    for p in opened:
        p.close()
    assert not errors, "the page logged errors:\n" + "\n".join(errors)


def fresh_room():
    return "x-" + uuid.uuid4().hex[:10]


def own_pos(player):
    """[x, z] where this page draws its own avatar."""
    return player.js("""() => { const d = window.arbiterDemo;
        const p = d.screenPos(d.client.avatarId).pos; return [p[0], p[2]]; }""")


def walk_axis(player, axis, target, stop="false", margin=0.15, timeout=15000):
    """Hold the arrow key toward ``target`` on axis 0 (x) or 2 (z) until the avatar is
    drawn past it (within ``margin``) or the JS expression ``stop`` is true; then let go
    and wait until the server has every move. Returns where it is drawn."""
    here = own_pos(player)[0 if axis == 0 else 1]
    if abs(here - target) <= margin:
        return own_pos(player)
    sign = 1 if target > here else -1
    keys = ("ArrowLeft", "ArrowRight") if axis == 0 else ("ArrowUp", "ArrowDown")
    key = keys[1] if sign > 0 else keys[0]
    player.page.keyboard.down(key)
    try:
        player.wait(
            """([axis, target, sign, margin]) => { const d = window.arbiterDemo;
                 const p = d.screenPos(d.client.avatarId).pos;
                 return (p[axis] - target) * sign >= -margin || (%s); }""" % stop,
            [axis, target, sign, margin], timeout=timeout)
    finally:
        player.page.keyboard.up(key)
    player.wait("() => window.arbiterDemo.client.backlog === 0")
    return own_pos(player)


def drawn_ids(player, kind):
    return player.js("k => window.arbiterDemo.drawnEntities(k).map(e => e.id)", kind)


def in_scene(player, entity_id):
    """True when some object of the page's three.js scene draws this entity."""
    return player.js("""id => { let found = false;
        window.arbiterDemo.view.scene.traverse(o => { if (o.userData.entityId === id) found = true; });
        return found; }""", entity_id)


def test_drones_and_pickups_are_drawn_in_their_own_shapes_and_never_picked(extras, pages):
    """Both drones and both pickups are drawn (their meshes in the scene) as a red
    octahedron hovering over the ground and a small yellow torus; the mirror holds them as
    the server's; hovering a pickup does not light it up and clicking it selects nothing;
    the scoreboard lists the player with the round and its goal."""
    a = pages(extras, fresh_room(), "Alice")
    a.wait("""() => { const d = window.arbiterDemo;
        return d.drawnEntities('drone').length === 2 && d.drawnEntities('pickup').length === 2; }""")
    drones = a.js("window.arbiterDemo.drawnEntities('drone')")
    pickups = a.js("window.arbiterDemo.drawnEntities('pickup')")
    mirror = a.js("""() => Object.entries(window.arbiterDemo.client.state.entities)
        .filter(([, e]) => e.owner === 'server').map(([id, e]) => [id, e.kind]).sort()""")
    assert sorted([[e["id"], e["kind"]] for e in drones + pickups]) == mirror
    for e in drones:
        assert (e["shape"], e["color"], e["inScene"], e["pickable"]) == (
            "OctahedronGeometry", DRONE, True, False)
        assert e["pos"][1] > 1.0, "a drone hovers: %s" % e
        assert in_scene(a, e["id"])
    for e in pickups:
        assert (e["shape"], e["color"], e["inScene"], e["pickable"]) == (
            "TorusGeometry", PICKUP, True, False)
        assert in_scene(a, e["id"])
    [avatar] = a.js("window.arbiterDemo.drawnEntities('avatar')")
    assert avatar["shape"] == "BoxGeometry" and avatar["pickable"]

    # the whole plane in view; hover and click a pickup where nothing else is drawn
    a.page.mouse.move(640, 400)
    a.page.mouse.wheel(0, 3000)
    a.wait("() => window.arbiterDemo.cameraSettled()")
    pickup = pickups[0]["id"]
    spot = a.js("id => window.arbiterDemo.screenPos(id)", pickup)
    a.page.mouse.move(spot["x"], spot["y"])
    a.wait("""([id, x, y]) => { const d = window.arbiterDemo, r = d.view.entities.get(id);
        return d.view.pick(x, y) !== id && r.material.color.equals(r.color); }""",
           [pickup, spot["x"], spot["y"]])
    assert a.js("() => getComputedStyle(window.arbiterDemo.view.canvas).cursor") == "crosshair"
    a.page.mouse.click(spot["x"], spot["y"])
    assert a.js("window.arbiterDemo.selected()") == []
    assert "tag" not in a.page.text_content("#log")

    board = a.js("window.arbiterDemo.scoreboard()")
    assert board["visible"] and board["round"] == 1 and board["goal"] == "first to 1"
    assert [r["name"] for r in board["rows"]] == ["Alice"] and board["rows"][0]["you"]
    assert a.page.is_visible("#scoreboard")
    text = a.page.text_content("#scoreboard")
    assert "Round 1" in text and "first to 1" in text and "Alice (you)" in text
    assert a.js("window.arbiterDemo.viewRing().visible") is False    # no --view-radius
    assert a.page.is_hidden("#round-banner")


def test_a_pickup_ends_the_round_and_the_banner_shows_the_result_until_the_next(extras, pages):
    """Walk onto pickups with the arrow keys until one wins the round (a drone's touch may
    cost a point on the way): a toast says +1, the banner names the winner, the final
    scores and the seconds to the next round, and goes once round 2 starts at 0."""
    room = fresh_room()
    a = pages(extras, room, "Alice")
    b = pages(extras, room, "Bob")
    banner = "window.arbiterDemo.roundBanner().visible"
    a.page.mouse.move(640, 400)
    a.page.mouse.wheel(0, 3000)
    for _ in range(10):
        if a.js(banner):
            break
        me = own_pos(a)
        targets = a.js("window.arbiterDemo.drawnEntities('pickup')")
        target = min(targets, key=lambda e: math.hypot(e["pos"][0] - me[0], e["pos"][2] - me[1]))
        gone = "!window.arbiterDemo.drawnEntities('pickup').some(e => e.id === %r)" % target["id"]
        stop = "%s || %s" % (banner, gone)
        x = walk_axis(a, 0, target["pos"][0], stop=stop)[0]
        if abs(x - target["pos"][0]) > 0.6:
            walk_axis(a, 0, target["pos"][0], stop=stop)
        # through it along z: on the way the server finds the avatar within reach
        z = target["pos"][2]
        beyond = z + (1.2 if z > own_pos(a)[1] else -1.2)
        walk_axis(a, 2, max(-19.9, min(19.9, beyond)), stop=stop)
    a.wait(banner)
    you = a.you
    assert any(t["text"] == "pickup: +1" and t["kind"] == "good" for t in a.js("window.arbiterDemo.toasts"))

    for p, mine in ((a, True), (b, False)):
        p.wait(banner)
        # everything at once, within the pause
        seen = p.js("""() => { const d = window.arbiterDemo, box = document.getElementById('round-banner');
            return {rb: d.roundBanner(), goal: d.scoreboard().goal, rounds: d.rounds,
                    shown: box.innerText, visible: !box.hidden && box.offsetHeight > 0}; }""")
        rb = seen["rb"]
        assert rb["visible"] and seen["visible"], seen
        assert rb["round"] == 1 and rb["winner"] == you and rb["winnerName"] == "Alice"
        assert rb["head"] == ("Alice (you) wins round 1!" if mine else "Alice wins round 1!")
        assert rb["reason"] == "first to 1"
        assert re.fullmatch(r"next round in [0-4] s", rb["next"]), rb
        assert [s["name"] for s in rb["scores"]][0] == "Alice" and rb["scores"][0]["score"] == 1
        shown = seen["shown"]
        assert "Alice" in shown and "wins round 1" in shown and "next round in" in shown
        [end] = seen["rounds"]
        assert end["winner"] == you and end["reason"] == "points"
        assert seen["goal"] == "over"

    # the next round: the banner goes, round 2 on the scoreboard, scores back to 0
    for p in (a, b):
        p.wait("() => !window.arbiterDemo.roundBanner().visible"
               " && window.arbiterDemo.scoreboard().round === 2", timeout=10000)
        assert p.page.is_hidden("#round-banner")
        phases = p.js("window.arbiterDemo.phases.map(m => [m.phase, m.round])")
        assert phases == [["ended", 1], ["running", 2]]
        assert "round 2 starts" in p.page.text_content("#log")
    a.wait("() => window.arbiterDemo.client.state.players[window.arbiterDemo.client.you].score <= 0")


def test_the_view_radius_ring_and_what_comes_and_goes(views, pages):
    """--view-radius 8: a faint ring of radius 8 around your avatar; Bob far away is not
    drawn, walks near and is drawn, walks away and leaves the scene, comes back; Alice tags
    him: the single round (--round-once) is over, with no next one, on both pages."""
    room = fresh_room()
    a = pages(views, room, "Alice")
    b = pages(views, room, "Bob")
    ring = a.js("window.arbiterDemo.viewRing()")
    me = own_pos(a)
    assert ring["visible"] and ring["radius"] == 8
    assert math.hypot(ring["center"][0] - me[0], ring["center"][1] - me[1]) < 0.01
    assert a.js("window.arbiterDemo.client.viewRadius") == 8
    bob = b.avatar_id
    ax, az = me
    # on Alice's page, every frame: how far from her Bob's avatar is drawn (when it is)
    a.js("""id => { const d = window.arbiterDemo; window.__bob = [];
        (function watch() { const me = d.screenPos(d.client.avatarId), p = d.screenPos(id);
          if (me && p) window.__bob.push(Math.hypot(p.pos[0] - me.pos[0], p.pos[2] - me.pos[2]));
          requestAnimationFrame(watch); })(); }""", bob)

    def bob_drawn():
        return bob in drawn_ids(a, "avatar")

    away = ax - 12 if ax >= 0 else ax + 12          # |dx| = 12 > 8: out of her view

    def walk_near():
        walk_axis(b, 0, ax)
        walk_axis(b, 2, az + 2 if az < 0 else az - 2)
        a.wait("id => window.arbiterDemo.drawnEntities('avatar').some(e => e.id === id && e.inScene)", bob)

    walk_near()
    assert in_scene(a, bob) and bob in a.js("Object.keys(window.arbiterDemo.client.state.entities)")
    walk_axis(b, 0, away)
    a.wait("id => !window.arbiterDemo.drawnIds('avatar').includes(id)", bob)
    assert not in_scene(a, bob), "Bob's mesh left Alice's scene"
    assert bob not in a.js("Object.keys(window.arbiterDemo.client.state.entities)")
    b.wait("id => !window.arbiterDemo.drawnIds('avatar').includes(id)", a.avatar_id)
    walk_near()
    drawn_at = a.js("window.__bob")
    assert drawn_at and max(drawn_at) <= 8.6, "drawn only within the view radius: %s" % max(drawn_at)

    # Alice tags Bob: 1 point, the only round is over for good
    a.wait("() => window.arbiterDemo.cameraSettled()")
    p = a.js("id => window.arbiterDemo.screenPos(id)", bob)
    a.page.mouse.click(p["x"], p["y"])
    for page, mine in ((a, True), (b, False)):
        page.wait("() => window.arbiterDemo.roundBanner().visible")
        rb = page.js("window.arbiterDemo.roundBanner()")
        assert rb["head"] == ("Alice (you) wins round 1!" if mine else "Alice wins round 1!")
        assert rb["next"] == "round over"
        assert [(s["name"], s["score"]) for s in rb["scores"]] == [("Alice", 1), ("Bob", 0)]
        shown = page.page.inner_text("#round-banner")
        assert "round over" in shown and "next round" not in shown
        assert page.js("window.arbiterDemo.scoreboard().goal") == "over"


def test_without_the_options_the_page_is_as_before(players, room):
    """The default server (protocol v1 state: avatars and cubes): no scoreboard, no round
    banner, no view ring, nothing but boxes drawn, no round or phase seen."""
    a = players(room, "Alice")
    a.page.click("#spawn")
    a.wait("() => window.arbiterDemo.drawnIds('cube').length === 1")
    seen = a.js("""() => { const d = window.arbiterDemo;
        return {shapes: [...new Set(d.drawnEntities().map(e => e.kind + ':' + e.shape))].sort(),
                board: d.scoreboard().visible, banner: d.roundBanner().visible,
                ring: d.viewRing().visible, radius: d.client.viewRadius, round: d.client.round,
                phases: d.phases.length, rounds: d.rounds.length}; }""")
    assert seen == {"shapes": ["avatar:BoxGeometry", "cube:BoxGeometry"], "board": False,
                    "banner": False, "ring": False, "radius": 0, "round": None, "phases": 0,
                    "rounds": 0}
    assert a.page.is_hidden("#scoreboard") and a.page.is_hidden("#round-banner")


def test_make_run_demo_screenshot(browser, pages):
    """The page with `make run`'s demo options (DEMO_ARGS) draws drones, pickups, the
    scoreboard and the view ring; the screenshot goes to test-artifacts/demo-game.png
    (docs/img/demo-game.png when ARBITER_UPDATE_SCREENSHOT is set)."""
    args = make_args()
    radius = float(args[args.index("--view-radius") + 1])
    srv = ArbiterProcess(*args)
    try:
        # drones, pickups and avatars are placed at random: a room where Alice sees both kinds
        for _ in range(8):
            room = fresh_room()
            a = pages(srv, room, "Alice")
            seen = a.wait("""() => { const d = window.arbiterDemo; return d.client.tick > 5
                && [d.drawnEntities('drone').length, d.drawnEntities('pickup').length]; }""")
            if seen[0] and seen[1]:
                break
        else:
            raise AssertionError("no room where Alice sees a drone and a pickup")
        b = pages(srv, room, "Bob")
        ax, az = own_pos(a)
        walk_axis(b, 0, ax + 3 if ax < 0 else ax - 3)        # Bob comes into Alice's view
        walk_axis(b, 2, az + 2 if az < 0 else az - 2)
        a.wait("id => window.arbiterDemo.drawnIds('avatar').includes(id)", b.avatar_id)
        for _ in range(3):
            a.page.click("#spawn")
        a.wait("() => window.arbiterDemo.ownCubes().length === 3")
        b.page.click("#spawn")
        b.wait("() => window.arbiterDemo.ownCubes().length === 1")
        a.page.mouse.move(640, 400)
        a.page.mouse.wheel(0, 250)
        a.wait("() => window.arbiterDemo.cameraSettled()")
        a.wait("() => window.arbiterDemo.scoreboard().rows.length === 2")
        ring = a.js("window.arbiterDemo.viewRing()")
        assert ring["visible"] and ring["radius"] == radius
        assert a.page.is_visible("#scoreboard")
        assert a.js("window.arbiterDemo.drawnEntities('drone').length") >= 1
        assert a.js("window.arbiterDemo.drawnEntities('pickup').length") >= 1
        ARTIFACTS.mkdir(exist_ok=True)
        a.page.screenshot(path=str(ARTIFACTS / "demo-game.png"))
        if os.environ.get("ARBITER_UPDATE_SCREENSHOT"):
            (ROOT / "docs" / "img").mkdir(exist_ok=True)
            a.page.screenshot(path=str(ROOT / "docs" / "img" / "demo-game.png"))
    finally:
        srv.stop()
