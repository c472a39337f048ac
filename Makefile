# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo console console-test-deps console-screenshots test lint typecheck protos bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mash-gateway demo --state-dir state/demo
	@if [ -n "$(CONSOLE)" ]; then $(MAKE) console; fi

# The web console on a development partnership with demo data and accounts: http://127.0.0.1:8600
console: $(STAMP)
	$(BIN)/mash-gateway console demo --state-dir state/console

# The console's browser tests drive Debian's Chromium (installed here if missing; nothing downloads a
# browser build of its own) and inject axe-core from npm.
AXE_VERSION := 4.14.1
console-test-deps:
	@missing=""; [ -x /usr/bin/chromium ] || missing="chromium"; command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@test -f tests/console/node_modules/axe-core/axe.min.js || \
		npm install --no-save --no-package-lock --silent --prefix tests/console axe-core@$(AXE_VERSION)

# Refresh the console screenshots shown in docs/console.md (the browser tests take them).
console-screenshots: $(STAMP) console-test-deps
	CONSOLE_SCREENSHOTS=docs/console $(BIN)/python -m pytest -q tests/console

test: $(STAMP) console-test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) state .pytest_cache .mypy_cache .ruff_cache
