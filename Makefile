# The two commands:  make run   (server + demo on http://127.0.0.1:8080/)
#                    make test  (the whole test suite, browser tests included)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: setup run test browser-deps bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24" "setuptools>=69"

setup: $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	npm ci --prefix web --no-audit --no-fund --loglevel=error

# Chromium for the browser tests, from Debian (Playwright's own download can't work here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

run: setup
	$(BIN)/twistd -n arbiter $(ARGS)

test: setup browser-deps
	$(BIN)/python -m pytest -q $(ARGS)

bench: setup
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build web/node_modules *.egg-info
