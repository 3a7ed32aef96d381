"""Cluster mode: nodes that share one Redis, each room on exactly one node.

docs/SCALING.md tells the whole story; in short, in Redis (plain keys and
pub/sub, nothing else between nodes):

    arbiter:nodes             set of node ids that registered
    arbiter:node:<id>         the node's card (JSON: public URL, players, rooms, CPU),
                              expiring after ``cluster_ttl`` unless refreshed
    arbiter:rooms:<id>        the node's rooms as the lobby lists them (JSON), same expiry
    arbiter:room:<name>       the claim: the id of the node that owns room <name>, same expiry
    arbiter:roomcount         hash node id -> rooms it holds (placement picks the fewest)
    arbiter:rpc:<id>          the node's channel: API operations on its rooms and replies

Every node writes its card, its rooms and its claims in one script call per
heartbeat (``cluster_heartbeat``, 1 s). A node killed with ``kill -9`` stops
refreshing them, so they expire within ``cluster_ttl`` (10 s) and its room names
can be placed again. Placement is one script too: it reads the claim and, if
nobody holds it, writes it for the live node with the fewest rooms, atomically,
so two nodes racing for one name agree on one owner.

Nothing here runs inside a tick: every call is asynchronous, has a deadline
(``redis_timeout``), and fails with DirectoryUnavailable when Redis cannot
answer; rooms and their players never wait for Redis.
"""

import json
import os
import socket
import time
import uuid
from urllib.parse import unquote, urlparse

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from arbiter.interfaces import DirectoryUnavailable, IDirectory
from arbiter.quietlog import QuietLog
from arbiter.service import UNKNOWN_ROOM, ROOM_EXISTS, Refused

log = Logger()

PREFIX = "arbiter:"
NODES = PREFIX + "nodes"
COUNTS = PREFIX + "roomcount"


def node_key(node_id):
    return PREFIX + "node:" + node_id


def rooms_key(node_id):
    return PREFIX + "rooms:" + node_id


def room_key(name):
    return PREFIX + "room:" + name


def channel(node_id):
    return PREFIX + "rpc:" + node_id


# KEYS: the claim, the counts. ARGV: ttl ms, mode, the placing node's id, then nodes it
# has seen stop (their cards have not expired yet). mode "create": place if free; "find":
# only read. The owner is the registered node with the fewest rooms (then players, then
# id), read here, in the script, so that a node that has just started places well.
# Returns {owner or "", placed now 1/0}.
PLACE = """
local owner = redis.call('GET', KEYS[1])
if owner then return {owner, 0} end
if ARGV[2] ~= 'create' then return {'', 0} end
local skip = {}
for i = 4, #ARGV do skip[ARGV[i]] = true end
local best, bestkey
for _, n in ipairs(redis.call('SMEMBERS', 'arbiter:nodes')) do
  local card = redis.call('GET', 'arbiter:node:' .. n)
  if card and not skip[n] then
    local rooms = tonumber(redis.call('HGET', KEYS[2], n) or '0')
    local ok, c = pcall(cjson.decode, card)
    local players = (ok and type(c) == 'table' and tonumber(c.players)) or 0
    if not best or rooms < bestkey[1] or (rooms == bestkey[1] and (players < bestkey[2]
        or (players == bestkey[2] and n < best))) then
      best, bestkey = n, {rooms, players}
    end
  end
end
if not best then best = ARGV[3] end
redis.call('SET', KEYS[1], best, 'PX', ARGV[1])
redis.call('HINCRBY', KEYS[2], best, 1)
return {best, 1}
"""

# KEYS: the claim, the counts. ARGV: the node that gives the claim up.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  local n = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
  if n > 0 then redis.call('HINCRBY', KEYS[2], ARGV[1], -1) end
  return 1
end
return 0
"""

# ARGV: nodes to leave out (the asking node, stopped ones). Every other registered node's
# room list (JSON), as of its last heartbeat.
LIST = """
local skip = {}
for i = 1, #ARGV do skip[ARGV[i]] = true end
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', 'arbiter:nodes')) do
  if not skip[n] then
    local rooms = redis.call('GET', 'arbiter:rooms:' .. n)
    if rooms then table.insert(out, rooms) end
  end
