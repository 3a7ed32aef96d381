"""Unit tests of LockstepRoom on a task.Clock with a recording outbox (no sockets)."""

import pytest
from twisted.internet import task

from arbiter.config import Config
from arbiter.checksums import ChecksumLedger
from arbiter.lockstep import LockstepRoom
from arbiter.lockstep_packets import adapt_timing
from arbiter.room import JoinError
from protocols.testing import RecordingOutbox
from arbiter.schema import Schema, WireError
from arbiter.tokens import Signer

# what a lockstep room's clients may send
SCHEMA = Schema(messages=LockstepRoom.messages)


def make_room(n=2, **options):
    clock = task.Clock()
    clock.advance(1000)
    out = RecordingOutbox()
    options.setdefault("turn_ms", 100)
    options.setdefault("turn_timeout", 1.0)
    room = LockstepRoom("ls", Config(), out, Signer(b"k"), clock, seed=7,
                        min_players=n, **options)
    players = []
    for i in range(n):
        p = room.join("p%d" % i)
        room.welcome(p)
        players.append(p)
    return room, out, clock, players


def send(room, player, t, **fields):
    raw = {"t": t}
    raw.update(fields)
    room.handle_message(player, SCHEMA.validate(t, raw))


def started(n=2, **options):
    room, out, clock, players = make_room(n, **options)
    for p in players:
        send(room, p, "ready", ready=True)
    assert room.phase == "running"
    return room, out, clock, players


def of(out, pid, t):
    return [m for m in out.to(pid) if m["t"] == t]


def test_game_starts_when_every_present_player_is_ready():
    """Ready flags are broadcast in ``setup``; the last ready player starts the game."""
    room, out, clock, (a, b) = make_room(2)
    send(room, a, "ready", ready=True)
    assert room.phase == "setup"
    last = of(out, b.id, "setup")[-1]
    assert last["players"][a.id]["ready"] is True and last["players"][b.id]["ready"] is False
    send(room, b, "ready", ready=True)
    assert room.phase == "running"
    start = of(out, a.id, "start")[-1]
    assert start["seed"] == 7 and start["players"] == [a.id, b.id]
    assert of(out, b.id, "phase")[-1]["phase"] == "running"


def test_min_players_holds_the_start():
    """With min_players 3, two ready players keep the room in setup."""
    room, out, clock, (a, b) = make_room(2)
    room.lobby.min_players = 3
    send(room, a, "ready", ready=True)
    send(room, b, "ready", ready=True)
    assert room.phase == "setup"


def test_configure_broadcasts_the_whole_config_and_clears_ready():
    """A config change goes to everyone in full, null deletes a key, and ready flags reset."""
    room, out, clock, (a, b) = make_room(2)
    send(room, a, "configure", config={"size": 32, "coins": 3})
    send(room, a, "ready", ready=True)
    send(room, b, "configure", config={"coins": None, "map": "x"})
    setup = of(out, a.id, "setup")[-1]
    assert setup["config"] == {"size": 32, "map": "x"}
    assert setup["players"][a.id]["ready"] is False


def test_configure_outside_setup_is_rejected_not_setup():
    """Once the game runs, configure and ready are refused with reject code not_setup."""
    room, out, clock, (a, b) = started()
    send(room, a, "configure", config={"size": 1})
    rej = of(out, a.id, "reject")[-1]
    assert rej["code"] == "not_setup" and rej["ref"] == "configure"


def test_master_waits_for_the_turn_length_and_every_packet():
    """Turn 1 closes turn_ms after the start once both packets are in, commands by player."""
    room, out, clock, (a, b) = started()
    send(room, a, "turn", turn=1, cmds=[["v", 1, 0]])
    send(room, b, "turn", turn=1, cmds=[])
    assert not of(out, a.id, "master")
    clock.advance(0.1)
    (master,) = of(out, a.id, "master")
    assert master["turn"] == 1 and master["cmds"] == {a.id: [["v", 1, 0]], b.id: []}
    assert "late" not in master and master["turn_ms"] == 100


