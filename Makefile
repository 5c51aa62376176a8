# `make demo` (install the runtime + run the gateway with a mock provider) and `make test`.
# The demo installs only what the gateway needs at run time; `make test` adds the test
# tools (pytest, the openai/anthropic SDKs, Playwright, ...) to the same .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
DEMO_DIR ?= .tollway-demo

.PHONY: demo test install install-test docs bench clean

$(BIN)/tollway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-tools: $(BIN)/tollway
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/tollway

install-test: $(VENV)/.test-tools

demo: install
	$(BIN)/tollway demo --port $(PORT) --directory $(DEMO_DIR)

# The tests run on TEST_WORKERS processes (pytest-xdist), a file to a worker so that module
# fixtures (a gateway per module, a browser) start once: most tests wait on sockets,
# subprocesses and databases, so 4 workers keep 2 cores busy. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 4

test: install-test  # lint, type-check the pure governance core, then every test
	$(BIN)/ruff check tollway tests bench
	$(BIN)/mypy tollway/governance tollway/redis_wire.py
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

docs: install  # regenerate the configuration reference from the schema
	$(BIN)/tollway config reference > docs/configuration.md

bench: install-test
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .tollway-demo .pytest_cache .hypothesis
