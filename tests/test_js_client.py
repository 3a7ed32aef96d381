"""The browser client library's own unit tests (tests/js/*.test.mjs) pass under node."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
assert NODE, "node is not on the PATH (the JS parity and unit tests need it)"


def test_js_client_unit_tests():
    """node --test runs the JS client tests (merge patch, reconnection, prediction, interpolation)."""
    files = sorted(str(p) for p in (ROOT / "tests" / "js").glob("*.test.mjs"))
    proc = subprocess.run(
        [NODE, "--test", *files], cwd=str(ROOT), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