def test_a_missing_packet_lags_then_times_out_as_an_empty_turn():
    """Without b's packet the room goes running.lagging, then closes the turn with b late."""
    room, out, clock, (a, b) = started()
    send(room, a, "turn", turn=1, cmds=[["v", 1, 1]])
    clock.advance(0.1)
    assert not of(out, a.id, "master")
    clock.advance(0.25)
    assert room.phase == "running.lagging"
    assert of(out, a.id, "phase")[-1] == {"t": "phase", "phase": "running.lagging",
                                          "waiting": [b.id]}
    clock.advance(0.75)
    (master,) = of(out, a.id, "master")
    assert master["late"] == [b.id] and master["cmds"][b.id] == []
    assert room.phase == "running"
    send(room, b, "turn", turn=1, cmds=[["v", 0, 1]])
    rej = of(out, b.id, "reject")[-1]
    assert rej["code"] == "late" and rej["turn"] == 1


@pytest.mark.parametrize("turn, cmds, code", [
    (1, [], "duplicate"),
    (40, [], "bad_turn"),
    (2, [["x" * 100]] * 30, "too_big"),
])
def test_bad_packets_are_rejected_with_a_code(turn, cmds, code):
    """A duplicate, a turn too far ahead, or too many bytes of commands is rejected."""
    room, out, clock, (a, b) = started()
    send(room, a, "turn", turn=1, cmds=[])
    send(room, a, "turn", turn=turn, cmds=cmds)
    rej = of(out, a.id, "reject")[-1]
    assert rej["code"] == code and rej["turn"] == turn and str(turn) in rej["msg"]


@pytest.mark.parametrize("raw, words", [
    ({"turn": "3"}, ["turn", "'3'"]),
    ({"turn": 1, "cmds": {}}, ["cmds", "list"]),
    ({"turn": 1, "check": [0, 5]}, ["check", "[turn, checksum]"]),
    ({"turn": 1, "lat": -1}, ["lat", "-1"]),
    ({"turn": 1, "cmds": [1] * 65}, ["cmds", "65"]),
])
def test_malformed_turn_packets_are_bad_message_naming_the_field(raw, words):
    """wire validation of turn packets names the field, the value and what was expected."""
    raw = dict(raw, t="turn")
    with pytest.raises(WireError) as e:
        SCHEMA.validate("turn", raw)
    assert e.value.code == "bad_message"
    for w in words:
        assert w in e.value.msg


def test_turn_packets_before_the_start_are_rejected_not_running():
    """In setup a turn packet is refused with not_running."""
    room, out, clock, (a, b) = make_room(2)
    send(room, a, "turn", turn=1)
    assert of(out, a.id, "reject")[-1]["code"] == "not_running"


def test_newcomers_of_a_running_game_are_spectators_and_cannot_send():
    """A join after the start is a spectator: it gets catchup, its packets get code spectator."""
    room, out, clock, (a, b) = started()
    for p in (a, b):
        send(room, p, "turn", turn=1)
    clock.advance(0.1)
    s = room.join("late", role="player")
    room.welcome(s)
    assert s.role == "spectator"
    catchup = of(out, s.id, "catchup")[-1]
    assert catchup["turn"] == 1 and len(catchup["masters"]) == 1 and "next" not in catchup
    send(room, s, "turn", turn=2)
    assert of(out, s.id, "reject")[-1]["code"] == "spectator"
    send(room, s, "ready", ready=True)
    assert of(out, s.id, "reject")[-1]["code"] == "spectator"


def _play(room, clock, players, turns, checks=None):
    for _ in range(turns):
        n = room.turn + 1
        for p in players:
            fields = {}
            if checks is not None and n > 1:
                fields["check"] = [n - 1, checks(p, n - 1)]
            send(room, p, "turn", turn=n, **fields)
        clock.advance(room.turn_ms / 1000.0)


def test_checksums_that_differ_halt_the_game_naming_the_minority():
    """Three agree and one differs at turn 3: phase running.desync, desync names turn 3 and it."""
    room, out, clock, ps = started(4)
    bad = ps[3]
    _play(room, clock, ps, 5, checks=lambda p, t: 99 if (p is bad and t >= 3) else t)
    assert room.phase == "running.desync"
    (desync,) = of(out, ps[0].id, "desync")
    assert desync["turn"] == 3 and desync["diverged"] == [bad.id]
    assert desync["checksums"][bad.id] == 99
    closed = room.turn
    clock.advance(5)
    assert room.turn == closed


