"""The cube demo's net graph (G) in real Chromium against a real server: shown and hidden
by the key, the values it plots (ping, view delay, bytes in), the page's latency simulator
in its ping, a correction of the avatar's prediction as a mark (a snapped one in red), and
the stalls of a link through the delay proxy (arbiter-netem) shaded and counted.

window.arbiterDemo.netGraph() is read to learn what the graph holds; the canvas's pixels
are read to see that what it holds is drawn.
"""

import os
import sys
import uuid
from pathlib import Path

import pytest

from conftest import Player, PortProcess

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
NETEM = Path(sys.executable).parent / "arbiter-netem"

GRAPH = "window.arbiterDemo.netGraph()"

# The graph's colours (web/static/js/demo/netgraph.js COLORS), as RGB.
SNAPPED = (0xFF, 0x2D, 0x55)
BLENDED = (0xFF, 0xD6, 0x0A)
STALL = (186, 104, 200)  # drawn at alpha 0.38 (97 of 255) on the transparent canvas

COUNT_PIXELS = """([rgb, tol, alpha]) => {
  const c = document.getElementById('netgraph-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (alpha !== null && Math.abs(d[i + 3] - alpha) > 12) continue;
    if (Math.abs(d[i] - rgb[0]) <= tol && Math.abs(d[i + 1] - rgb[1]) <= tol
        && Math.abs(d[i + 2] - rgb[2]) <= tol) n++;
  }
  return n;
}"""


def pixels(player, rgb, tol=8, alpha=255):
    """Canvas pixels of colour rgb (within tol per channel, at the given alpha, 0-255)."""
    return player.js(COUNT_PIXELS, [list(rgb), tol, alpha])


def wait_pixels(player, rgb, tol=30):
    """Wait until the canvas has a pixel of about colour rgb."""
    player.wait("""([rgb, tol]) => { const c = document.getElementById('netgraph-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4)
          if (Math.abs(d[i] - rgb[0]) <= tol && Math.abs(d[i + 1] - rgb[1]) <= tol
              && Math.abs(d[i + 2] - rgb[2]) <= tol) return true;
        return false; }""", [list(rgb), tol])


def graph(player):
    return player.js(GRAPH)


def shown(player):
    """Whether the graph's box is shown in the DOM (laid out and not hidden)."""
    return player.page.is_visible("#netgraph")


def legend(player):
    return player.js("""() => Object.fromEntries(['ng-ping', 'ng-delay', 'ng-bytes', 'ng-corr', 'ng-stalls']
        .map(id => [id, document.getElementById(id).textContent]))""")


class Netem(PortProcess):
    """``arbiter-netem`` in a subprocess in front of a server; ``port`` once it listens, and
    ``url()`` gives demo pages through it (their WebSocket goes through it too)."""

    def __init__(self, target_port, *args):
        super().__init__([str(NETEM), "--listen", "127.0.0.1:0", "--to",
                          "127.0.0.1:%d" % target_port, *args], "NETEM_PORT", "arbiter-netem")


@pytest.fixture
def proxied(browser, server):
    """proxied(room, name, *netem_args, **query): a demo page through its own arbiter-netem
    in front of the session's server. Checks none logged an error; stops the proxies."""
    opened = []
    proxies = []

    def open_page(room, name, *netem_args, **params):
        proxy = Netem(server.port, *netem_args)
        proxies.append(proxy)
        p = Player(browser, proxy, room, name, **params)
        opened.append(p)
        return p

    yield open_page
    errors = [e for p in opened for e in p.errors]
    for p in opened:
        p.close()
    for proxy in proxies:
        proxy.stop()
    assert not errors, "the page logged errors:\n" + "\n".join(errors)


def press_g(player):
    player.page.mouse.click(640, 600)  # the game has the focus, as after any click on it
    player.page.keyboard.press("g")


