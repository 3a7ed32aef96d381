"""The cube demo in real Chromium against a real server: what players see.

Pages are driven with real mouse and keyboard input; window.arbiterDemo is
read only to learn where things are drawn and what the client holds.
"""

import json
import os
import uuid
from pathlib import Path

from conftest import ArbiterProcess, Player

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

DRAWN_CUBES = "() => window.arbiterDemo.drawnIds('cube')"


def own_cubes(player):
    return player.js("window.arbiterDemo.ownCubes()")


def spawn_cube(player):
    """Click Spawn; return the id of the new cube once it is drawn on this page."""
    before = own_cubes(player)
    player.page.click("#spawn")
    return player.wait(
        """before => { const d = window.arbiterDemo;
             const ids = d.ownCubes().filter(id => !before.includes(id) && d.screenPos(id));
             return ids.length ? ids[0] : null; }""",
        before,
    )


def spawn_clear_cube(player, gap=60, tries=8):
    """Spawn until a new cube is drawn on screen at least ``gap`` px from everything else
    drawn (cubes spawn at a random angle around the avatar and may land behind another
    entity, where a click would pick that one); return its id."""
    for _ in range(tries):
        cube = spawn_cube(player)
        me = drawn(player, cube)
        others = [player.js("id => window.arbiterDemo.screenPos(id)", i)
                  for i in player.js("window.arbiterDemo.drawnIds()") if str(i) != str(cube)]
        inside = gap < me["x"] < 1280 - gap and gap < me["y"] < 720 - gap
        if inside and all(o is None or (o["x"] - me["x"]) ** 2 + (o["y"] - me["y"]) ** 2 >= gap * gap
                          for o in others):
            return cube
    raise AssertionError("no cube landed clear of the others in %d spawns" % tries)


def drawn(player, entity_id):
    """{x, y, pos} where the entity is drawn on this page, or None (once the camera is still)."""
    player.wait("() => window.arbiterDemo.cameraSettled()")
    return player.js("id => window.arbiterDemo.screenPos(id)", entity_id)


def screen_of(player, x, z):
    """The screen point of the ground point (x, z) on this page."""
    return player.js("([x, z]) => window.arbiterDemo.view.project(x, 0, z)", [x, z])


def click_entity(player, entity_id, shift=False, **kwargs):
    p = drawn(player, entity_id)
    if shift:
        player.page.keyboard.down("Shift")
    player.page.mouse.click(p["x"], p["y"], **kwargs)
    if shift:
        player.page.keyboard.up("Shift")


def test_two_pages_join_and_see_a_spawned_cube(players, room):
    """Two pages in one room see both avatars; a cube spawned on A appears on B in A's colour."""
    a = players(room, "Alice")
    b = players(room, "Bob")
    a_avatar, b_avatar = a.avatar_id, b.avatar_id
    for p in (a, b):
        p.wait("ids => ids.every(id => window.arbiterDemo.screenPos(id))", [a_avatar, b_avatar])
    assert a.you != b.you

    cube = spawn_cube(a)
    b.wait("id => window.arbiterDemo.screenPos(id)", cube)
    seen = b.js("id => window.arbiterDemo.client.state.entities[id]", cube)
    assert seen["kind"] == "cube"
    assert seen["owner"] == a.you
    assert seen["color"] == a.js("id => window.arbiterDemo.client.state.entities[id].color", a_avatar)
    # Bob's player list shows Alice.
    b.wait("() => document.querySelector('#players').textContent.includes('Alice')")