def test_a_tie_names_every_player():
    """Two players that disagree: no majority, both are named."""
    room, out, clock, (a, b) = started(2)
    _play(room, clock, [a, b], 3, checks=lambda p, t: "x" if p is a else "y")
    assert of(out, a.id, "desync")[0]["diverged"] == [a.id, b.id]


def test_a_late_checksum_is_compared_with_the_agreed_one():
    """After turn 1 was agreed, a different checksum for it from anyone halts the game."""
    room, out, clock, (a, b) = started(2)
    _play(room, clock, [a, b], 3, checks=lambda p, t: t)
    send(room, a, "turn", turn=room.turn + 1, check=[1, 12345])
    assert of(out, b.id, "desync")[0] == {"t": "desync", "turn": 1, "diverged": [a.id],
                                         "checksums": {a.id: 12345, "agreed": 1}}


def test_a_disconnect_pauses_and_a_resume_catches_up():
    """b drops: running.paused and no turn closes; b resumes, gets every master and ``next``."""
    room, out, clock, (a, b) = started(2)
    _play(room, clock, [a, b], 3)
    send(room, b, "turn", turn=4)
    room.disconnect(b)
    assert room.phase == "running.paused"
    assert of(out, a.id, "phase")[-1] == {"t": "phase", "phase": "running.paused",
                                          "waiting": [b.id]}
    send(room, a, "turn", turn=4)
    clock.advance(10)
    assert room.turn == 3
    body = Signer(b"k").open(b.token, "ls")
    player, taken_over = room.resume(body)
    assert player is b and not taken_over
    room.welcome(b)
    catchup = of(out, b.id, "catchup")[-1]
    assert [m["turn"] for m in catchup["masters"]] == [1, 2, 3]
    assert catchup["next"] == 5 and catchup["seed"] == 7
    assert room.phase == "running"
    clock.advance(0.1)
    assert room.turn == 4


def test_a_player_away_longer_than_drop_after_is_dropped():
    """With drop_after 5 s the game goes on without b; the next master says it was dropped."""
    room, out, clock, (a, b, c) = started(3, drop_after=5.0)
    _play(room, clock, [a, b, c], 2)
    room.disconnect(c)
    clock.advance(4.9)
    assert room.phase == "running.paused"
    clock.advance(0.2)
    assert of(out, a.id, "event")[-1] == {"t": "event", "kind": "dropped", "player": c.id,
                                          "turn": 3}
    assert room.phase == "running"
    _play(room, clock, [a, b], 1)
    master = of(out, a.id, "master")[-1]
    assert master["turn"] == 3 and master["dropped"] == [c.id] and c.id not in master["cmds"]
    with pytest.raises(JoinError):
        room.resume(Signer(b"k").open(c.token, "ls"))


def test_turn_length_adapts_to_the_slowest_client():
    """A client reporting 600 ms round trips stretches turns to 300 ms with input delay 2."""
    room, out, clock, (a, b) = started(2, adapt_every=2)
    send(room, a, "turn", turn=1, lat=600, fps=30)
    send(room, b, "turn", turn=1, lat=20, fps=60)
    clock.advance(0.1)
    send(room, a, "turn", turn=2)
    send(room, b, "turn", turn=2)
    clock.advance(0.1)
    assert room.turn_ms == 300
    send(room, a, "turn", turn=3)
    send(room, b, "turn", turn=3)
    clock.advance(0.299)
    assert room.turn == 2
    clock.advance(0.001)
    master = of(out, a.id, "master")[-1]
    assert master["turn"] == 3 and master["turn_ms"] == 300 and master["frames"] == 9