def test_g_toggles_the_graph_and_its_values_are_plausible(players, room):
    """Off by default; G shows it (DOM and hook), it fills with plausible values, G hides it;
    a G typed into a field of the page is no toggle. An idle room's quiet server (it sends
    a state only when something changed) is no stall."""
    a = players(room, "Alice")
    g = graph(a)
    assert g["visible"] is False and not shown(a)
    press_g(a)
    a.wait(GRAPH + ".visible")
    assert shown(a)
    box = a.page.locator("#netgraph-canvas").bounding_box()
    assert (round(box["width"]), round(box["height"])) == (300, 120)

    # a few seconds of samples (about one a frame, at most 30 a second)
    g = a.wait("() => { const g = %s; return g.samples >= 60 && g.arrivals >= 1 && g.last.ping !== null"
               " && g.last.bytesIn > 0 && g; }" % GRAPH, timeout=20000)
    assert g["last"]["ping"] >= 0
    assert g["last"]["delay"] >= 100  # interpolation on: 100 ms + the measured jitter
    assert g["last"]["bytesIn"] > 0
    assert g["last"]["corrections"] == 0 and g["marks"] == 0

    # A quiet server sends nothing (docs/PROTOCOL.md 2.2): a spawn now and then is a state
    # after a long gap whose ticks were skipped, no stall. (A plain gap rule would count each.)
    a.js("""() => { window.__gaps = []; let last = null;
        window.arbiterDemo.client.on('state', () => { const t = performance.now();
          if (last !== null) window.__gaps.push(t - last); last = t; }); }""")
    stalls = graph(a)["stallsSeen"]
    for _ in range(4):
        n = graph(a)["arrivals"]
        a.page.click("#spawn")
        a.wait("n => %s.arrivals > n" % GRAPH, n)
        a.wait("t0 => performance.now() > t0 + 400", a.js("performance.now()"))  # quiet
    quiet = a.js("window.__gaps.filter(g => g > 2.5 * 1000 / window.arbiterDemo.client.connection.rate).length")
    assert quiet >= 3
    # none of them (a hiccup of this headless page, slow under load, may still make one)
    assert graph(a)["stallsSeen"] - stalls <= 1, graph(a)
    texts = a.wait("""() => { const t = Object.fromEntries(['ng-ping', 'ng-delay', 'ng-bytes']
        .map(id => [id, document.getElementById(id).textContent]));
        return t['ng-ping'].endsWith(' ms') && t['ng-bytes'].endsWith(' kB/s') && t; }""")
    assert int(texts["ng-delay"].split()[0]) >= 100
    assert legend(a)["ng-corr"] == "0/min"
    # the lines are drawn: ping's and delay's colours on the canvas
    assert pixels(a, (0x4F, 0xC3, 0xF7), tol=30, alpha=None) > 20
    assert pixels(a, (0xAE, 0xD5, 0x81), tol=30, alpha=None) > 20

    # moving: a state message about every state tick
    a.page.keyboard.down("ArrowLeft")
    a.wait("n => %s.arrivals >= n + 20" % GRAPH, g["arrivals"])
    a.page.keyboard.up("ArrowLeft")
    a.wait("() => window.arbiterDemo.client.backlog === 0")

    # a G typed into the latency simulator's field is the field's (a number field drops it)
    a.page.focus("#jitter")
    a.page.keyboard.press("g")
    assert graph(a)["visible"] is True
    press_g(a)
    a.wait("() => !%s.visible" % GRAPH)
    assert not shown(a)
    # hidden, it keeps sampling: shown again, it has the last seconds at once
    n = graph(a)["samples"]
    a.wait("n => %s.samples > n + 5" % GRAPH, n)
    press_g(a)
    a.wait(GRAPH + ".visible")


