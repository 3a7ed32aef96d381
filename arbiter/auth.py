"""Who a player is: the authentication hook (docs/LOBBY.md).

A game with its own accounts plugs an *authenticator* into Arbiter
(``twistd arbiter --auth module:callable``, or ``build(config, authenticator=...)``)::

    def authenticate(credentials, request):
        # credentials: the string the client presented (hello's "auth", or "auth" in
        # POST /api/rooms/{id}/join), or None when it presented none
        # request: an AuthRequest (room, name, via "ws" or "http", peer)
        ...
        return Identity(user="u-1842", name="Alice")    # or a Deferred that fires with one
        raise AuthRefused("expired session")              # or a Deferred that fails so

The user id is stable: the same user gets the same ``user`` in every room and every
session, and a second connection of a user takes over the first, as a reconnection does.
Without an authenticator every player is a guest, exactly as in protocol v1.

:class:`HmacTokens` is a real one: tokens that the game's own backend signs with a shared
secret (HMAC-SHA256), carrying the user id, the display name and an expiry. It needs no
call back to the backend. ``python -m arbiter.auth mint --user u-1 --name Alice`` makes one
(with ``ARBITER_AUTH_SECRET`` set), for trying it out.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import sys
import time
from dataclasses import dataclass

USER_RE = re.compile(r"^[A-Za-z0-9_.@:-]{1,64}$")
MAX_CREDENTIALS = 4096


class AuthRefused(Exception):
    """The authenticator refuses these credentials; the message is shown to the client."""


@dataclass(frozen=True)
class Identity:
    """Who the credentials belong to: a stable user id and a display name."""

    user: str
    name: str

    @classmethod
    def check(cls, value):
        """An Identity from what an authenticator returned (an Identity or a mapping with
        ``user`` and ``name``); ValueError when it is not one."""
        if isinstance(value, cls):
            user, name = value.user, value.name
        elif isinstance(value, dict):
            user, name = value.get("user"), value.get("name")
        else:
            raise ValueError("an authenticator must return an Identity, got %r" % (value,))
        if not isinstance(user, str) or not USER_RE.match(user):
            raise ValueError("user must be 1-64 characters of [A-Za-z0-9_.@:-], got %r"
                             % (user,))
        if not isinstance(name, str) or not 1 <= len(name) <= 32 or any(
                ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
            raise ValueError("name must be 1-32 characters without control characters, "
                             "got %r" % (name,))
        return cls(user, name)


@dataclass(frozen=True)
class AuthRequest:
    """What an authenticator may look at besides the credentials."""

    room: str                   # the room asked for
    name: str = None            # the name the client asked for, if any
    via: str = "ws"             # "ws" (hello) or "http" (a join request)
    peer: str = ""              # the client's address, as Twisted gives it


def load(spec):
    """The authenticator named ``module:callable``; ValueError when it cannot be loaded.
    If the object has a ``validate()`` method it is called now, so that a missing secret
    stops the server at start rather than refusing every player later."""
    import importlib
    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError("--auth %s: %s" % (spec, e))
    if not callable(obj):
        raise ValueError("--auth %s is not callable" % spec)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


# -- an authenticator: HMAC-signed tokens from the game's backend ---------------------------
def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class HmacTokens:
    """Tokens ``<payload>.<signature>``: the payload is base64url JSON
    ``{"sub": user, "name": name, "exp": unix seconds}``, the signature base64url
    HMAC-SHA256 of the payload's base64url text with the shared secret. Any backend can
    issue them (a few lines in any language: docs/LOBBY.md has them); Arbiter checks the
    signature, the expiry (with ``leeway`` seconds for clocks that disagree) and the
    fields."""

    def __init__(self, secret, leeway=30.0, clock=time.time):
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if len(secret) < 16:
            raise ValueError("the HMAC secret must be at least 16 bytes")
        self.secret = secret
        self.leeway = leeway
        self.clock = clock

    def mint(self, user, name, ttl=3600.0):
        """A token for ``user`` called ``name``, valid for ``ttl`` seconds (what the game's
        backend does; here for tests and the command line)."""
        Identity.check({"user": user, "name": name})
        payload = _b64(json.dumps({"sub": user, "name": name, "exp": int(self.clock() + ttl)},
                                  separators=(",", ":")).encode("utf-8"))
        return payload + "." + _b64(hmac.new(self.secret, payload.encode("ascii"),
                                             hashlib.sha256).digest())

    def __call__(self, credentials, request=None):
        if credentials is None:
            raise AuthRefused("this server needs a login: send your token as hello's auth")
        if not isinstance(credentials, str) or len(credentials) > MAX_CREDENTIALS \
                or credentials.count(".") != 1:
            raise AuthRefused("malformed token")
        payload, sig = credentials.split(".")
        want = hmac.new(self.secret, payload.encode("ascii", "replace"),
                        hashlib.sha256).digest()
        try:
            given = _unb64(sig)
            body = json.loads(_unb64(payload))
        except (ValueError, UnicodeDecodeError):
            raise AuthRefused("malformed token")
        if not hmac.compare_digest(want, given):
            raise AuthRefused("bad token signature")
        if not isinstance(body, dict) or not isinstance(body.get("exp"), int) \
                or isinstance(body.get("exp"), bool):
            raise AuthRefused("malformed token")
        if body["exp"] + self.leeway < self.clock():
            raise AuthRefused("token expired")
        try:
            return Identity.check({"user": body.get("sub"), "name": body.get("name")})
        except ValueError as e:
            raise AuthRefused("malformed token: %s" % e)


_FROM_ENV = []


def _from_env():
    if not _FROM_ENV:
        secret = os.environ.get("ARBITER_AUTH_SECRET", "")
        if not secret:
            raise ValueError("arbiter.auth:hmac_tokens needs the shared secret in the "
                             "ARBITER_AUTH_SECRET environment variable")
        _FROM_ENV.append(HmacTokens(secret))
    return _FROM_ENV[0]


def hmac_tokens(credentials, request=None):
    """``--auth arbiter.auth:hmac_tokens``: :class:`HmacTokens` with the secret from the
    ``ARBITER_AUTH_SECRET`` environment variable."""
    return _from_env()(credentials, request)


hmac_tokens.validate = _from_env


def main(argv=None):
    """``python -m arbiter.auth mint --user U --name N [--ttl S]``: print a token signed
    with ``ARBITER_AUTH_SECRET`` (what the game's backend would issue)."""
    p = argparse.ArgumentParser(prog="python -m arbiter.auth", description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mint", help="print a token")
    m.add_argument("--user", required=True)
    m.add_argument("--name", required=True)
    m.add_argument("--ttl", type=float, default=3600.0)
    a = p.parse_args(argv)
    try:
        print(_from_env().mint(a.user, a.name, a.ttl))
    except ValueError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