def test_select_and_send_a_cube(players, room):
    """A clicks its cube, right-clicks the ground; B sees the cube travel and stop at the target."""
    a = players(room, "Alice")
    b = players(room, "Bob")
    cube = spawn_clear_cube(a)
    b.wait("id => window.arbiterDemo.screenPos(id)", cube)
    start = drawn(b, cube)["pos"]

    click_entity(a, cube)
    a.wait("id => window.arbiterDemo.selected().includes(id)", cube)
    assert a.page.is_enabled("#delete")

    # A target 6 units away from the cube, toward the centre of the plane.
    tx = start[0] - 6 if start[0] > 0 else start[0] + 6
    tz = start[2]
    target_px = screen_of(a, tx, tz)
    a.page.mouse.click(target_px["x"], target_px["y"], button="right")
    marker = a.wait("() => window.arbiterDemo.marker()")
    assert abs(marker[0] - tx) < 0.2 and abs(marker[1] - tz) < 0.2

    # On B: the cube moves...
    b.wait(
        """([id, x0]) => { const p = window.arbiterDemo.screenPos(id); return p && Math.abs(p.pos[0] - x0) > 0.5; }""",
        [cube, start[0]],
    )
    # ...and stops exactly at the target (5 units/s: about 1.2 s of travel).
    b.wait(
        """([id, m]) => { const d = window.arbiterDemo, p = d.screenPos(id), e = d.client.state.entities[id];
             return p && e && !e.to && Math.abs(p.pos[0] - m[0]) < 0.011 && Math.abs(p.pos[2] - m[1]) < 0.011; }""",
        [cube, marker],
    )
    # A quiet room sends no deltas; ask for the whole state at a later tick and check it
    # still has the cube at the target.
    tick = b.js("window.arbiterDemo.client.tick")
    b.js("window.arbiterDemo.client.resync()")
    b.wait("t => window.arbiterDemo.client.tick > t", tick)
    assert not b.js("id => window.arbiterDemo.client.state.entities[id].to", cube)
    end = drawn(b, cube)["pos"]
    assert abs(end[0] - marker[0]) < 0.011 and abs(end[2] - marker[1]) < 0.011


def test_shift_click_drag_box_and_delete(players, room):
    """Shift-click adds to the selection, a drag box selects several, Delete selected removes them on B too."""
    a = players(room, "Alice")
    b = players(room, "Bob")
    cubes = [spawn_clear_cube(a) for _ in range(2)]
    click_entity(a, cubes[0])
    click_entity(a, cubes[1], shift=True)
    a.wait("ids => ids.every(id => window.arbiterDemo.selected().includes(id))", cubes)

    # Clicking empty ground clears; a box around both cubes selects them again.
    a.page.mouse.click(5, 360)
    a.wait("() => window.arbiterDemo.selected().length === 0")
    pts = [drawn(a, c) for c in cubes]
    x0, x1 = min(p["x"] for p in pts) - 25, max(p["x"] for p in pts) + 25
    y0, y1 = min(p["y"] for p in pts) - 25, max(p["y"] for p in pts) + 25
    a.page.mouse.move(x0, y0)
    a.page.mouse.down()
    a.page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
    assert a.page.is_visible("#dragbox")
    a.page.mouse.move(x1, y1, steps=3)
    a.page.mouse.up()
    a.wait("ids => ids.every(id => window.arbiterDemo.selected().includes(id))", cubes)

    for c in cubes:
        b.wait("id => window.arbiterDemo.screenPos(id)", c)
    a.page.click("#delete")
    b.wait("ids => ids.every(id => !window.arbiterDemo.screenPos(id))", cubes)
    a.wait("ids => ids.every(id => !window.arbiterDemo.screenPos(id))", cubes)


def test_hovered_cube_changes_colour(players, room):
    """A cube under the mouse is drawn lighter than its owner's colour."""
    a = players(room, "Alice")
    cube = spawn_clear_cube(a)
    colour = "id => '#' + window.arbiterDemo.view.entities.get(id).material.color.getHexString()"
    base = a.js(colour, cube)
    p = drawn(a, cube)
    a.page.mouse.move(p["x"], p["y"])
    a.wait("([id, base]) => '#' + window.arbiterDemo.view.entities.get(id).material.color.getHexString() !== base", [cube, base])
    a.page.mouse.move(5, 360)
    a.wait("([id, base]) => '#' + window.arbiterDemo.view.entities.get(id).material.color.getHexString() === base", [cube, base])


