"""The JSON API under /api (docs/HTTP.md): rooms, the lobby, join tokens.

    POST   /api/rooms              create a room (API key)          201
    GET    /api/rooms              the lobby                        200
    GET    /api/rooms/{id}         one room                         200
    DELETE /api/rooms/{id}         end a room (API key)             200
    POST   /api/rooms/{id}/join    a signed join token              200
    POST   /api/match              quick match: a seat in an open room  200
    GET    /api/lan                servers heard on the LAN         200

Every answer is JSON; every error is ``{"error": code, "message": text}``
with a fitting status, and the message names the field, the value and what
was expected.
"""

import hmac
import json
import math
import os
import uuid

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web import resource, server

from arbiter import codes, phases
from arbiter.interfaces import DirectoryUnavailable
from arbiter.schema import ROOM_RE, WireError
from arbiter.auth import AuthRequest
from arbiter.room import JoinError
from arbiter.service import API_KEY_REQUIRED, ROOM_EXISTS, UNKNOWN_ROOM, Refused

log = Logger()

MODES = ("realtime", "lockstep")
MAX_ROOM_PLAYERS = 64
REFUSED_STATUS = {codes.ROOM_ENDED: 410, codes.ROOM_FULL: 409, UNKNOWN_ROOM: 404,
                  ROOM_EXISTS: 409, API_KEY_REQUIRED: 401}
JOIN_ERROR_STATUS = {codes.UNAUTHORIZED: 401, codes.UNAVAILABLE: 503}
TAG_RE = ROOM_RE          # a quick match's tag: 1-64 characters of [A-Za-z0-9_-]
MATCH_TRIES = 8           # open rooms a quick match tries before it makes one


class ApiError(Exception):
    """An HTTP error answer: status, code and a message naming what was wrong."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _show(v):
    r = json.dumps(v) if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _bad(field, value, expected):
    return ApiError(400, "bad_request", "%s: expected %s, got %s" % (field, expected, _show(value)))


def _int(body, field, lo, hi, default=None):
    v = body.get(field, default)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _bad(field, v, "an integer in [%d, %d]" % (lo, hi))
    return v


def _number(body, field, lo, hi):
    v = body.get(field)
    if v is None:
        return None
    if (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
            or not lo <= v <= hi):
        raise _bad(field, v, "a number in [%s, %s]" % (lo, hi))
    return v


def _name(body):
    v = body.get("name")
    if v is None:
        return None
    if (not isinstance(v, str) or not 1 <= len(v) <= 32
            or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in v)):
        raise _bad("name", v, "1-32 characters without control characters")
    return v


def _known(body, fields):
    """ApiError 400 for the first field of ``body`` not in ``fields``."""
    unknown = sorted(set(body) - fields)
    if unknown:
        raise _bad(unknown[0], body[unknown[0]], "no such field (known: %s)"
                   % ", ".join(sorted(fields)))


def _mode(body):
    mode = body.get("mode", "realtime")
    if mode not in MODES:
        raise _bad("mode", mode, "'realtime' or 'lockstep'")
    return mode


def _game(body, mode):
    """A lockstep room's ``game`` (default "demo"); a realtime room takes none."""
    if mode == "realtime":
        if "game" in body:
            raise _bad("game", body["game"], "no game for a realtime room (realtime rooms "
                       "run the server's game, chosen with --game)")
        return None
    game = body.get("game", "demo")
    if not isinstance(game, str) or not ROOM_RE.match(game) or len(game) > 32:
        raise _bad("game", game, "1-32 characters of [A-Za-z0-9_-]")
    return game


def _header(request, name):
    v = request.getHeader(name)
    return v.decode("latin-1") if isinstance(v, bytes) else v


CREATE_FIELDS = {"mode", "id", "max_players", "min_players", "game", "seed", "config", "setup",
                 "turn_ms", "turn_timeout", "drop_after", "input_delay", "private",
                 "self_service"}
JOIN_FIELDS = {"name", "role", "auth"}
MATCH_FIELDS = {"mode", "game", "max_players", "tag", "name", "auth"}


