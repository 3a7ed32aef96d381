"""web/static/js/arbiter/codes.js and arbiter/codes.py carry the same wire vocabulary."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from arbiter import codes

ROOT = Path(__file__).resolve().parent.parent
CODES_JS = ROOT / "web" / "static" / "js" / "arbiter" / "codes.js"
NODE = shutil.which("node")
assert NODE, "node is not on the PATH (the JS parity and unit tests need it)"

# The names codes.js exports, each equal to arbiter/codes.py's (tuples as arrays).
NAMES = ("SUBPROTOCOLS", "CLIENT_MESSAGES", "SERVER_MESSAGES", "V1_INPUTS", "ERROR_CODES",
         "REJECT_CODES", "CORRECT_REASONS", "CLOSE_CODES", "MAX_INT", "MAX_DEPTH",
         "MAX_MESSAGE_SIZE")

SCRIPT = """
const codes = await import(process.argv[1]);
process.stdout.write(JSON.stringify(Object.fromEntries(Object.entries(codes))));
"""


@pytest.fixture(scope="module")
def js_codes():
    proc = subprocess.run(
        [NODE, "--input-type=module", "-e", SCRIPT, CODES_JS.as_uri()],
        cwd=str(ROOT), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _python(name):
    value = getattr(codes, name)
    return list(value) if isinstance(value, tuple) else value


def test_codes_js_exports_exactly_the_vocabulary(js_codes):
    """codes.js exports these names and no others."""
    assert sorted(js_codes) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_value_equals_the_python_one(js_codes, name):
    """Each constant has the same value, type and order on both sides."""
    py = _python(name)
    js = js_codes[name]
    assert js == py, "%s: codes.js has %r, arbiter/codes.py has %r" % (name, js, py)
    # JSON has one number type: make sure an int is not a float on one side.
    assert json.dumps(js, sort_keys=True) == json.dumps(py, sort_keys=True)


def test_the_python_side_has_nothing_the_js_side_lacks():
    """Every collection or limit arbiter/codes.py exports is one codes.js carries too."""
    exported = {n for n, v in vars(codes).items()
                if (n.isupper() and isinstance(v, (tuple, dict))) or n.startswith("MAX_")}
    assert exported <= set(NAMES), "new in arbiter/codes.py, missing from codes.js: %s" % sorted(
        exported - set(NAMES))
