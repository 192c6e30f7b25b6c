# onnxfn — every target creates/reuses .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.onnxfn-installed
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast lint bench bundle offline clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	@touch $(STAMP)

demo: venv  ## train on sklearn digits, convert, quantize, serve, call with the client
	$(PY) examples/demo.py

test: venv  ## the whole suite, TensorFlow tests included
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv  ## everything but the TensorFlow-heavy tests
	$(PY) -m pytest -m "not convert" $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: venv  ## writes benchmarks/RESULTS.md
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache artifacts
