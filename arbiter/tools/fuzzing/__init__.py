"""Hostile-input fuzzing of the whole pipeline, in memory (issue 9).

A :class:`Fuzzer` builds a server on one ``task.Clock`` (Autobahn's timers
included), puts honest players in a room (one JSON, one msgpack), and lets
hostile connections (one per encoding) throw generated frames at it: random
bytes, frames of the wrong type, truncated, fragmented and odd payloads, and
well-formed maps with hostile contents (lone surrogates, deep nesting, huge
integers, non-finite numbers, msgpack bin/ext values and non-string keys, wrong
field types, known types with random fields). Honest players play between the
frames and check every state message they get.

Every hostile frame's answer is checked against the contract (PROTOCOL.md and
docs/EXTENSIONS.md), worked out by :func:`contract_answer` from the bytes alone
with a reference decoder of its own, not the server's:

- ``bad_message`` (1008 after the 20th within 10 s), ``not_joined`` or
  ``already_joined``; 1009 for a message over the size cap; 1007 for a text
  frame that is not UTF-8;
- for a well-formed valid message, the normal answer (``welcome`` +
  ``snapshot``, ``pong``, ``bad_token``/``room_full`` with their closes, or
  nothing until the next tick).

No ``internal_error`` may reach any client and no log event may carry a
traceback; every honest input must be acked by the next state message and
applied (its cube exists, its move lands where the client predicted, its
``say`` is heard), and at the end the honest players' mirrors (snapshot +
merge patches) must equal the snapshot a ``resync`` and a newly joining
player get.

Generators take a ``random.Random``; each frame comes from its own seed, so
``(kind, seed)`` reproduces it. ``tests/test_fuzz.py`` draws plans of frames
with hypothesis; ``bench/fuzz.py`` runs the same pipeline for a million frames.
This module needs no hypothesis. See docs/FUZZING.md.
"""

from arbiter.tools.fuzzing.values import BAD_LIMIT, BAD_WINDOW, Deep, F32, HELLO_TIMEOUT, JSON, Lit, MAX_DEPTH, MAX_INT, MSGPACK, PINGS_ALWAYS_ANSWERED, Pairs, encode_as, to_json, to_msgpack  # noqa: F401
from arbiter.tools.fuzzing.generators import BIG_INTS, FIELDS, Frame, INPUTS, JSON_BIG_INTS, NAME_CHARS, NON_FINITE, ROOM_CHARS, TEXT_CHARS, TYPES, entity_id, gen_bin_ext_key, gen_deep, gen_huge_int, gen_lone_surrogate, gen_non_finite, gen_random_bytes, gen_random_fields, gen_trailing, gen_truncated, gen_valid, gen_wrong_frame_type, gen_wrong_type, lone_surrogate, number, other_type_value, random_value, room_name, scalar, seq, text, valid_message, with_surrogate  # noqa: F401
from arbiter.tools.fuzzing.frames import BAD_UTF8, GENERATORS, KINDS, MAP_KINDS, ODD_JSON, ODD_MSGPACK, RAW_KINDS, WEIGHTS, frame_bytes, gen_invalid_utf8, gen_odd, gen_oversize, generate, mask_frame, message_frame, padded  # noqa: F401
from arbiter.tools.fuzzing.contract import Answer, check_plain, contract_answer, first_difference, reference_parse  # noqa: F401
from arbiter.tools.fuzzing.report import Report  # noqa: F401
from arbiter.tools.fuzzing.honest import HonestPlay  # noqa: F401
from arbiter.tools.fuzzing.fuzzer import Fuzzer  # noqa: F401
from arbiter.tools.fuzzing.runner import run_random  # noqa: F401