def press_and_check_first_frame(player, key):
    """Hold key; return the frame records ({own, auth}) just before and on the first frame after the keydown."""
    frame0 = player.js("window.arbiterDemo.frame")
    player.page.keyboard.down(key)
    key_frame = player.wait(
        "([f, key]) => { const k = window.arbiterDemo.keys.filter(k => k.code === key && k.frame >= f).pop();"
        " return k ? k.frame : null; }",
        [frame0, key],
    )
    frames = player.wait(
        """n => { const fs = window.arbiterDemo.frames;
             const a = fs.find(f => f.n === n), b = fs.find(f => f.n === n + 1);
             return a && b ? [a, b] : null; }""",
        key_frame,
    )
    return frames


def direction_to_centre(player):
    x = player.js("window.arbiterDemo.screenPos(window.arbiterDemo.client.avatarId).pos[0]")
    return ("ArrowLeft", -1) if x > 0 else ("ArrowRight", 1)


def test_arrow_keys_move_own_avatar_at_once_and_on_the_other_page_soon_after(players, room):
    """A's arrow key moves A's avatar on A on the very next frame, and on B shortly after."""
    a = players(room, "Alice")
    b = players(room, "Bob")
    avatar = a.avatar_id
    key, sign = direction_to_centre(a)
    x_on_b = drawn(b, avatar)["pos"][0]

    before, first = (f["own"] for f in press_and_check_first_frame(a, key))
    assert (first[0] - before[0]) * sign > 0.1, (before, first)
    a.wait("([id, x0, s]) => (window.arbiterDemo.screenPos(id).pos[0] - x0) * s > 2", [avatar, before[0], sign])
    a.page.keyboard.up(key)

    b.wait("([id, x0, s]) => (window.arbiterDemo.screenPos(id).pos[0] - x0) * s > 1", [avatar, x_on_b, sign], timeout=3000)
    # Once A is still, both pages agree where A is (B draws the server's word, A its prediction).
    a.wait("() => window.arbiterDemo.client.backlog === 0")
    final = a.js("id => window.arbiterDemo.client.state.entities[id].pos", avatar)
    b.wait("([id, p]) => { const q = window.arbiterDemo.screenPos(id).pos; return q[0] === p[0] && q[2] === p[2]; }", [avatar, final])
    a.wait("([id, p]) => { const q = window.arbiterDemo.screenPos(id).pos; return Math.abs(q[0] - p[0]) < 1e-9 && Math.abs(q[2] - p[2]) < 1e-9; }", [avatar, final])
    assert a.js("window.arbiterDemo.client.correctionCount") == 0


def test_reload_keeps_player_and_cubes(players, room):
    """Reloading the page resumes the same player id, avatar and cubes (token in sessionStorage)."""
    a = players(room, "Alice")
    b = players(room, "Bob")
    you, avatar = a.you, a.avatar_id
    cube = spawn_cube(a)
    a.page.reload()
    a.wait_ready()
    assert a.you == you
    assert a.avatar_id == avatar
    a.wait("id => window.arbiterDemo.screenPos(id)", cube)
    assert cube in own_cubes(a)
    # B never saw Alice as a second player.
    b.wait("you => window.arbiterDemo.client.state.players[you].connected", you)
    assert b.js("Object.keys(window.arbiterDemo.client.state.players).length") == 2


def test_other_room_sees_nothing(players, room):
    """A page in another room sees only itself: none of room A's avatars or cubes."""
    a = players(room, "Alice")
    cube = spawn_cube(a)
    c = players(room + "-other", "Carol")
    later = spawn_cube(a)           # room A keeps changing while Carol is connected
    # Carol's room is quiet (no deltas); her whole state, taken after A's last change:
    tick = c.js("window.arbiterDemo.client.tick")
    c.js("window.arbiterDemo.client.resync()")
    c.wait("t => window.arbiterDemo.client.tick > t", tick)
    ids = c.js("window.arbiterDemo.drawnIds()")
    assert ids == [c.avatar_id]
    for other in (cube, later):
        assert other not in c.js("Object.keys(window.arbiterDemo.client.state.entities)")
    assert list(c.js("Object.keys(window.arbiterDemo.client.state.players)")) == [c.you]
    assert "Alice" not in c.page.text_content("#players")