end
return out
"""

# ARGV: node id, its card, its rooms (JSON), ttl ms, then the names of its rooms.
# Registers the node, refreshes (or takes back) its claims, and answers the live
# nodes' cards and the claims another node holds now: {cards, {name, owner, ...}}.
HEARTBEAT = """
local id, ttl = ARGV[1], ARGV[4]
local p = 'arbiter:'
redis.call('SET', p .. 'node:' .. id, ARGV[2], 'PX', ttl)
redis.call('SADD', p .. 'nodes', id)
redis.call('SET', p .. 'rooms:' .. id, ARGV[3], 'PX', ttl)
local conflicts = {}
local held = 0
for i = 5, #ARGV do
  local k = p .. 'room:' .. ARGV[i]
  local owner = redis.call('GET', k)
  if not owner or owner == id then
    redis.call('SET', k, id, 'PX', ttl)
    held = held + 1
  else
    table.insert(conflicts, ARGV[i])
    table.insert(conflicts, owner)
  end
end
redis.call('HSET', p .. 'roomcount', id, held)
local cards = {}
for _, n in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  local card = redis.call('GET', p .. 'node:' .. n)
  if card then
    table.insert(cards, card)
  else
    redis.call('SREM', p .. 'nodes', n)
    redis.call('HDEL', p .. 'roomcount', n)
  end
end
return {cards, conflicts}
"""


def redis_endpoint(url, reactor, timeout):
    """(endpoint, db, password) for a redis://[:password@]host[:port][/db],
    rediss:// (TLS) or unix:///path?db=N URL."""
    u = urlparse(url)
    password = unquote(u.password) if u.password else None
    if u.scheme == "unix":
        db = int(dict(p.split("=", 1) for p in u.query.split("&") if "=" in p).get("db", 0))
        return endpoints.UNIXClientEndpoint(reactor, u.path, timeout=timeout), db, password
    host, port = u.hostname or "127.0.0.1", u.port or 6379
    db = int(u.path.strip("/") or 0)
    ep = endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
    if u.scheme == "rediss":
        from twisted.internet import ssl
        ep = endpoints.wrapClientTLS(ssl.optionsForClientTLS(host), ep)
    return ep, db, password


class _Subscriber(txredisapi.SubscriberProtocol):
    """The node's channel: subscribes on every (re)connection."""

    def connectionMade(self):
        d = super().connectionMade()
        directory = self.factory.directory
        self.whenConnected().addCallback(
            lambda proto: proto.subscribe(channel(directory.node_id))).addErrback(
            lambda f: directory.failures.warn("subscribe", "could not subscribe to "
                                              "the node's channel: {why}",
                                              why=f.getErrorMessage()))
        return d

    def messageReceived(self, pattern, chan, message):
        self.factory.directory.rpc_message(message)


