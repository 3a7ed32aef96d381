"""A network namespace of the test's own, with only loopback (multicast on it), for tests of
what crosses a network: LAN announcements never reach a real one."""

import contextlib
import os
import secrets
import shutil
import subprocess

import pytest


def run(*cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=check)


@contextlib.contextmanager
def loopback_namespace(prefix, who):
    """Yields the name of a fresh namespace ``<prefix>-<random>``; deleted afterwards.
    Fails (never skips) when it cannot be made: ``who`` names the test in the message."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("%s needs root and iproute2's `ip` to create a network namespace "
                    "(ip netns add); it never runs on a real network" % who)
    name = "%s-%s" % (prefix, secrets.token_hex(4))
    made = run("ip", "netns", "add", name, check=False)
    if made.returncode:
        pytest.fail("could not create a network namespace (ip netns add %s): %s"
                    % (name, made.stderr.strip()))
    try:
        for step in (["ip", "link", "set", "lo", "up"],
                     ["ip", "link", "set", "lo", "multicast", "on"],
                     ["ip", "route", "add", "224.0.0.0/4", "dev", "lo", "src", "127.0.0.1"]):
            run("ip", "netns", "exec", name, *step)
        yield name
    finally:
        run("ip", "netns", "delete", name, check=False)