def test_adapt_timing_grows_at_once_and_shrinks_slowly():
    """adapt_timing: rtt/delay and one frame are floors; shrinking is at most 10% a step."""
    assert adapt_timing(50, [(10, 60), (None, None)], 2, 50) == (50, 3)
    assert adapt_timing(50, [(400, 60)], 2, 50) == (200, 12)
    assert adapt_timing(50, [(10, 20)], 2, 50) == (50, 1)
    assert adapt_timing(50, [(10, 10)], 2, 50) == (100, 1)
    assert adapt_timing(50, [(0, None)], 2, 200) == (180, 11)


def test_a_full_room_refuses_players_but_takes_spectators():
    """max_players reached: room_full for players, spectators still join."""
    room, out, clock, (a, b) = make_room(2, max_players=2)
    with pytest.raises(JoinError) as e:
        room.join("c")
    assert e.value.code == "room_full"
    assert room.join("d", role="spectator").is_spectator


def test_realtime_inputs_in_a_lockstep_room_are_rejected():
    """A move in a lockstep room is rejected with not_in_game; say still reaches everyone."""
    room, out, clock, (a, b) = started(2)
    room.submit(a, SCHEMA.validate("move", {"t": "move", "seq": 1, "dt": 10, "dir": [1, 0]}))
    assert of(out, a.id, "reject")[-1]["code"] == "not_in_game"
    room.submit(a, SCHEMA.validate("say", {"t": "say", "seq": 2, "text": "gg"}))
    assert of(out, b.id, "event")[-1] == {"t": "event", "kind": "say", "player": a.id,
                                          "text": "gg"}


def test_end_closes_everyone_and_refuses_new_joins():
    """end(): phase ended is broadcast, connections close with 1000, joins get room_ended."""
    room, out, clock, (a, b) = started(2)
    room.end("over")
    assert of(out, a.id, "phase")[-1] == {"t": "phase", "phase": "ended", "reason": "over"}
    assert sorted(out.closed) == sorted([(a.id, 1000), (b.id, 1000)])
    with pytest.raises(JoinError) as e:
        room.join("z")
    assert e.value.code == "room_ended"
    assert clock.getDelayedCalls() == []


def test_a_player_away_at_the_start_is_left_out_of_the_game():
    """Two ready, one disconnected in setup: the game starts once, with the two present."""
    room, out, clock, (a, b, c) = make_room(3)
    room.lobby.min_players = 2
    send(room, a, "ready", ready=True)
    send(room, b, "ready", ready=True)
    room.disconnect(c)
    assert room.phase == "running"
    starts = of(out, a.id, "start")
    assert len(starts) == 1 and starts[0]["players"] == [a.id, b.id]
    assert c.id not in room.players


def test_a_setup_player_away_longer_than_grace_leaves_the_lobby():
    """In setup a disconnected player is shown connected false, then removed after the grace."""
    room, out, clock, (a, b) = make_room(2)
    room.disconnect(b)
    assert of(out, a.id, "setup")[-1]["players"][b.id]["connected"] is False
    clock.advance(31)
    room.run_tick(clock.seconds(), 0.05)
    assert b.id not in of(out, a.id, "setup")[-1]["players"]


def test_ledger_settles_a_turn_when_the_expected_players_change():
    """A turn waiting for a player that left is decided once it is no longer expected."""
    ledger = ChecksumLedger()
    order = ["a", "b", "c"]
    assert ledger.report("a", 5, 1, order, order) is None
    assert ledger.report("b", 5, 2, order, order) is None
    assert ledger.report("a", 6, 1, order, order) is None
    found = ledger.settle_all(["a", "b"], order)
    assert found.turn == 5 and found.diverged == ["a", "b"]
    assert found.as_wire() == {"turn": 5, "diverged": ["a", "b"], "checksums": {"a": 1, "b": 2}}
    assert ledger.settle_all(["a", "b"], order) is None


def test_ledger_forgets_old_turns_beyond_its_memory():
    """Agreed turns are kept for the last ``keep`` turns only."""
    ledger = ChecksumLedger(keep=3)
    for t in range(1, 6):
        ledger.report("a", t, t, ["a"], ["a"])
    assert sorted(ledger.agreed) == [3, 4, 5]