def set_latency(player, ms, jitter=0):
    """Type into the latency simulator fields, then wait for the overlay's ping to show it."""
    player.page.fill("#lag", str(ms))
    player.page.fill("#jitter", str(jitter))
    player.page.mouse.click(5, 360)  # back to the game, as a player would
    player.wait(
        "ms => { const t = document.querySelector('#o-ping').textContent; return t.endsWith(' ms') && parseInt(t) >= 2 * ms; }",
        ms,
        timeout=20000,
    )


def test_prediction_moves_own_avatar_on_first_frame_at_150ms(players, room):
    """With 150 ms added each way, A's own avatar still moves on the first frame of a keypress."""
    a = players(room, "Alice")
    b = players(room, "Bob")
    set_latency(a, 150)
    avatar = a.avatar_id
    key, sign = direction_to_centre(a)
    frame_before, frame_first = press_and_check_first_frame(a, key)
    before, first = frame_before["own"], frame_first["own"]
    assert (first[0] - before[0]) * sign > 0.1, (before, first)
    # The server's word had not moved yet on that frame: what moved was the prediction.
    assert frame_first["auth"] == frame_before["auth"]
    a.wait("([id, x0, s]) => (window.arbiterDemo.screenPos(id).pos[0] - x0) * s > 2", [avatar, before[0], sign])
    a.page.keyboard.up(key)
    b.wait("([id, x0, s]) => (window.arbiterDemo.screenPos(id).pos[0] - x0) * s > 2", [avatar, before[0], sign])
    a.wait("() => window.arbiterDemo.client.backlog === 0", timeout=5000)
    assert a.js("window.arbiterDemo.client.correctionCount") == 0


def test_without_prediction_the_avatar_waits_for_the_server(players, room):
    """With prediction switched off at 150 ms, the first frames after a keypress do not move."""
    a = players(room, "Alice")
    set_latency(a, 150)
    a.page.uncheck("#predict")
    key, sign = direction_to_centre(a)
    before, first = (f["own"] for f in press_and_check_first_frame(a, key))
    assert first == before
    a.wait("([id, x0, s]) => (window.arbiterDemo.screenPos(id).pos[0] - x0) * s > 0.5", [a.avatar_id, before[0], sign])
    a.page.keyboard.up(key)


def test_tag_out_of_reach_is_a_miss(players, room):
    """Clicking another player's avatar sends a tag; out of reach the page reports a miss."""
    a = players(room, "Alice")
    b = players(room, "Bob")
    b_avatar = b.avatar_id
    a.page.mouse.move(640, 400)
    a.page.mouse.wheel(0, 3000)  # zoom out until the whole plane is in view
    a.wait("id => window.arbiterDemo.screenPos(id)", b_avatar)
    dist = a.js(
        """id => { const d = window.arbiterDemo, p = d.screenPos(id).pos, q = d.screenPos(d.client.avatarId).pos;
             return Math.hypot(p[0] - q[0], p[2] - q[2]); }""",
        b_avatar,
    )
    click_entity(a, b_avatar)
    if dist > 2.5:
        a.wait("() => document.querySelector('#log').textContent.includes('missed')")
    else:
        b.wait("() => document.querySelector('#log').textContent.includes('tagged')")


def test_msgpack_and_json_pages_share_a_room(players, room):
    """A page on the msgpack subprotocol and one on JSON see each other's cubes (both on
    the state sync: the demo's default, compact, is msgpack only)."""
    a = players(room, "Alice", enc="msgpack", sync="state")
    b = players(room, "Bob", sync="state")
    assert a.js("window.arbiterDemo.client.connection._ws.protocol") == "arbiter.v1.msgpack"
    assert b.js("window.arbiterDemo.client.connection._ws.protocol") == "arbiter.v1.json"
    cube = spawn_cube(a)
    b.wait("id => window.arbiterDemo.screenPos(id)", cube)
    cube_b = spawn_cube(b)
    a.wait("id => window.arbiterDemo.screenPos(id)", cube_b)


