"""Signed tokens: HMAC-SHA256 over a small JSON body, bound to a room.

``welcome.token`` (reconnect) and the HTTP join token (docs/HTTP.md) are both
made here. A token is ``base64url(body) + "." + base64url(mac)``; anything
forged, tampered with, expired or for another room fails :meth:`Signer.open`.
"""

import base64
import hashlib
import hmac
import json
import os


class BadToken(Exception):
    """The token is forged, tampered with, expired, or for another room."""


def _b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Signer:
    def __init__(self, secret=b""):
        self.secret = secret or os.urandom(32)

    def seal(self, **body):
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        mac = hmac.new(self.secret, raw, hashlib.sha256).digest()
        return _b64(raw) + "." + _b64(mac)

    def open(self, token, room, now=None):
        """The token's body if it is genuine, for ``room`` and unexpired; else BadToken."""
        try:
            raw_s, mac_s = token.split(".")
            raw, mac = _unb64(raw_s), _unb64(mac_s)
        except (ValueError, AttributeError):
            raise BadToken("malformed token")
        want = hmac.new(self.secret, raw, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, want):
            raise BadToken("token signature does not match")
        body = json.loads(raw)
        if body.get("room") != room:
            raise BadToken("token is for another room")
        exp = body.get("exp")
        if exp is not None and now is not None and now > exp:
            raise BadToken("token expired")
        return body
