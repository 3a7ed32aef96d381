"""The build step that bundles the demo's front-end packages.

three.js and msgpack come from npm: web/package.json, pinned in
web/package-lock.json. Building Arbiter (``pip install .``, ``pip wheel .``,
``python -m build``, ``pip install -e .``) first runs ``npm ci --prefix web``
when web/node_modules is missing or does not match the lock file, so the wheel
and the sdist carry them (``[options.package_data]`` in setup.cfg lists the
files). Without npm the build goes on without them and the server says what
to run (web/site.py); ``ARBITER_SKIP_NPM=1`` skips the step on purpose.
"""

import json
import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.egg_info import egg_info

HERE = os.path.dirname(os.path.abspath(__file__))
WEB = os.path.join(HERE, "web")
NPM_CI = ["npm", "ci", "--prefix", WEB, "--no-audit", "--no-fund", "--loglevel=error"]
# The files the demo pages load first: without them npm ci has not run.
REQUIRED = ("three/build/three.module.js", "@msgpack/msgpack/dist.esm/index.mjs")


def _pins(lockfile):
    with open(lockfile, encoding="utf-8") as f:
        packages = json.load(f).get("packages", {})
    return {name: (entry.get("version"), entry.get("integrity"))
            for name, entry in packages.items() if name.startswith("node_modules/")}


def front_end_problem(web=WEB):
    """Why web/node_modules can't be bundled as it is (None: it can).

    npm ci writes node_modules/.package-lock.json, the packages it installed:
    node_modules is stale when their versions and hashes differ from the lock.
    """
    modules = os.path.join(web, "node_modules")
    if not all(os.path.isfile(os.path.join(modules, f)) for f in REQUIRED):
        return "web/node_modules is missing"
    lock = os.path.join(web, "package-lock.json")
    installed = os.path.join(modules, ".package-lock.json")
    if not os.path.isfile(lock):
        return None                  # nothing to compare with: bundle what is there
    if not os.path.isfile(installed) or _pins(installed) != _pins(lock):
        return "web/node_modules does not match web/package-lock.json"
    return None


_ensured = False


def ensure_front_end():
    global _ensured
    if _ensured:                     # egg_info and build_py both ask, in one process
        return
    _ensured = True
    problem = front_end_problem()
    if problem is None:
        return
    if os.environ.get("ARBITER_SKIP_NPM"):
        print("arbiter: %s; ARBITER_SKIP_NPM is set, so the demo's front-end packages "
              "are not bundled" % problem, file=sys.stderr)
        return
    if not os.path.isfile(os.path.join(WEB, "package-lock.json")):
        print("arbiter: %s and there is no web/package-lock.json to install from: the demo's "
              "front-end packages are not bundled" % problem, file=sys.stderr)
        return
    npm = shutil.which("npm")
    if npm is None:
        print("arbiter: %s and npm is not on the PATH: the demo's front-end packages "
              "(three.js, msgpack) are not bundled. Install Node.js with npm and build again, "
              "or run `npm ci --prefix web` first." % problem, file=sys.stderr)
        return
    print("arbiter: %s: running %s" % (problem, " ".join(NPM_CI)), file=sys.stderr)
    done = subprocess.run([npm, *NPM_CI[1:]], stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit("arbiter: `npm ci --prefix web` failed (exit status %d, npm's errors "
                         "above): the demo's front-end packages can't be bundled. Fix it, or "
                         "build with ARBITER_SKIP_NPM=1 to go without them."
                         % done.returncode)


class BuildPy(build_py):
    """build_py that first installs the front-end packages it bundles."""

    def run(self):
        ensure_front_end()           # before package_data's globs are expanded
        super().run()


class EggInfo(egg_info):
    """egg_info, the first step of every build (sdist included: so a wheel built from the
    sdist needs no npm), with the front-end packages in place before it lists the files."""

    def run(self):
        ensure_front_end()
        super().run()


setup(cmdclass={"build_py": BuildPy, "egg_info": EggInfo})
