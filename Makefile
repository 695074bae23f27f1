# The two commands the README promises:
#   make demo   run the main job end to end against the bundled local IdP
#   make test   lint, type-check and run every test
# Both install what they need (Python venv, npm packages; make test also Chromium) on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_STAMP  := $(VENV)/.installed
IDP_STAMP := tests/idp/node_modules/.installed
DEMO_ARGS ?=

.PHONY: install chromium test lint demo idp bench clean

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,all]'
	touch $@

$(IDP_STAMP): tests/idp/package.json tests/idp/package-lock.json
	npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
	touch $@

install: $(PY_STAMP) $(IDP_STAMP)

# The browser login's end-to-end test (tests/integration/test_browser_chromium.py) drives the system Chromium
# headless through the system chromedriver: Debian's chromium and chromium-driver, installed with apt-get when
# missing (CI starts from a clean clone, as root; elsewhere through sudo). Selenium is given both paths, so nothing
# is ever downloaded at test time.
CHROMIUM_BIN      ?= /usr/bin/chromium
CHROMEDRIVER_BIN  ?= /usr/bin/chromedriver
CHROMIUM_PACKAGES := chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

chromium:
	@if [ -x $(CHROMIUM_BIN) ] && [ -x $(CHROMEDRIVER_BIN) ]; then :; else \
		echo "installing $(CHROMIUM_PACKAGES) with apt-get (for the browser-login end-to-end test)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CHROMIUM_PACKAGES); \
	fi

lint: $(PY_STAMP)
	$(BIN)/ruff check src tests benchmarks demo
	$(BIN)/ruff format --check src tests benchmarks demo
	$(BIN)/mypy

# Eight workers on two cores, work-stealing: most of the suite waits on real device-flow intervals (5 s), not
# on the CPU, and stealing keeps one worker from ending up with a queue of 5 s logins.
PYTEST_WORKERS ?= 8

test: install chromium lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal

demo: install
	$(BIN)/python demo/run_demo.py $(DEMO_ARGS)

# The bundled IdP on http://127.0.0.1:9400 (IDP_PORT=...), for the README's quickstart snippets.
IDP_PORT ?= 9400
idp: install
	$(BIN)/python demo/idp.py --port $(IDP_PORT)

bench: install
	$(BIN)/python benchmarks/bench_client_credentials.py

clean:
	rm -rf $(VENV) tests/idp/node_modules