def test_the_latency_simulator_shows_in_the_graphs_ping(players, room):
    """100 ms each way in the overlay's latency simulator: the graph's ping (the latest round
    trip) goes above 180 ms, and its label says so; back to 0, it comes down again."""
    a = players(room, "Alice", netgraph=1)
    assert graph(a)["visible"] is True and shown(a)
    a.wait("() => %s.last.ping !== null" % GRAPH)
    a.page.fill("#lag", "100")
    a.page.mouse.click(640, 600)
    g = a.wait("() => { const g = %s; return g.last.ping > 180 && g; }" % GRAPH, timeout=10000)
    a.wait("() => parseInt(document.getElementById('ng-ping').textContent) > 180")
    # the series holds it: the graph's ms scale goes up to fit it
    a.wait("() => %s.scale.ms >= 200" % GRAPH)
    high = g["last"]["ping"]
    a.page.fill("#lag", "0")
    a.page.mouse.click(640, 600)
    a.wait("high => %s.last.ping < high - 100" % GRAPH, high, timeout=10000)


def test_a_correction_is_a_mark_and_a_snap_a_red_one(players, room):
    """The movement credit (docs/PROTOCOL.md 6.2: 400 ms at most, refilled with wall time) is
    a real server rule that corrects the avatar: moves sent faster than real time (here
    through the client's own input path, client.sendInput, as the page's key handling
    does) come back as `correct` (reason speed) and the client's `correction` event. A
    small error blends (a yellow tick on the graph), a large one snaps (a red line)."""
    a = players(room, "Alice", netgraph=1)
    x = a.js("window.arbiterDemo.client.predictedPosition()[0]")
    sign = -1 if x > 0 else 1  # toward the centre: 12 units at most, the walls never clip them
    burst = """([sign, n]) => { const c = window.arbiterDemo.client;
        for (let i = 0; i < n; i++) c.sendInput({t: 'move', dir: [sign, 0], dt: 250}); }"""

    # 500 ms of moves at once on a full credit: 100 ms of them refused, 0.8 units: blended
    a.js(burst, [sign, 2])
    g = a.wait("() => { const g = %s; return g.correctionsSeen >= 1 && g; }" % GRAPH)
    assert g["snappedSeen"] == 0 and g["marks"] == 1
    a.wait("() => document.getElementById('ng-corr').textContent === '1/min'")
    wait_pixels(a, BLENDED)
    assert pixels(a, SNAPPED, tol=30, alpha=None) == 0
    a.wait("() => window.arbiterDemo.client.backlog === 0")

    # 1000 ms more at once on what refilled since (400 ms at most): 4.8 units or more, snapped
    a.js(burst, [sign, 4])
    g = a.wait("() => { const g = %s; return g.snappedSeen >= 1 && g; }" % GRAPH)
    a.wait("() => window.arbiterDemo.client.backlog === 0")
    assert g["correctionsSeen"] == a.js("window.arbiterDemo.client.correctionCount") == 2
    assert g["marks"] == 2 and g["snappedMarks"] == 1
    assert g["last"]["corrections"] == 2
    a.wait("() => document.getElementById('ng-corr').textContent === '2/min'")
    wait_pixels(a, SNAPPED)  # drawn at the next repaint (at most every 100 ms): a red line


def keep_a_cube_moving(player):
    """Spawn a cube in a corner and send it to the far one (about 10 s at speed 5): the server
    has something to say every state tick, so a state message is due every tick."""
    player.js("() => window.arbiterDemo.client.spawn([-18, -18])")
    cube = player.wait("() => window.arbiterDemo.ownCubes()[0]")
    player.js("id => window.arbiterDemo.client.order([id], [18, 18])", cube)
    player.wait("id => (window.arbiterDemo.client.state.entities[id] || {}).to", cube)
    return cube


