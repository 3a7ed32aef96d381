"""Rounds that end (docs/PROTOCOL.md section 21): a realtime room's round clock.

A round ends when a player reaches ``round_points`` points, when ``round_seconds``
have passed, or when the game says so (``room.end_round``). Then every client gets an
``event`` ``round_end`` with the result (final scores, winner), the room goes to phase
``ended`` (inputs are refused with ``not_running``, the world stands still) and, after
``round_pause`` seconds, a new round starts with every score at 0 (``event``
``round_start``, phase ``running``) — unless ``round_once``: then the room stays ended.

The state carries the round under its top-level key ``round``, so a player who joins
during the pause sees the result in its snapshot::

    "round": {"n": 2, "phase": "running" | "ended", "points"?: 10,
              "ends_at"?: <state tick>, "next_at"?: <state tick>,
              "result"?: {"round", "reason", "scores", "winner"?}}

(a key marked ? is absent when it does not apply: a merge patch cannot hold null.)

Rooms without rounds (both settings 0, the default) have no ``round`` key and never
send these messages: their state is protocol v1's.
"""

from arbiter import phases


class RoundClock:
    """The round of one room; the room calls :meth:`check` once per simulation tick."""

    def __init__(self, room, points=0, seconds=0.0, pause=5.0, once=False):
        self.room = room
        self.points = points
        self.seconds = seconds
        self.pause = pause
        self.once = once
        self.n = 0
        self.started_at = None
        self.restart_at = None
        self.result = None
        self.start()

    @classmethod
    def from_config(cls, room, config):
        """A clock when the server runs rounds (``--round-points``/``--round-seconds``),
        else None."""
        if not config.round_points and not config.round_seconds:
            return None
        return cls(room, config.round_points, config.round_seconds, config.round_pause,
                   config.round_once)

    @property
    def over(self):
        return self.result is not None

    def _ticks(self, seconds):
        return int(round(seconds * self.room.config.send_rate))

    def start(self):
        """A new round: every score back to 0, phase ``running``."""
        room = self.room
        self.n += 1
        self.started_at = room.now
        self.restart_at = None
        self.result = None
        for node in room.state["players"].values():
            if node["score"] != 0:
                node["score"] = 0
        node = room.state.get("round")
        if node is None:
            room.state["round"] = {"n": self.n}
            node = room.state["round"]         # (the state map's own copy)
        node["n"] = self.n
        node["phase"] = phases.RUNNING
        for key in ("result", "next_at"):
            if key in node:
                del node[key]          # null in the delta: the last round's result is gone
        if self.points:
            node["points"] = self.points
        if self.seconds:
            node["ends_at"] = room.tick + self._ticks(self.seconds)
        if self.n > 1:
            phases.set_phase(room, phases.RUNNING, round=self.n)
            room.broadcast_event("round_start", round=self.n)
            room.game.round_started(self.n)

    def restart_clock(self):
        """The room starts running now (its setup lobby is over): the round's time
        counts from here."""
        room = self.room
        self.started_at = room.now
        if self.seconds:
            room.state["round"]["ends_at"] = room.tick + self._ticks(self.seconds)

    def end(self, reason, winner=None):
        """End the round now. ``winner``: a player id, or None to take the single
        highest score (None again on a tie)."""
        if self.over:
            return
        room = self.room
        scores = {pid: node["score"] for pid, node in room.state["players"].items()}
        if winner is None and scores:
            best = max(scores.values())
            top = [pid for pid, s in scores.items() if s == best]
            winner = top[0] if len(top) == 1 else None
        next_at = None
        if not self.once:
            self.restart_at = room.now + self.pause
            next_at = room.tick + self._ticks(self.pause)
        self.result = {"round": self.n, "reason": reason, "scores": scores, "winner": winner}
        node = room.state["round"]
        node["phase"] = phases.ENDED
        if next_at is not None:
            node["next_at"] = next_at
        result = dict(self.result)
        if result["winner"] is None:
            del result["winner"]       # (absent in the state on a tie; null in the event)
        node["result"] = result
        room.broadcast_event("round_end", next_at=next_at, **self.result)
        phases.set_phase(room, phases.ENDED, round=self.n)
        room.game.round_ended(dict(self.result))

    def check(self, now):
        """Once per simulation tick: end the round, or start the next one, when due."""
        if self.over:
            if self.restart_at is not None and now >= self.restart_at:
                self.start()
            return
        if self.points:
            for node in self.room.state["players"].values():
                if node["score"] >= self.points:
                    self.end("points")
                    return
        if self.seconds and now - self.started_at >= self.seconds:
            self.end("time")