def test_a_disconnect_that_leaves_a_split_decides_the_turn_once():
    """b leaves while a and c disagree on turn 2: one desync (a tie, both named), not two."""
    room, out, clock, (a, b, c) = started(3)
    _play(room, clock, [a, b, c], 2)
    send(room, a, "turn", turn=3, check=[2, 1])
    send(room, c, "turn", turn=3, check=[2, 9])
    room.disconnect(b)
    (desync,) = of(out, a.id, "desync")
    assert desync["turn"] == 2 and desync["diverged"] == [a.id, c.id]


def test_setup_messages_are_rate_limited():
    """configure/ready (each broadcast to all) are limited to a burst of 10, then 5 a second."""
    room, out, clock, (a, b) = make_room(2)
    for i in range(10):
        send(room, a, "configure", config={"n": i})
    assert not of(out, a.id, "reject")
    send(room, a, "configure", config={"n": 99})
    rej = of(out, a.id, "reject")[-1]
    assert rej["code"] == "rate_limited" and rej["ref"] == "configure"
    assert of(out, b.id, "setup")[-1]["config"] == {"n": 9}
    clock.advance(0.2)
    send(room, a, "ready", ready=True)
    assert of(out, b.id, "setup")[-1]["players"][a.id]["ready"] is True


def say(room, player, seq, text="hi"):
    room.submit(player, SCHEMA.validate("say", {"t": "say", "seq": seq, "text": text}))


def says(out, pid):
    return [m["text"] for m in of(out, pid, "event") if m["kind"] == "say"]


def test_say_needs_a_seq_above_the_last_and_welcome_acks_it():
    """A say's seq must go up (bad_seq, not relayed); a resumed player's welcome.ack is its last."""
    room, out, clock, (a, b) = started(2)
    say(room, a, 3, "one")
    say(room, a, 3, "again")
    say(room, a, 2, "older")
    assert says(out, b.id) == ["one"]
    assert [(r["seq"], r["code"]) for r in of(out, a.id, "reject")] == [(3, "bad_seq"),
                                                                      (2, "bad_seq")]
    room.submit(a, SCHEMA.validate("move", {"t": "move", "seq": 9, "dt": 10, "dir": [1, 0]}))
    assert of(out, a.id, "reject")[-1]["code"] == "not_in_game"
    say(room, a, 4, "two")                  # other inputs move nothing: 4 is still above 3
    assert says(out, b.id) == ["one", "two"]
    room.disconnect(a)
    player, _ = room.resume(Signer(b"k").open(a.token, "ls"))
    room.welcome(player)
    assert of(out, a.id, "welcome")[-1]["ack"] == 4


def test_say_is_rate_limited_5_a_second():
    """The say bucket (5, 5 per s): the sixth say at once is rate_limited, 0.2 s refills one."""
    room, out, clock, (a, b) = started(2)
    for seq in range(1, 7):
        say(room, a, seq, "s%d" % seq)
    assert says(out, b.id) == ["s1", "s2", "s3", "s4", "s5"]
    assert [(r["seq"], r["code"]) for r in of(out, a.id, "reject")] == [(6, "rate_limited")]
    say(room, a, 6, "s6 again")             # a rate-limited say was processed: bad_seq now
    assert of(out, a.id, "reject")[-1]["code"] == "bad_seq"
    clock.advance(0.2)
    say(room, a, 7, "s7")
    assert says(out, b.id)[-1] == "s7"


def test_a_spectators_say_is_relayed_with_the_same_checks():
    """PROTOCOL.md 10, 15.10: a spectator's say reaches everyone, seq-checked and rate-limited."""
    room, out, clock, (a, b) = started(2)
    s = room.join("watcher", role="spectator")
    room.welcome(s)
    say(room, s, 1, "nice")
    assert says(out, a.id) == ["nice"] and says(out, s.id) == ["nice"]
    say(room, s, 1, "nice again")
    assert of(out, s.id, "reject")[-1]["code"] == "bad_seq"
    for seq in range(2, 8):
        say(room, s, seq)
    assert of(out, s.id, "reject")[-1] == {"t": "reject", "seq": 7, "code": "rate_limited",
                                           "msg": "too many say inputs"}
