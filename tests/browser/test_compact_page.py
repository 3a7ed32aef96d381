"""The cube demo's sync modes in real Chromium against a real server.

By default the page syncs compactly (docs/PROTOCOL.md 20: binary records on the msgpack
subprotocol), ``?sync=state`` gives the v1 merge patches and ``?sync=intent`` the motions the
page extrapolates (11); the overlay's ``sync`` line says which. Whatever the mode, a spawned
cube appears and an ordered cube travels on screen and stops at its target.
window.arbiterDemo is read to learn where things are drawn and what the client holds.
"""


def overlay_sync(player):
    return player.overlay()["sync"]


def record_states(player):
    """From now on, keep (type, compact?, patch entities) of every state message the page gets."""
    player.js("""() => { const seen = window.__states = [];
        window.arbiterDemo.client.connection.on('message', m => {
          if (m.t === 'snapshot' || m.t === 'delta')
            seen.push([m.t, m.compact === true, m.patch ? Object.keys(m.patch.entities || {}) : null]);
        }); }""")


def spawn(player):
    """Click Spawn; the id of the new cube once this page draws it."""
    before = player.js("window.arbiterDemo.ownCubes()")
    player.page.click("#spawn")
    return player.wait(
        """before => { const d = window.arbiterDemo;
             const ids = d.ownCubes().filter(id => !before.includes(id) && d.screenPos(id));
             return ids.length ? ids[0] : null; }""",
        before,
    )


def drawn(player, cube):
    player.wait("() => window.arbiterDemo.cameraSettled()")
    return player.js("id => window.arbiterDemo.screenPos(id)", cube)


def order_and_watch(player, cube, distance=4):
    """Order the cube ``distance`` units toward the plane's centre (through the client, as
    a right-click would) and watch it on screen: returns (target, the distinct x drawn on
    the way, where it is drawn at the end)."""
    start = drawn(player, cube)
    x0, z0 = start["pos"][0], start["pos"][2]
    target = [round(x0 - distance if x0 > 0 else x0 + distance, 2), round(z0, 2)]
    player.js("""([id, to]) => { const d = window.arbiterDemo; window.__path = [];
        (function watch() { const p = d.screenPos(id); if (p) window.__path.push([p.x, p.y, p.pos[0]]);
          if (window.__path.length < 2000) requestAnimationFrame(watch); })();
        d.client.order([id], to); }""", [cube, target])
    # it moves on screen...
    player.wait("""([x, y]) => window.__path.some(p => Math.hypot(p[0] - x, p[1] - y) > 20)""",
                [start["x"], start["y"]])
    # ...and stops at the target: drawn there, and the mirror says it arrived
    player.wait(
        """([id, to]) => { const d = window.arbiterDemo, p = d.screenPos(id), e = d.client.state.entities[id];
             return p && e && !e.to && Math.abs(p.pos[0] - to[0]) < 0.011 && Math.abs(p.pos[2] - to[1]) < 0.011; }""",
        [cube, target], timeout=15000)
    xs = player.js("() => [...new Set(window.__path.map(p => p[2]))]")
    return target, xs, drawn(player, cube)


def test_the_demo_syncs_compact_by_default_and_a_state_page_sees_the_same(players, room):
    """A page without ?sync= is on the compact sync (overlay, msgpack, binary state);
    its cube appears and travels on screen; a ?sync=state page in the room draws it at the
    same place, and both mirrors hold the very same entity."""
    a = players(room, "Alice")
    b = players(room, "Bob", sync="state")
    assert overlay_sync(a) == "compact"
    assert overlay_sync(b) == "state"
    assert a.js("window.arbiterDemo.client.connection._ws.protocol") == "arbiter.v1.msgpack"
    assert b.js("window.arbiterDemo.client.connection._ws.protocol") == "arbiter.v1.json"
    assert a.js("window.arbiterDemo.client.connection.compact.synced") is True
    record_states(a)

    cube = spawn(a)
    b.wait("id => window.arbiterDemo.screenPos(id)", cube)
    target, xs, end = order_and_watch(a, cube)
    assert len(xs) > 5, "drawn moving, not jumping: %s" % xs
    b.wait("""([id, to]) => { const d = window.arbiterDemo, p = d.screenPos(id), e = d.client.state.entities[id];
                return p && e && !e.to && Math.abs(p.pos[0] - to[0]) < 0.011 && Math.abs(p.pos[2] - to[1]) < 0.011; }""",
           [cube, target])
    mine = a.js("id => window.arbiterDemo.client.state.entities[id]", cube)
    theirs = b.js("id => window.arbiterDemo.client.state.entities[id]", cube)
    assert mine == theirs and mine["owner"] == a.you
    drawn_b = b.js("id => window.arbiterDemo.screenPos(id).pos", cube)
    assert [drawn_b[0], drawn_b[2]] == [end["pos"][0], end["pos"][2]] == [mine["pos"][0], mine["pos"][2]]
    states = a.js("window.__states")
    assert states and all(compact for _, compact, _ in states), states
    # a resync is a compact snapshot too
    tick = a.js("window.arbiterDemo.client.tick")
    a.js("window.arbiterDemo.client.resync()")
    a.wait("t => window.__states.some(s => s[0] === 'snapshot') && window.arbiterDemo.client.tick > t", tick)
    assert a.js("id => window.arbiterDemo.client.state.entities[id]", cube) == mine
    assert a.js("window.arbiterDemo.client.connection.compactErrors") == 0


def test_state_sync_page_still_plays(players, room):
    """?sync=state: merge patches as in v1; spawn and order work as before."""
    a = players(room, "Alice", sync="state")
    assert overlay_sync(a) == "state"
    assert a.js("window.arbiterDemo.client.connection.compact") is None
    record_states(a)
    cube = spawn(a)
    target, xs, end = order_and_watch(a, cube)
    assert len(xs) > 5
    assert abs(end["pos"][0] - target[0]) < 1e-9 and abs(end["pos"][2] - target[1]) < 1e-9
    states = a.js("window.__states")
    assert states and not any(compact for _, compact, _ in states)


def test_intent_sync_page_draws_cubes_it_gets_no_positions_for(players, room):
    """?sync=intent: the cube's position comes once per order; the page draws it travelling
    smoothly between (extrapolated at the render tick) and stopping at the target."""
    a = players(room, "Alice", sync="intent")
    assert overlay_sync(a) == "intent"
    cube = spawn(a)
    record_states(a)
    target, xs, end = order_and_watch(a, cube)
    assert len(xs) > 10, "drawn moving between states: %s" % xs
    assert abs(end["pos"][0] - target[0]) < 1e-9 and abs(end["pos"][2] - target[1]) < 1e-9
    with_cube = [s for s in a.js("window.__states") if s[2] and cube in s[2]]
    assert len(with_cube) <= 2, "the order and the arrival, nothing in between: %s" % with_cube
