# The two commands:  make run   (server + demo on http://127.0.0.1:8080/)
#                    make test  (the whole test suite, browser tests included)
# and make cluster WORKERS=N: N server processes sharing a Redis (README, "cluster mode").
#
# Set-up runs each step only when its inputs changed, so a second `make run` starts at once:
#   .venv/bin/python                      the venv, with a recent pip
#   web/node_modules/.package-lock.json   npm ci, when web/package-lock.json changed
#   .venv/.installed                      pip install -e ".[test]", when setup.cfg, setup.py,
#                                         pyproject.toml, MANIFEST.in or the list of the
#                                         package's files changed
# The editable install is setuptools' strict mode (setup.cfg): it links each file, so edits are
# live but an added or removed module or page needs a reinstall. .venv/.package-files lists
# them and is rewritten only when that list changes.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
# What `make run` turns on so the demo shows the cube game's extras: drones, pickups, rounds
# to 10 points and a view radius (README, Configuration). ARGS come after them and win: twistd
# takes the last value of an option given twice (ARGS="--drones 0"); DEMO_ARGS= turns them off.
DEMO_ARGS ?= --drones 2 --pickups 4 --round-points 10 --view-radius 16
PKG_DIRS := arbiter protocols web twistd_plugins
PIP := $(BIN)/python -m pip -qq
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup run test browser-deps redis-deps cluster bench clean FORCE

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24" "setuptools>=70.1"

# npm's own record of what it installed; touched, so it is newer than the lock it came from.
web/node_modules/.package-lock.json: web/package-lock.json
	npm ci --prefix web --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

$(VENV)/.package-files: FORCE | $(BIN)/python
	@find $(PKG_DIRS) -name node_modules -prune -o -name __pycache__ -prune -o -type f \
	  \( -name '*.py' -o -path 'web/static/*' \) -print | LC_ALL=C sort > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

# npm first (order only): the install bundles web/node_modules, and runs npm itself otherwise.
# --no-build-isolation: build with the venv's setuptools (pyproject.toml's build requirement)
# instead of fetching one into a throw-away env each time: a reinstall takes 1 s, not 6.
$(VENV)/.installed: setup.cfg setup.py pyproject.toml MANIFEST.in $(VENV)/.package-files \
                    | $(BIN)/python web/node_modules/.package-lock.json
	$(PIP) install --no-build-isolation -e ".[test]"
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	@touch $@

# The strict editable install's links live in build/__editable__.*: without them, reinstall.
ifeq ($(wildcard build/__editable__.*),)
$(VENV)/.installed: FORCE
endif

setup: $(VENV)/.installed web/node_modules/.package-lock.json

# Chromium for the browser tests, from Debian (Playwright's own download can't work here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

# redis-server (and redis-cli, which it brings) for cluster mode and its tests, from Debian.
# The package's own start script may fail where there is no init system; the binaries are
# installed all the same, and the tests and `make cluster` start their own server.
redis-deps:
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null \
	    || command -v redis-server >/dev/null 2>&1; }

run: setup
	$(BIN)/twistd -n arbiter $(DEMO_ARGS) $(ARGS)

# Cluster mode on this machine: WORKERS nodes (default: one per core) on ports 8080, 8081, ...
# next to a Redis of their own. make cluster WORKERS=2 ARGS="--port 9000 -- --max-players 8"
WORKERS ?=
cluster: setup redis-deps
	$(BIN)/arbiter-cluster $(if $(WORKERS),--workers $(WORKERS)) --start-redis $(ARGS)

test: setup browser-deps redis-deps
	$(BIN)/python -m pytest -q $(ARGS)

bench: setup
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build dist web/node_modules *.egg-info