def test_stalls_through_the_delay_proxy_are_counted_and_shaded(proxied):
    """Through arbiter-netem --stall-every 2 --stall 400 the link stops for 400 ms every 2 s.
    With a cube on its way (a state message every tick) the graph counts the gaps in the
    state stream as stalls, about as long as the proxy's, and shades them."""
    room = "ng-" + uuid.uuid4().hex[:10]
    a = proxied(room, "Alice", "--stall-every", "2", "--stall", "400", netgraph=1)
    keep_a_cube_moving(a)
    seen = graph(a)["stallsSeen"]
    g = a.wait("n => { const g = %s; return g.stallsSeen >= n + 2 && g; }" % GRAPH, seen, timeout=15000)
    assert g["last"]["stalls"] >= 1
    assert 300 <= g["longestStall"] <= 1500, g
    a.wait("() => parseInt(document.getElementById('ng-stalls').textContent) >= 1")
    # shaded: the stall colour, see-through, where nothing else is drawn over it
    assert pixels(a, STALL, tol=10, alpha=97) > 100


def test_screenshot_of_the_overlay_with_the_graph(proxied):
    """docs/img/netgraph.png (with ARBITER_UPDATE_SCREENSHOT=1; test-artifacts/netgraph.png
    always): the overlay and its graph through --delay 75 --jitter 15 --stall-every 10
    --stall 300, a cube on its way, the avatar walking to and fro; and, so the picture has
    both kinds of marks, two bursts of moves faster than real time after the proxy's stall
    (a blended correction, then a snapped one) as in the test above. Taken a few seconds
    after the stall."""
    room = "ng-" + uuid.uuid4().hex[:10]
    a = proxied(room, "Alice", "--delay", "75", "--jitter", "15", "--stall-every", "10",
                "--stall", "300", netgraph=1)
    cube = keep_a_cube_moving(a)
    a.page.mouse.click(640, 600)
    after = None  # walks since the proxy's stall showed
    bursts = {0: 2, 2: 4}  # walks since the stall -> moves of 250 ms sent at once after it
    for i in range(40):
        if after is not None and after >= 3:
            break
        # the cube back and forth, so a state message is due every tick
        a.js("""id => { const c = window.arbiterDemo.client, e = c.state.entities[id];
            if (e && !e.to) c.order([id], e.pos[0] > 0 ? [-18, -18] : [18, 18]); }""", cube)
        x = a.js("window.arbiterDemo.client.predictedPosition()[0]")
        key = "ArrowLeft" if x > 0 else "ArrowRight"
        a.page.keyboard.down(key)
        a.wait("t0 => performance.now() > t0 + 1000", a.js("performance.now()"))
        a.page.keyboard.up(key)
        a.wait("() => window.arbiterDemo.client.backlog === 0", timeout=5000)
        if after in bursts:
            sign = -1 if a.js("window.arbiterDemo.client.predictedPosition()[0]") > 0 else 1
            n = a.js("() => window.arbiterDemo.netGraph().correctionsSeen")
            a.js("""([sign, n]) => { const c = window.arbiterDemo.client;
                for (let i = 0; i < n; i++) c.sendInput({t: 'move', dir: [sign, 0], dt: 250}); }""",
                 [sign, bursts[after]])
            a.wait("n => window.arbiterDemo.netGraph().correctionsSeen > n", n)
        a.wait("t0 => performance.now() > t0 + 300", a.js("performance.now()"))
        if after is not None:
            after += 1
        elif graph(a)["longestStall"] >= 250:
            after = 0
    else:
        raise AssertionError("no stall of the proxy's in 40 walks: %r" % graph(a))
    g = graph(a)
    shot = ARTIFACTS / "netgraph.png"
    ARTIFACTS.mkdir(exist_ok=True)
    a.page.locator("#overlay").screenshot(path=str(shot))
    if os.environ.get("ARBITER_UPDATE_SCREENSHOT"):
        a.page.locator("#overlay").screenshot(path=str(ROOT / "docs" / "img" / "netgraph.png"))
    print("net graph at the screenshot:", g)
    assert g["last"]["ping"] > 120 and g["marks"] >= 2 and g["snappedMarks"] >= 1
    assert g["last"]["stalls"] >= 1