def test_overlay_and_screenshot(players, room):
    """docs/demo.png shows the game in play; the overlay reads sensible numbers at 0 and 150 ms."""
    a = players(room, "Alice")
    b = players(room, "Bob")
    cubes = [spawn_cube(a) for _ in range(4)]
    for _ in range(2):
        spawn_cube(b)
    a.wait("() => window.arbiterDemo.drawnIds('cube').length === 6")
    a.page.mouse.move(640, 400)
    a.page.mouse.wheel(0, 250)  # zoom out a little

    # Select A's cubes with a drag box and send them off; screenshot with them under way.
    pts = [drawn(a, c) for c in cubes]
    x0, x1 = min(p["x"] for p in pts) - 30, max(p["x"] for p in pts) + 30
    y0, y1 = min(p["y"] for p in pts) - 30, max(p["y"] for p in pts) + 30
    a.page.mouse.move(x0, y0)
    a.page.mouse.down()
    a.page.mouse.move(x1, y1, steps=4)
    a.page.mouse.up()
    a.wait("n => window.arbiterDemo.selected().length === n", len(cubes))
    me = drawn(a, a.avatar_id)["pos"]
    tx = me[0] - 12 if me[0] > 0 else me[0] + 12
    tz = me[2] - 3 if me[2] > 0 else me[2] + 3
    t = screen_of(a, tx, tz)
    a.page.mouse.click(t["x"], t["y"], button="right")
    a.wait("() => window.arbiterDemo.marker()")
    start = drawn(a, cubes[0])["pos"]
    a.wait(
        "([id, p]) => { const q = window.arbiterDemo.screenPos(id).pos; return Math.hypot(q[0] - p[0], q[2] - p[2]) > 0.3; }",
        [cubes[0], start],
    )
    bob = drawn(a, b.avatar_id)
    if 0 < bob["x"] < 1280 and 0 < bob["y"] < 720:
        a.page.mouse.move(bob["x"], bob["y"])  # hover Bob's avatar
    else:
        a.page.mouse.move(*[drawn(a, a.avatar_id)[k] for k in ("x", "y")])
    # test-artifacts/demo.png every run; docs/demo.png (the README's picture) only on request
    shot = ROOT / "test-artifacts" / "demo.png"
    shot.parent.mkdir(exist_ok=True)
    a.page.screenshot(path=str(shot))
    if os.environ.get("ARBITER_UPDATE_SCREENSHOT"):
        a.page.screenshot(path=str(ROOT / "docs" / "demo.png"))

    readings = {}
    key, sign = direction_to_centre(a)
    x0 = drawn(a, a.avatar_id)["pos"][0]
    a.page.keyboard.down(key)
    a.wait("([id, x0, s]) => (window.arbiterDemo.screenPos(id).pos[0] - x0) * s > 6", [a.avatar_id, x0, sign])
    readings["0ms_moving"] = a.overlay()
    a.page.keyboard.up(key)
    a.wait("() => window.arbiterDemo.client.backlog === 0")

    set_latency(a, 150)
    key, sign = direction_to_centre(a)
    x0 = drawn(a, a.avatar_id)["pos"][0]
    a.page.keyboard.down(key)
    a.wait("([id, x0, s]) => (window.arbiterDemo.screenPos(id).pos[0] - x0) * s > 6", [a.avatar_id, x0, sign])
    readings["150ms_moving"] = a.overlay()
    a.page.keyboard.up(key)
    a.wait("() => window.arbiterDemo.client.backlog === 0", timeout=5000)
    readings["150ms_still"] = a.overlay()

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "overlay.json").write_text(json.dumps(readings, indent=2))
    print("overlay readings:", json.dumps(readings, indent=2))
    for r in readings.values():
        assert r["state"] == "open"
        assert r["corrections/s"] == "0"
    ping = {k: int(r["ping"].split()[0]) for k, r in readings.items()}
    assert ping["150ms_still"] >= 300
    assert ping["0ms_moving"] < ping["150ms_still"]
    assert int(readings["150ms_moving"]["backlog"]) > int(readings["0ms_moving"]["backlog"])


