"""The bot: one simulated player of the cubes workload, an ArbiterClient."""

import collections
import time

from arbiter.codes import MOVED
from arbiter.state import apply_merge_patch
from protocols import wire
from protocols.client import ArbiterClient

__all__ = ["Bot"]


class Bot(ArbiterClient):
    """One simulated player: the client's mirror, plus order timing and counters."""

    def __init__(self, test, index, reactor):
        super().__init__(reactor, keep=8)
        self.test = test
        self.index = index
        self.cube_ids = []
        self.next_cube = 0
        self.pending = collections.deque()   # (seq, sent at) of unacknowledged orders
        self.window_updates = 0
        self.orders_loop = None
        self.msgs_in = 0
        self.skim = False        # --decode-every: count state messages, do not decode

    def skimmed(self, ack):
        self.msgs_in += 1
        self.updates += 1
        self.window_updates += 1
        self.ack = ack
        pending = self.pending
        while pending and pending[0][0] <= ack:
            pending.popleft()

    def send(self, msg):
        payload, binary = wire.encode(msg, self.encoding)
        self.proto.send_fast(payload, binary)

    def _on_message(self, msg):
        self.msgs_in += 1
        # the fast path of ArbiterClient._on_message for deltas, same effect
        if msg.get("t") == "delta":
            apply_merge_patch(self.state, msg["patch"])
            self.tick = msg["tick"]
            ack = self.ack = msg["ack"]
            self.updates += 1
            self.window_updates += 1
            if self.pending and self.pending[0][0] <= ack:
                self._acked(ack)
            if self._waiters:
                self._check_waiters()
            return
        super()._on_message(msg)
        t = msg.get("t")
        if t == "snapshot":
            self.window_updates += 1
            if self.pending and self.pending[0][0] <= self.ack:
                self._acked(self.ack)
        elif t == "reject":
            self.test.rejects[msg.get("code")] += 1
        elif t == "error" and msg.get("code") != MOVED:     # a redirect is no error
            self.test.errors[msg.get("code")] += 1

    def _on_compact(self, payload):
        # sync "compact": ArbiterClient's CompactMirror applies the frame (the cost a
        # real client pays per update); the rest is counting
        self.msgs_in += 1
        if super()._on_compact(payload) is None:
            return
        self.window_updates += 1
        if self.pending and self.pending[0][0] <= self.ack:
            self._acked(self.ack)

    def _acked(self, ack):
        now = time.perf_counter()
        pending = self.pending
        record = self.test.latencies.append if self.test.measuring else None
        while pending and pending[0][0] <= ack:
            _, sent = pending.popleft()
            if record is not None:
                record((now - sent) * 1000.0)

    def send_order(self):
        if not self.cube_ids or self.close_code is not None:
            return
        cid = self.cube_ids[self.next_cube % len(self.cube_ids)]
        self.next_cube += 1
        half = self.test.half
        rnd = self.test.rng.uniform
        seq = self.order([cid], [round(rnd(-half, half), 2), round(rnd(-half, half), 2)])
        self.pending.append((seq, time.perf_counter()))
        self.test.orders_sent += 1
