"""Change-tracking nested maps that turn into RFC 7386 merge patches.

A :class:`TrackedMap` behaves like a dict whose values are scalars, lists
(treated as immutable leaves: assign a new list to change one) or nested maps
(plain dicts are wrapped on assignment). It records which keys changed since
the last :meth:`TrackedMap.collect`; ``collect()`` returns the merge patch that
turns the state as of the previous collect into the current one, and resets.

``None`` cannot be stored: in a merge patch ``null`` means "delete", so
``m[k] = None`` raises ``TypeError``; use ``del m[k]``.

A tick that changed nothing collects ``{}``; the server then sends no delta
unless the player's ``ack`` moved (see docs/STATE.md).
"""

from collections.abc import MutableMapping

_MISSING = object()


class _Tracked:
    """A plain base class: ``isinstance(x, _Tracked)`` is a fast C check, whereas
    ``isinstance(x, TrackedMap)`` goes through ABCMeta (TrackedMap is a MutableMapping)."""

    __slots__ = ()


class TrackedMap(_Tracked, MutableMapping):
    """A dict that remembers what changed under it, to any depth."""

    __slots__ = ("_data", "_parent", "_key", "_orig", "_dirty", "_notified")

    def __init__(self, initial=None):
        self._data = {}
        self._parent = None
        self._key = None
        # key -> value as of the last collect (plain data), for keys assigned
        # or deleted since then.
        self._orig = {}
        # keys whose nested map changed in place since the last collect.
        self._dirty = set()
        self._notified = False
        if initial:
            for k, v in initial.items():
                self[k] = v

    # -- MutableMapping -------------------------------------------------
    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def __contains__(self, key):
        return key in self._data

    def get(self, key, default=None):
        return self._data.get(key, default)

    def setdefault(self, key, default=None):
        if key not in self._data:
            self[key] = default
        return self._data[key]     # the tracked map a plain dict default became

    def __setitem__(self, key, value):
        if value is None:
            raise TypeError(
                "cannot store None at %r: null means delete in a merge patch; use del" % (key,)
            )
        if isinstance(value, dict):
            value = TrackedMap(value)
        data = self._data
        old = data.get(key, _MISSING)
        if old is value:
            return
        orig = self._orig
        if isinstance(old, _Tracked):
            if key not in orig:
                orig[key] = old._original()
            old._parent = None
        elif key not in orig:
            orig[key] = old
        if isinstance(value, _Tracked):
            if value._parent is not None:
                raise ValueError("a TrackedMap can live in only one place")
            value._clear_marks()   # the whole value goes out with this key
            value._parent = self
            value._key = key
        data[key] = value
        if not self._notified:
            self._mark()

    def set_leaf(self, key, value):
        """``self[key] = value`` for a value that is a number, string, bool or list
        (never None, a dict or a TrackedMap): the same tracking, less work. For
        per-tick hot loops such as a game moving every entity."""
        data = self._data
        orig = self._orig
        if key not in orig:
            old = data.get(key, _MISSING)
            if isinstance(old, _Tracked):
                self[key] = value
                return
            orig[key] = old
        data[key] = value
        if not self._notified:
            self._mark()

    def __delitem__(self, key):
        old = self._data.pop(key)
        if key not in self._orig:
            self._orig[key] = old._original() if isinstance(old, _Tracked) else old
        if isinstance(old, _Tracked):
            old._parent = None
        if not self._notified:
            self._mark()

    def __repr__(self):
        return "TrackedMap(%r)" % (self.snapshot(),)

    def __eq__(self, other):
        if isinstance(other, TrackedMap):
            other = other.snapshot()
        return self.snapshot() == other

    __hash__ = None

    # -- tracking -------------------------------------------------------
    def _mark(self):
        if self._notified:
            return
        self._notified = True
        parent = self._parent
        if parent is not None:
            parent._dirty.add(self._key)
            if not parent._notified:
                parent._mark()

    def _clear_marks(self):
        data = self._data
        for key in self._dirty:
            child = data.get(key)
            if isinstance(child, _Tracked):
                child._clear_marks()
        for key in self._orig:
            child = data.get(key)
            if isinstance(child, _Tracked) and child._notified:
                child._clear_marks()
        self._orig.clear()
        self._dirty.clear()
        self._notified = False

    def _original(self):
        """The map as of the last collect, as plain data (what a client's mirror holds)."""
        if not self._notified:
            return self.snapshot()
        orig = self._orig
        dirty = self._dirty
        out = {}
        for k, v in self._data.items():
            if k in orig:
                continue
            if isinstance(v, _Tracked):
                out[k] = v._original() if k in dirty else v.snapshot()
            else:
                out[k] = v
        for k, before in orig.items():
            if before is not _MISSING:
                out[k] = before
        return out

    def snapshot(self):
        """The whole map as plain dicts and values."""
        out = {}
        for k, v in self._data.items():
            out[k] = v.snapshot() if isinstance(v, _Tracked) else v
        return out

    def collect(self):
        """The merge patch since the last collect; starts a new window."""
        if not self._notified:
            return {}
        return self._collect()

    def _collect(self):
        # the patch and clearing the marks in one pass (the per-tick hot path)
        patch = {}
        orig = self._orig
        data = self._data
        if orig:
            for key, before in orig.items():
                now = data.get(key, _MISSING)
                if now is _MISSING:
                    if before is not _MISSING:
                        patch[key] = None
                elif isinstance(now, _Tracked):
                    snap = now.snapshot()
                    if now._notified:
                        now._clear_marks()
                    if isinstance(before, dict):
                        sub = diff(before, snap)
                        if sub:
                            patch[key] = sub
                    else:
                        patch[key] = snap
                elif before is _MISSING or before != now or type(before) is not type(now):
                    patch[key] = now
        dirty = self._dirty
        if dirty:
            for key in dirty:
                if key in orig:
                    continue
                child = data.get(key)
                if isinstance(child, _Tracked):
                    sub = child._collect() if child._notified else {}
                    if sub:
                        patch[key] = sub
            dirty.clear()
        orig.clear()
        self._notified = False
        return patch


def diff(before, after):
    """The merge patch that turns plain map ``before`` into ``after``."""
    patch = {}
    for k in before:
        if k not in after:
            patch[k] = None
    for k, v in after.items():
        if k not in before:
            patch[k] = v
            continue
        old = before[k]
        if isinstance(v, dict) and isinstance(old, dict):
            sub = diff(old, v)
            if sub:
                patch[k] = sub
        elif old != v or type(old) is not type(v):
            patch[k] = v
    return patch


def apply_merge_patch(target, patch):
    """Apply an RFC 7386 merge patch to plain dict ``target`` in place; return it."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict):
            # the next two levels inline (a client applies every entity of every delta)
            t = target.get(k)
            if not isinstance(t, dict):
                target[k] = apply_merge_patch(t, v)
                continue
            for k2, v2 in v.items():
                if v2 is None:
                    t.pop(k2, None)
                elif isinstance(v2, dict):
                    t2 = t.get(k2)
                    if not isinstance(t2, dict):
                        t[k2] = apply_merge_patch(t2, v2)
                        continue
                    for k3, v3 in v2.items():
                        if v3 is None:
                            t2.pop(k3, None)
                        elif isinstance(v3, dict):
                            t2[k3] = apply_merge_patch(t2.get(k3), v3)
                        else:
                            t2[k3] = v3
                else:
                    t[k2] = v2
        else:
            target[k] = v
    return target