def test_name_is_asked_once_and_remembered(browser, server, room):
    """Without ?name= the page asks for a name once; after a reload it joins under it without asking."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("%s/?room=%s" % (server.base, room))
        page.wait_for_selector("#name-dialog[open]")
        page.fill("#name-input", "Grace")
        page.click("#name-dialog button[type=submit]")
        page.wait_for_function("window.arbiterDemo.ready && window.arbiterDemo.client.connection.name === 'Grace'")
        # the player list is drawn from the first state after welcome, a moment after ready
        page.wait_for_function("document.querySelector('#players').textContent.includes('Grace')")
        assert "Grace" in page.text_content("#players")
        page.reload()
        page.wait_for_function("window.arbiterDemo && window.arbiterDemo.ready")
        assert not page.is_visible("#name-dialog")
        assert page.evaluate("window.arbiterDemo.client.connection.name") == "Grace"
    finally:
        context.close()
    assert not errors


def test_dropped_link_reconnects_as_the_same_player(players, room):
    """When the socket drops, the page says so, reconnects with its token and keeps its player and cubes."""
    a = players(room, "Alice")
    b = players(room, "Bob")
    you, avatar = a.you, a.avatar_id
    cube = spawn_cube(a)
    a.js("() => { window.__statuses = []; window.arbiterDemo.client.on('status', s => window.__statuses.push(s)); }")
    # Fault injection: the link goes away under the page (as a network drop would).
    a.js("() => window.arbiterDemo.client.connection._ws.close()")
    a.wait("() => window.__statuses.includes('reconnecting')")
    b.wait("you => window.arbiterDemo.client.state.players[you] && !window.arbiterDemo.client.state.players[you].connected", you)
    a.wait("() => window.__statuses[window.__statuses.length - 1] === 'open'", timeout=15000)
    assert a.you == you
    a.wait("([id, cube]) => window.arbiterDemo.client.avatarId === id && window.arbiterDemo.ownCubes().includes(cube)", [avatar, cube])
    b.wait("you => window.arbiterDemo.client.state.players[you].connected", you)


def _walk(player, avatar, other, axis, keys, stop_within):
    """Hold the arrow key toward `other` along axis 0 (x) or 2 (z) until within stop_within."""
    expr = """([me, other, axis, d]) => { const s = window.arbiterDemo.screenPos;
                 return Math.abs(s(me).pos[axis] - s(other).pos[axis]) < d; }"""
    if player.js(expr, [avatar, other, axis, stop_within]):
        return
    me = drawn(player, avatar)["pos"][axis]
    there = drawn(player, other)["pos"][axis]
    key = keys[1] if there > me else keys[0]
    player.page.keyboard.down(key)
    player.wait(expr, [avatar, other, axis, stop_within])
    player.page.keyboard.up(key)
    player.wait("() => window.arbiterDemo.client.backlog === 0")


def test_tag_in_reach_scores_for_everyone_to_see(browser):
    """Walk up to another player's avatar and click it: both pages see the tag and the score."""
    srv = ArbiterProcess("--tag-radius", "3")
    try:
        room = "tag-" + uuid.uuid4().hex[:8]
        a = Player(browser, srv, room, "Alice")
        b = Player(browser, srv, room, "Bob")
        try:
            me, other = a.avatar_id, b.avatar_id
            a.page.mouse.move(640, 400)
            a.page.mouse.wheel(0, 3000)  # the whole plane in view
            a.wait("id => window.arbiterDemo.screenPos(id)", other)
            _walk(a, me, other, 0, ("ArrowLeft", "ArrowRight"), 2.2)
            _walk(a, me, other, 2, ("ArrowUp", "ArrowDown"), 1.0)
            click_entity(a, other)
            for p in (a, b):
                p.wait("() => document.querySelector('#log').textContent.includes('Alice tagged Bob')")
                p.wait("you => window.arbiterDemo.client.state.players[you].score === 1", a.you)
            assert "1 ·" in a.page.text_content("#players li:first-child")
            assert not a.errors and not b.errors, a.errors + b.errors
        finally:
            a.close()
            b.close()
    finally:
        srv.stop()