class ApiResource(resource.Resource):
    """One leaf for all of /api: it routes on the path and the method."""

    isLeaf = True

    def __init__(self, service):
        super().__init__()
        self.service = service
        self.config = service.config
        # quick match in a cluster: one request at a time per match on this node, and the
        # room this node filled last for it (fresher than the cluster's room list)
        self._match_locks = {}
        self._match_last = {}

    # -- plumbing ------------------------------------------------------------------
    def render(self, request):
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        try:
            answer = self._route(request)
        except Exception as e:
            return self._respond(request, self._failed(e, request))
        if not isinstance(answer, Deferred):
            return self._respond(request, answer)
        # cluster mode: the answer comes from Redis or the owning node
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def done(answer):
            if not gone:
                request.write(self._respond(request, answer))
                request.finish()

        answer.addErrback(lambda f: self._failed(f.value, request)).addCallback(done)
        return server.NOT_DONE_YET

    def _failed(self, e, request):
        if isinstance(e, Refused):
            e = ApiError(REFUSED_STATUS.get(e.code, 409), e.code, e.msg)
        elif isinstance(e, JoinError) and e.code in JOIN_ERROR_STATUS:
            e = ApiError(JOIN_ERROR_STATUS[e.code], e.code, e.msg,
                         {b"retry-after": b"1"} if e.code == codes.UNAVAILABLE else None)
        elif isinstance(e, DirectoryUnavailable):
            e = ApiError(503, codes.UNAVAILABLE, "the cluster cannot do this now: %s" % e,
                         {b"retry-after": b"1"})
        if isinstance(e, ApiError):
            for k, v in e.headers.items():
                request.setHeader(k, v)
            return e.status, {"error": e.code, "message": e.message}
        log.failure("API request failed: {method} {uri}", method=request.method,
                    uri=request.uri)
        return 500, {"error": "internal", "message": "internal server error"}

    def _respond(self, request, answer):
        status, body = answer
        request.setResponseCode(status)
        if request.method == b"HEAD":
            return b""
        return json.dumps(body).encode("utf-8") + b"\n"

    def _route(self, request):
        path = [p.decode("utf-8", "replace") for p in request.postpath]
        while path and path[-1] == "":
            path.pop()
        method = request.method.decode("ascii", "replace")
        if method == "HEAD":
            method = "GET"
        if not path:
            return self._allow(method, ("GET",)) or (200, {"rooms": "/api/rooms"})
        if path == ["lan"]:
            self._allow(method, ("GET",))
            return self._lan()
        if path == ["match"]:
            self._allow(method, ("POST",))
            return self._match(request)
        if path[0] != "rooms" or len(path) > 3:
            raise ApiError(404, "not_found", "no API resource at %s"
                           % request.path.decode("utf-8", "replace"))
        if len(path) == 1:
            self._allow(method, ("GET", "POST"))
            if method == "GET":
                return self._list()
            return self._create(request)
        room_id = path[1]
        if len(path) == 3:
            if path[2] != "join":
                raise ApiError(404, "not_found", "no API resource at %s"
                               % request.path.decode("utf-8", "replace"))
            self._allow(method, ("POST",))
            return self._join(request, room_id)
        self._allow(method, ("GET", "DELETE"))
        if method == "DELETE":
            self._authorize(request)
            return self._at_owner(request, "delete", room_id, {}, 200, urls=False)
        return self._at_owner(request, "show", room_id, {}, 200)

    def _lan(self):
        """GET /api/lan: the Arbiter servers this one hears on the local network
        (``--lan-announce``; docs/LAN.md)."""
        lan = getattr(self.service, "lan", None)
        if lan is None:
            return 200, {"listening": False, "servers": []}
        return 200, {"listening": True, "servers": lan.servers()}

    # -- one node, or the whole cluster ---------------------------------------------------
    def _list(self):
        directory = self.service.directory
        if directory is None:
            rooms = [r.describe() for r in self.service.rooms if not r.private]
            return 200, {"rooms": sorted(rooms, key=lambda d: d["id"])}

        def answer(listed):
            rooms, complete = listed
            out = {"rooms": sorted((r for r in rooms if not r.get("private")),
                                   key=lambda d: d["id"])}
            if not complete:
                out["complete"] = False      # Redis is away: this node's rooms only
            return 200, out
        return directory.list_rooms().addCallback(answer)

    def _at_owner(self, request, op, room_id, args, status, urls=True):
        """Run the service's ``op`` on the room's node: here, or through the directory."""
        def answer(out):
            if urls:
                out.update(self._urls(request, room_id, out.pop("ws_url", None)))
            else:
                out.pop("ws_url", None)
            return status, out
        directory = self.service.directory
        if directory is None:
            return answer(self.service.api_op(op, room_id, args))
        return directory.at_owner(room_id, op, args).addCallback(answer)

    def _allow(self, method, allowed):
        if method not in allowed:
            raise ApiError(405, "method_not_allowed", "%s is not allowed here; use %s"
                           % (method, " or ".join(allowed)),
                           {b"allow": ", ".join(allowed).encode()})
        return None

    def _key_given(self, request):
        """True when the request carries the right API key; False when it carries none
        (or the server has none); ApiError 403 for a wrong one."""
        if not self.config.api_key:
            return False
        try:
            self._authorize(request)
        except ApiError as e:
            if e.status == 401:
                return False
            raise
        return True

    def _authorize(self, request):
        key = self.config.api_key
        if not key:
            return
        given = _header(request, b"x-api-key")
        auth = _header(request, b"authorization")
        if given is None and auth is not None:
            scheme, _, rest = auth.partition(" ")
            if scheme.lower() == "bearer":
                given = rest.strip()
        if not given:
            raise ApiError(401, "api_key_required", "this request needs the API key in "
                           "'Authorization: Bearer <key>' or 'X-Api-Key'",
                           {b"www-authenticate": b'Bearer realm="arbiter"'})
        if not hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8")):
            raise ApiError(403, "bad_api_key", "the API key does not match")

    def _body(self, request):
        cap = self.config.max_api_body
        length = request.getHeader(b"content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            raise ApiError(413, "body_too_large", "the body is %s bytes, at most %d allowed"
                           % (length, cap))
        raw = request.content.read(cap + 1) if request.content is not None else b""
        if len(raw) > cap:
            raise ApiError(413, "body_too_large", "the body is over %d bytes" % cap)
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, "bad_json", "the body is not JSON: %s" % e)
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object, got %s"
                           % type(body).__name__)
        return body

    def _urls(self, request, room_id, ws_url=None):
        """The room's URLs; ``ws_url`` is the owning node's in cluster mode, else the
        socket of the host the request reached."""
        host = (_header(request, b"host") or "127.0.0.1").strip()
        secure = request.isSecure()
        return {"url": "/api/rooms/%s" % room_id,
                "join_url": "%s://%s/api/rooms/%s/join" % ("https" if secure else "http", host,
                                                           room_id),
                "ws_url": ws_url or "%s://%s/ws" % ("wss" if secure else "ws", host)}

    # -- the resources ----------------------------------------------------------------
    def _create(self, request):
        self._authorize(request)
        body = self._body(request)
        _known(body, CREATE_FIELDS)
        mode = _mode(body)
        room_id = body.get("id")
        if room_id is None:
            room_id = "r" + os.urandom(5).hex()
        elif not isinstance(room_id, str) or not ROOM_RE.match(room_id):
            raise _bad("id", room_id, "1-64 characters of [A-Za-z0-9_-]")
        max_players = _int(body, "max_players", 1, MAX_ROOM_PLAYERS)
        min_players = _int(body, "min_players", 1,
                           max_players or self.config.world.max_players, 1)
        seed = _int(body, "seed", 0, codes.MAX_INT)
        try:
            config = phases.check_config("config", body.get("config", {}))
        except WireError as e:
            raise ApiError(400, "bad_request", e.msg)
        options = {}
        if max_players is not None:
            options["max_players"] = max_players
        if seed is not None:
            options["seed"] = seed
        if mode == "lockstep":
            game = _game(body, mode)
            if "setup" in body and body["setup"] is not True:
                raise _bad("setup", body["setup"], "true (a lockstep room starts in setup)")
            options.update(game=game, setup=config, min_players=min_players)
            turn_ms = _int(body, "turn_ms", 0, 1000)
            if turn_ms is not None:
                options["turn_ms"] = turn_ms
            for field, lo, hi in (("turn_timeout", 0.001, 60), ("drop_after", 0, 86400)):
                v = _number(body, field, lo, hi)
                if v is not None:
                    options[field] = v
            delay = _int(body, "input_delay", 1, 8)
            if delay is not None:
                options["input_delay"] = delay
        else:
            _game(body, mode)
            for field in ("turn_ms", "turn_timeout", "drop_after", "input_delay"):
                if field in body:
                    raise _bad(field, body[field], "no %s for a realtime room (it is a "
                               "lockstep option)" % field)
            setup = body.get("setup", False)
            if not isinstance(setup, bool):
                raise _bad("setup", setup, "true or false")
        for field in ("private", "self_service"):
            v = body.get(field, False)
            if not isinstance(v, bool):
                raise _bad(field, v, "true or false")
            if v:
                options[field] = True
        if mode == "realtime" and body.get("setup", False):
            options["lobby"] = [config, min_players]

        def created(out):
            out.update(self._urls(request, room_id, out.pop("ws_url", None)))
            request.setHeader(b"location", out["url"].encode("utf-8"))
            return 201, out
        directory = self.service.directory
        if directory is None:
            return created(self.service.api_create(room_id, mode, options))
        return directory.create(room_id, mode, options).addCallback(created)

    def _join(self, request, room_id):
        body = self._body(request)
        _known(body, JOIN_FIELDS)
        name = _name(body)
        role = body.get("role", "player")
        if role not in ("player", "spectator"):
            raise _bad("role", role, "'player' or 'spectator'")
        args = {"name": name, "role": role, "key_ok": self._key_given(request)}

        def answer(out):
            out["ws_url"] = self._urls(request, room_id, out.get("ws_url"))["ws_url"]
            return 200, out

        def join(args):
            if args["name"] is None:
                args["name"] = "guest-" + uuid.uuid4().hex[:8]
            directory = self.service.directory
            if directory is None:
                return answer(self.service.api_op("join", room_id, args))
            return directory.at_owner(room_id, "join", args).addCallback(answer)
        return self._identified(request, body, room_id, args, join)

    def _identified(self, request, body, room_id, args, then):
        """With an authenticator, ``body["auth"]`` checked first: ``args`` get the user's
        id and name (a Deferred); without one, ``then(args)`` at once."""
        credentials = body.get("auth")
        if credentials is not None and (not isinstance(credentials, str)
                                        or not 1 <= len(credentials) <= 4096):
            raise _bad("auth", credentials, "a string of 1-4096 characters")
        if self.service.authenticator is None:
            return then(args)
        addr = request.getClientAddress()       # as a WebSocket's peer is written
        peer = "tcp4:%s:%s" % (getattr(addr, "host", addr), getattr(addr, "port", ""))
        d = self.service.authenticate(credentials, AuthRequest(
            room=room_id, name=args.get("name"), via="http", peer=peer))

        def identified(identity):
            args["user"] = identity.user
            args["name"] = identity.name
            return then(args)
        return d.addCallback(identified)

    # -- quick match ------------------------------------------------------------------------
    def _match(self, request):
        """POST /api/match: a join token for a seat in an open quick-match room that fits
        (mode, game, max_players, tag), or in a new one. Rooms are filled fullest first;
        the seat is held by the token, so concurrent requests never overfill a room."""
        body = self._body(request)
        _known(body, MATCH_FIELDS)
        mode = _mode(body)
        game = _game(body, mode)
        max_players = _int(body, "max_players", 1, MAX_ROOM_PLAYERS)
        if max_players is None:
            max_players = self.config.world.max_players
        tag = body.get("tag")
        if tag is not None and (not isinstance(tag, str) or not TAG_RE.match(tag)
                                or len(tag) > 32):
            raise _bad("tag", tag, "1-32 characters of [A-Za-z0-9_-]")
        match = {"mode": mode, "tag": tag, "max_players": max_players, "game": game}
        args = {"name": _name(body), "role": "player", "key_ok": True, "match": match}
        return self._identified(request, body, "match", args,
                                lambda args: self._place_match(request, match, args))

    def _place_match(self, request, match, args):
        if args["name"] is None:
            args["name"] = "guest-" + uuid.uuid4().hex[:8]
        directory = self.service.directory

        def fits(d):
            return (d.get("match") and not d.get("private") and d["mode"] == match["mode"]
                    and d.get("tag") == match["tag"]
                    and d["max_players"] == match["max_players"]
                    and (d["mode"] == "realtime" and d["phase"].startswith("running")
                         or d["mode"] == "lockstep" and d["phase"] == "setup"
                         and d.get("game") == match["game"])
                    and d["players"] + d.get("reserved", 0) < d["max_players"])

        key = json.dumps(match, sort_keys=True)

        def answer(out, created):
            self._match_last[key] = out["room"]
            out["ws_url"] = self._urls(request, out["room"], out.get("ws_url"))["ws_url"]
            out["created"] = created
            return 200, out

        def create(rounds_left=3):
            room_id = "m-" + os.urandom(5).hex()
            options = {"match": {"tag": match["tag"]}, "max_players": match["max_players"]}
            if match["mode"] == "lockstep":
                options.update(game=match["game"], setup={}, min_players=match["max_players"])
            if directory is None:
                self.service.api_create(room_id, match["mode"], options)
                return answer(self.service.api_op("join", room_id, args), True)
            d = directory.create(room_id, match["mode"], options)
            d.addCallback(lambda _: directory.at_owner(room_id, "join", args))
            d.addCallback(answer, True)

            def taken(failure):
                # other requests filled the new room first (its node saw it before this
                # one came back): look again
                failure.trap(Refused)
                if failure.value.code != codes.ROOM_FULL or not rounds_left:
                    return failure
                return directory.list_rooms().addCallback(listed, rounds_left - 1)
            return d.addErrback(taken)

        if directory is None:
            # one process: listing and admitting happen in one go, nothing interleaves
            rooms = sorted((r.describe() for r in self.service.rooms), key=lambda d: (
                -d["players"] - d.get("reserved", 0), d["id"]))
            for d in rooms:
                if fits(d):
                    try:
                        return answer(self.service.api_op("join", d["id"], args), False)
                    except Refused as e:
                        if e.code not in (codes.ROOM_FULL, UNKNOWN_ROOM, codes.ROOM_ENDED):
                            raise
            return create()

        # a cluster: the list is a hint; each room's node admits atomically, and a room
        # that filled up meanwhile answers room_full, so the next one is tried
        def listed(result, rounds_left=3):
            rooms, _ = result
            # this node's own rooms as they are now (the list is up to a heartbeat old)
            fresh = {d["id"]: d for d in rooms}
            fresh.update((r.name, r.describe()) for r in self.service.rooms)
            candidates = sorted((d for d in fresh.values() if fits(d)),
                                key=lambda d: (-d["players"] - d.get("reserved", 0),
                                               d["id"]))[:MATCH_TRIES]
            last = self._match_last.get(key)
            if last is not None and last not in [d["id"] for d in candidates]:
                candidates.insert(0, {"id": last})   # (too new for the list: try it first)
            return try_next(None, candidates, rounds_left)

        def try_next(_, candidates, rounds_left):
            if not candidates:
                return create(rounds_left)
            d = directory.at_owner(candidates[0]["id"], "join", args)
            d.addCallback(answer, False)

            def full(failure):
                failure.trap(Refused)
                if failure.value.code not in (codes.ROOM_FULL, UNKNOWN_ROOM,
                                              codes.ROOM_ENDED):
                    return failure
                return try_next(None, candidates[1:], rounds_left)
            return d.addErrback(full)
        lock = self._match_locks.get(key)
        if lock is None:
            lock = self._match_locks[key] = defer.DeferredLock()
        return lock.run(lambda: directory.list_rooms().addCallback(listed))
