"""The honest players of a :class:`~arbiter.tools.fuzzing.fuzzer.Fuzzer`: they play
between hostile frames and check every state message they get."""

import random

from arbiter.movement import round2, step_avatar
from protocols.testing import FakeClient
from arbiter.tools.fuzzing.contract import _mirror
from arbiter.tools.fuzzing.generators import TEXT_CHARS, text
from arbiter.tools.fuzzing.report import _Conn, _Honest


class HonestPlay:
    """Honest players' part of the :class:`Fuzzer` (a mixin)."""

    def _received(self, conn):
        """(messages, close code) the client got since the last call."""
        c = conn.client
        before = c.close_code
        try:
            msgs = c.received()
        except Exception as e:
            self.violation("undecodable", "a frame to the client did not decode: %r" % (e,))
            msgs = []
        for m in msgs:
            if m.get("code") == "internal_error":
                self.report.internal_errors += 1
                self.violation("internal_error", "%s got %r" % (self._who(conn), m))
        return msgs, (c.close_code if c.close_code != before else None)

    def _who(self, conn):
        if isinstance(conn, _Honest):
            conn = conn.conn
        for h in self.honest:
            if h.conn is conn:
                return "honest %s (%s)" % (h.name, conn.encoding.split(".")[-1])
        return "hostile %s connection" % conn.encoding.split(".")[-1]

    # -- honest players ------------------------------------------------------------
    def _join_honest(self, name, encoding):
        client = FakeClient(self.factory, (encoding,))
        conn = _Conn(client, encoding, self.clock.seconds())
        h = _Honest(conn, name, random.Random("%s/%d" % (name, self.seed)))
        client.send({"t": "hello", "v": 1, "name": name, "room": self.room})
        msgs, close = self._received(conn)
        if [m.get("t") for m in msgs[:2]] != ["welcome", "snapshot"] or close:
            self.violation("join", "%s could not join: %r, close %r" % (name, msgs[:3], close))
            return h
        conn.joined = True
        conn.you = msgs[0]["you"]
        h.state = msgs[1]["state"]
        h.ack = msgs[1]["ack"]
        for k, e in h.state["entities"].items():
            if e.get("kind") == "avatar" and e.get("owner") == conn.you:
                h.avatar = k
                h.predicted = (e["pos"][0], e["pos"][2])
        self._honest_absorb(h, msgs[2:])
        return h

    def _send_honest(self, h, msg):
        h.seq += 1
        msg["seq"] = h.seq
        h.conn.client.send(msg)
        self.report.honest_sent += 1

    def honest_act(self):
        """Every honest player sends this tick's inputs (once per tick)."""
        if self._acted:
            return
        self._acted = True
        world = self.config.world
        half = world.size / 2
        for h in self.honest:
            if not h.conn.joined:
                continue
            rng = h.rng
            h.cubes_before = h.my_cubes()
            h.events = []
            if rng.random() < 0.8:
                d = [round(rng.uniform(-1, 1), 3), round(rng.uniform(-1, 1), 3)]
                self._send_honest(h, {"t": "move", "dt": 50, "dir": d})
                h.pending.append((h.seq, "move", d))
            r = rng.random()
            mine = sorted(h.cubes_before, key=int)
            if r < 0.25 and len(mine) < 6:
                at = [round(rng.uniform(-half, half) * 0.9, 3),
                      round(rng.uniform(-half, half) * 0.9, 3)]
                self._send_honest(h, {"t": "spawn", "at": at})
                h.pending.append((h.seq, "spawn", at))
            elif r < 0.45 and mine:
                ids = rng.sample(mine, rng.randint(1, min(3, len(mine))))
                to = [round(rng.uniform(-half, half), 3), round(rng.uniform(-half, half), 3)]
                self._send_honest(h, {"t": "order", "ids": [int(i) for i in ids], "to": to})
                h.pending.append((h.seq, "order", (ids, to)))
            elif r < 0.5 and mine:
                victim = rng.choice(mine)
                self._send_honest(h, {"t": "delete", "id": int(victim)})
                h.pending.append((h.seq, "delete", victim))
            elif r < 0.56 and self._tick_no - h.last_say_tick >= 10:
                h.last_say_tick = self._tick_no
                words = text(rng, 1, 60, TEXT_CHARS)
                self._send_honest(h, {"t": "say", "text": words})
                h.pending.append((h.seq, "say", words))
            elif r < 0.6:
                ts = round(rng.uniform(0, 1e6), 3)
                h.conn.client.send({"t": "ping", "ts": ts})
                h.pongs.append(ts)
                msgs, close = self._received(h.conn)
                self._honest_absorb(h, msgs, close)
                if h.pongs:
                    self.violation("honest", "%s got no pong for ping %r" % (h.name, ts))
                    h.pongs = []

    def _honest_absorb(self, h, msgs, close=None):
        if close is not None:
            self.violation("honest", "%s was closed with %s" % (h.name, close))
            h.conn.joined = False
        for m in msgs:
            t = m.get("t")
            if t == "delta":
                _mirror(h.state, m["patch"])
                self._honest_state(h, m)
            elif t == "snapshot":
                h.state = m["state"]
                h.snapshots += 1
                self._honest_state(h, m)
            elif t == "event":
                if m.get("kind") == "say":
                    h.events.append((m.get("player"), m.get("text")))
            elif t == "pong":
                if m.get("ts") in h.pongs:
                    h.pongs.remove(m["ts"])
                else:
                    self.violation("honest", "%s got a pong it did not ask for: %r" % (h.name, m))
            else:
                self.violation("honest", "%s got %r" % (h.name, m),
                               sig="an honest player got %s %s" % (t, m.get("code", "")))

    def _honest_state(self, h, m):
        ack = m.get("ack")
        if not isinstance(ack, int) or ack < h.ack:
            self.violation("honest", "%s: ack went from %s to %r" % (h.name, h.ack, ack))
            return
        if ack > h.ack:
            self.report.honest_acked += ack - h.ack
        h.ack = ack

    def _check_honest_tick(self):
        """After a tick: each honest player's inputs acked, and their effects there."""
        for h in self.honest:
            if not h.conn.joined or not h.pending:
                h.pending = []
                continue
            if h.ack != h.seq:
                self.violation("honest", "%s sent up to seq %d, the tick's state acked %d"
                               % (h.name, h.seq, h.ack))
                h.pending = []
                continue
            ents = h.state.get("entities", {})
            mine_after = h.my_cubes()
            for seq_, kind, detail in h.pending:
                ok = True
                if kind == "move":
                    x, z = h.predicted
                    world = self.config.world
                    h.predicted = step_avatar(x, z, detail[0], detail[1], 50,
                                              world.avatar_speed, world.size)
                elif kind == "spawn":
                    new = mine_after - h.cubes_before
                    want = [round2(detail[0]), 0.5, round2(detail[1])]
                    ok = len(new) == 1 and ents[next(iter(new))]["pos"] == want
                    if not ok:
                        self.violation("honest", "%s: spawn %d at %r: new cubes %r"
                                       % (h.name, seq_, want, {k: ents[k] for k in new}))
                elif kind == "order":
                    ids, to = detail
                    to = [round2(to[0]), round2(to[1])]
                    for i in ids:
                        e = ents.get(i)
                        if e is None or not (e.get("to") == to or (
                                "to" not in e and [e["pos"][0], e["pos"][2]] == to)):
                            ok = False
                            self.violation("honest", "%s: order %d of cube %s to %r: cube is %r"
                                           % (h.name, seq_, i, to, e))
                elif kind == "delete":
                    ok = detail not in ents
                    if not ok:
                        self.violation("honest", "%s: deleted cube %s still there"
                                       % (h.name, detail))
                elif kind == "say":
                    for other in self.honest:
                        if other.conn.joined and (h.conn.you, detail) not in other.events:
                            ok = False
                            self.violation("honest", "%s did not hear %s say %r"
                                           % (other.name, h.name, detail))
                if ok:
                    self.report.honest_applied += 1
            if any(k == "move" for _, k, _ in h.pending):
                av = ents.get(h.avatar)
                got = (av["pos"][0], av["pos"][2]) if av else None
                if got != h.predicted:
                    moves = sum(1 for _, k, _ in h.pending if k == "move")
                    self.report.honest_applied -= moves
                    self.violation("honest", "%s's avatar is at %r, predicted %r"
                                   % (h.name, got, h.predicted))
                    h.predicted = got or h.predicted
            h.pending = []
        for h in self.honest:
            h.events = []

    # -- hostile connections ---------------------------------------------------------