@implementer(IDirectory)
class RedisDirectory(Service):
    """The IDirectory of a node; a child service of the server (arbiter/app/tap.py)."""

    name = "cluster"

    def __init__(self, service, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.service = service
        self.config = config = service.config
        self.node_id = config.node_id or "%s-%s" % (socket.gethostname(), uuid.uuid4().hex[:6])
        self.public_url = config.public_url
        self.ttl_ms = int(config.cluster_ttl * 1000)
        self.timeout = config.redis_timeout
        self.nodes = {}              # live node id -> card, as of the last heartbeat
        self._progress = {}          # node id -> (its card's "at", when we saw it change)
        self.reachable = None        # None until the first heartbeat answers
        self.failures = QuietLog(reactor.seconds, log)
        self.commands = 0            # Redis calls this node made
        self._pending = {}           # rpc request id -> Deferred
        self._beat = None
        self._beating = None
        self._cpu = (time.monotonic(), sum(os.times()[:2]))
        self._cpu_share = 0.0
        self._redis = self._factory = self._sub_factory = None
        service.directory = self

    # -- lifecycle -----------------------------------------------------------------
    def startService(self):
        super().startService()
        endpoint, db, password = redis_endpoint(self.config.redis, self.reactor, self.timeout)
        uuid_ = "arbiter-%s" % self.node_id
        self._factory = txredisapi.RedisFactory(
            uuid_, db, 1, isLazy=True, password=password, replyTimeout=self.timeout,
            convertNumbers=False)
        self._tune(self._factory)
        self._factory.startConnecting(endpoint)
        self._redis = self._factory.handler
        # the first connection: the first heartbeat runs at once
        self._factory.deferred.addCallback(lambda _: self.heartbeat()).addErrback(
            lambda f: None)
        sub = self._sub_factory = txredisapi.SubscriberFactory(isLazy=True)
        sub.protocol = _Subscriber
        sub.password = password
        sub.directory = self
        self._tune(sub)
        sub.startConnecting(redis_endpoint(self.config.redis, self.reactor, self.timeout)[0])
        self._beat = LoopingCall(self.heartbeat)
        self._beat.clock = self.reactor
        self._beat.start(self.config.cluster_heartbeat, now=True)
        log.info("cluster node {node} at {url}, Redis {redis}", node=self.node_id,
                 url=self.public_url, redis=self.config.redis)

    @staticmethod
    def _tune(factory):
        # come back within a couple of seconds of Redis coming back (the library's
        # own backoff reaches 10 s, as long as a claim lives)
        factory.initialDelay = 0.2
        factory.maxDelay = 2.0

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._beat is not None and self._beat.running:
            self._beat.stop()
        try:
            if self.reachable:
                # leave at once: the other nodes stop placing rooms here
                yield self._call("eval", "return redis.call('DEL', KEYS[1], KEYS[2])",
                                 [node_key(self.node_id), rooms_key(self.node_id)])
                for room in self.service.rooms:
                    yield self._call("eval", RELEASE, [room_key(room.name), COUNTS],
                                     [self.node_id])
        except Exception:
            pass
        for factory in (self._factory, self._sub_factory):
            if factory is not None:
                try:
                    yield factory.disconnect()
                except Exception:
                    pass

    # -- Redis calls: asynchronous, with a deadline ------------------------------------
    def _call(self, method, *args):
        """One Redis command; fails with DirectoryUnavailable when Redis is not
        connected or does not answer within ``redis_timeout``."""
        if self._factory is None:
            return defer.fail(DirectoryUnavailable("the node is not running"))
        if not self._factory.size and self.reachable is not None:
            # connected before and lost since: fail at once, don't queue behind a
            # reconnection (at start, calls wait for the first connection, within the
            # deadline)
            return defer.fail(DirectoryUnavailable("Redis is not reachable"))
        self.commands += 1
        out = defer.Deferred()
        timer = self.reactor.callLater(self.timeout, self._late, out)

        def done(result):
            if timer.active():
                timer.cancel()
            if not out.called:
                out.callback(result)

        def failed(failure):
            if timer.active():
                timer.cancel()
            if not out.called:
                out.errback(DirectoryUnavailable("Redis: %s" % failure.getErrorMessage()))
        try:
            d = getattr(self._redis, method)(*args)
        except Exception as e:
            timer.cancel()
            return defer.fail(DirectoryUnavailable("Redis: %s" % e))
        d.addCallbacks(done, failed)
        return out

    def _late(self, out):
        if not out.called:
            out.errback(DirectoryUnavailable("Redis did not answer within %g s" % self.timeout))

    # -- the heartbeat ---------------------------------------------------------------
    def card(self):
        now = time.monotonic()
        cpu = sum(os.times()[:2])
        then, cpu_then = self._cpu
        if now - then >= 0.5:
            self._cpu_share = round((cpu - cpu_then) / (now - then), 3)
            self._cpu = (now, cpu)
        rooms = list(self.service.rooms)
        return {"id": self.node_id, "url": self.public_url,
                "players": sum(r.player_count + r.spectator_count for r in rooms),
                "rooms": len(rooms), "cpu": self._cpu_share, "pid": os.getpid(),
                "host": socket.gethostname(), "at": round(self.reactor.seconds(), 3)}

    def _room_list(self):
        return [dict(r.describe(), node=self.node_id, ws_url=self.public_url)
                for r in self.service.rooms]

    def heartbeat(self):
        """Write this node's card, rooms and claims; read the live nodes. One at a time:
        while one waits for a slow Redis, the next is skipped."""
        if self._beating is not None:
            return self._beating
        if self._factory is None or not self._factory.size:
            if self.reachable is not None:       # not before the first connection
                self._unreachable("Redis is not connected")
            return None
        names = [r.name for r in self.service.rooms]
        d = self._call("eval", HEARTBEAT, [], [self.node_id, json.dumps(self.card()),
                                              json.dumps(self._room_list()), self.ttl_ms]
                       + names)
        d.addCallbacks(self._beat_done, lambda f: self._unreachable(f.getErrorMessage()))

        def over(_):
            self._beating = None
        d.addBoth(over)
        self._beating = d
        return d

    @defer.inlineCallbacks
    def fresh_beat(self):
        """A heartbeat that starts now (after the one in flight, if any)."""
        while self._beating is not None:
            wait = defer.Deferred()
            self._beating.addBoth(lambda r, w=wait: (w.callback(None), r)[1])
            yield wait
        yield self.heartbeat()

    def _beat_done(self, result):
        cards, conflicts = result
        nodes = {}
        for raw in cards:
            try:
                card = json.loads(raw)
                nodes[card["id"]] = card
            except (ValueError, KeyError, TypeError):
                continue
        self.nodes = nodes
        now = self.reactor.seconds()
        self._progress = {n: (c.get("at"), now if self._progress.get(n, (None,))[0]
                              != c.get("at") else self._progress[n][1])
                          for n, c in nodes.items()}
        if self.reachable is False:
            log.info("Redis is reachable again: node {node} registered with its {n} rooms",
                     node=self.node_id, n=len(self.service.rooms))
        self.reachable = True
        for name, owner in zip(conflicts[::2], conflicts[1::2]):
            room = self.service.rooms.get(name)
            card = nodes.get(owner)
            if room is None or card is None:
                continue         # the other claim is a dead node's: it expires, we retake it
            self.service.evict(room, card["url"])

    def _unreachable(self, why):
        if self.reachable is not False:
            log.warn("Redis unreachable ({why}): rooms on this node go on; new rooms that "
                     "need placing are refused until it is back", why=why)
        self.reachable = False

    # -- IDirectory ----------------------------------------------------------------------
    def stopped_nodes(self):
        """Nodes whose card has not changed for three heartbeats: they have stopped,
        though their cards have not expired yet; placement leaves them out."""
        return [n for n in self.nodes if not self._live(n)]

    def _live(self, node_id):
        """A node whose card changed within the last three heartbeats."""
        if node_id == self.node_id:
            return True
        seen = self._progress.get(node_id)
        return seen is not None and \
            seen[1] >= self.reactor.seconds() - 3 * self.config.cluster_heartbeat

    @defer.inlineCallbacks
    def _place(self, name, mode):
        owner, placed = yield self._call("eval", PLACE, [room_key(name), COUNTS],
                                         [self.ttl_ms, mode, self.node_id]
                                         + self.stopped_nodes())
        return (owner or None), bool(placed)

    @defer.inlineCallbacks
    def place(self, name, create=True):
        owner, _ = yield self._place(name, "create" if create else "find")
        if owner is None:
            return False
        if owner == self.node_id:
            return None
        card = self.nodes.get(owner)
        if card is None:
            # a node that registered since this node's last heartbeat: read its card
            raw = yield self._call("get", node_key(owner))
            card = json.loads(raw) if raw else None
        elif not self._live(owner):
            card = None
        if card is None:
            # never send a client to a node that has stopped: tell it to come back
            raise DirectoryUnavailable(
                "room %s is held by node %s, which has stopped answering (its claim "
                "expires within %g s)" % (json.dumps(name), owner, self.config.cluster_ttl))
        return card["url"]

    def room_opened(self, room):
        pass                     # claimed by place() or create(); listed at the next beat

    def room_closed(self, room):
        self._call("eval", RELEASE, [room_key(room.name), COUNTS], [self.node_id]).addErrback(
            lambda f: None)      # if Redis is away the claim simply expires

    @defer.inlineCallbacks
    def list_rooms(self):
        rooms = self._room_list()
        try:
            lists = yield self._call("eval", LIST, [], [self.node_id] + self.stopped_nodes())
        except DirectoryUnavailable as e:
            self.failures.warn("list", "listing other nodes' rooms failed: {why}", why=str(e))
            return rooms, False
        for raw in lists:
            try:
                rooms.extend(json.loads(raw))
            except ValueError:
                pass
        return rooms, True

    @defer.inlineCallbacks
    def create(self, room_id, mode, options):
        owner, placed = yield self._place(room_id, "create")
        if not placed:
            raise Refused(ROOM_EXISTS, "a room with id %s exists already" % json.dumps(room_id))
        try:
            out = yield self._run(owner, {"op": "create", "room": room_id, "mode": mode,
                                          "options": options})
        except Exception:
            # the chosen node did not create it: give the name back at once
            self._call("eval", RELEASE, [room_key(room_id), COUNTS], [owner]).addErrback(
                lambda f: None)
            raise
        return out

    @defer.inlineCallbacks
    def at_owner(self, room_id, op, args):
        owner, _ = yield self._place(room_id, "find")
        if owner is None:
            raise Refused(UNKNOWN_ROOM, "no room with id %s" % json.dumps(room_id))
        out = yield self._run(owner, {"op": op, "room": room_id, "args": args})
        return out

    # -- API operations on the owning node -------------------------------------------------
    def _run(self, owner, request):
        if owner == self.node_id:
            return self.perform(request)
        return self._rpc(owner, request)

    @defer.inlineCallbacks
    def perform(self, request):
        """Run an API operation on this node's room; the room list in Redis is written
        before the answer, so a listing right after it sees the change."""
        if request["op"] == "create":
            out = self.service.api_create(request["room"], request["mode"], request["options"])
        else:
            out = self.service.api_op(request["op"], request["room"], request.get("args", {}))
        if request["op"] in ("create", "delete"):
            yield self.fresh_beat()
        out["node"] = self.node_id
        out["ws_url"] = self.public_url
        return out

    def _rpc(self, owner, request):
        rid = uuid.uuid4().hex
        request = dict(request, id=rid, reply=self.node_id)
        out = defer.Deferred()
        self._pending[rid] = out
        timer = self.reactor.callLater(2 * self.timeout, self._rpc_late, rid, owner)

        def published(receivers):
            if not receivers:
                self._rpc_done(rid, failure=DirectoryUnavailable(
                    "node %s does not answer (its claims expire within %g s)"
                    % (owner, self.config.cluster_ttl)))

        def cleanup(result):
            if timer.active():
                timer.cancel()
            return result
        out.addBoth(cleanup)
        self._call("publish", channel(owner), json.dumps(request)).addCallbacks(
            published, lambda f: self._rpc_done(rid, failure=f.value))
        return out

    def _rpc_late(self, rid, owner):
        self._rpc_done(rid, failure=DirectoryUnavailable(
            "node %s did not answer within %g s" % (owner, 2 * self.timeout)))

    def _rpc_done(self, rid, result=None, failure=None):
        d = self._pending.pop(rid, None)
        if d is None:
            return
        if failure is not None:
            d.errback(failure)
        else:
            d.callback(result)

    def rpc_message(self, raw):
        """A message on this node's channel: a request to run, or a reply."""
        try:
            msg = json.loads(raw)
        except (TypeError, ValueError):
            self.failures.warn("rpc", "a message on the node's channel is not JSON")
            return
        if "re" in msg:
            if "ok" in msg:
                self._rpc_done(msg["re"], result=msg["ok"])
            elif "refused" in msg:
                code, text = msg["refused"]
                self._rpc_done(msg["re"], failure=Refused(code, text))
            else:
                self._rpc_done(msg["re"], failure=DirectoryUnavailable(
                    "node %s failed: %s" % (msg.get("node"), msg.get("error"))))
            return
        d = defer.maybeDeferred(self.perform, msg)

        def reply(answer):
            self._call("publish", channel(msg["reply"]),
                       json.dumps(dict(answer, re=msg["id"], node=self.node_id))).addErrback(
                lambda f: None)

        def refused(failure):
            if failure.check(Refused):
                return {"refused": [failure.value.code, failure.value.msg]}
            self.failures.failure("rpc " + str(msg.get("op")), "API operation {op} failed",
                                  op=msg.get("op"), failure=failure)
            return {"error": failure.getErrorMessage()}
        d.addCallbacks(lambda out: {"ok": out}, refused).addCallback(reply)
