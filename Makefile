# Two commands: `make demo` (install + run the gateway with a mock provider) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install bench clean

$(BIN)/tollway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/tollway

demo: install
	$(BIN)/tollway demo

test: install
	$(BIN)/pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .tollway-demo .pytest_cache .hypothesis
