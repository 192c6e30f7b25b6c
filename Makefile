# onnxfn — every target creates/reuses .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.onnxfn-installed
PYTEST_ARGS ?=

.PHONY: typecheck venv demo test test-fast test-models lint bench docs bundle offline clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	@# Keras 2 (legacy .h5 files and models): must match TensorFlow's minor version, and --no-deps because it
	@# requires the `tensorflow` distribution, which would duplicate `tensorflow-cpu`.
	$(PY) -m pip install -q --no-deps "tf_keras==$$($(PY) -c 'import tensorflow as tf; print(tf.__version__.rsplit(".", 1)[0])' 2>/dev/null).*"
	@touch $(STAMP)

demo: venv  ## train on sklearn digits, convert, quantize, serve, call with the client
	$(PY) examples/demo.py

test: venv  ## the whole suite, TensorFlow tests included
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv  ## everything but the TensorFlow-heavy tests
	$(PY) -m pytest -m "not convert" $(PYTEST_ARGS)

typecheck: venv  ## mypy, strict on the client, the runtime and the wire codec (also in make lint and CI)
	$(PY) -m mypy client/
	$(PY) -m mypy runtime/ onnxfn/_wire.py

test-models: venv  ## every keras.applications architecture: convert, parity, quantize (long, CPU-heavy)
	$(PY) -m pytest -m models tests/converter/test_catalogue.py $(PYTEST_ARGS)

lint: venv  ## ruff (style + security rules), bandit, pip-audit of what the Lambda bundle ships
	PY=$(PY) bash tools/lint.sh

bench: venv  ## writes benchmarks/RESULTS.md
	$(PY) benchmarks/run.py

docs: venv  ## the documentation site into site/ (mkdocs.yml; preview: .venv/bin/mkdocs serve)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# AWS Lambda (docs/deploy.md). MODELS: a model directory (*.onnx + manifest.json), e.g. from `make demo`.
MODELS        ?= artifacts/demo/models
LAMBDA_ARCH   ?= arm64
LAMBDA_PYTHON ?= 3.12
OFFLINE_PORT  ?= 3000
BUNDLE_FLAGS  ?=
OFFLINE_MODELS = $(if $(wildcard $(MODELS)),$(MODELS),dist/offline/models)

bundle: venv  ## dist/onnxfn-lambda.zip for serverless.yml (MODELS=dir LAMBDA_ARCH=arm64 LAMBDA_PYTHON=3.12 BUNDLE_FLAGS=--layer)
	@test -e "$(MODELS)" || { echo "no models at $(MODELS): run 'make demo' first, or pass MODELS=dir" >&2; exit 2; }
	$(PY) -m onnxfn bundle "$(MODELS)" -o dist --arch $(LAMBDA_ARCH) --python $(LAMBDA_PYTHON) $(BUNDLE_FLAGS)

offline: venv  ## serverless-offline on 127.0.0.1:$(OFFLINE_PORT), serving a bundle built for this machine
	@test -e "$(OFFLINE_MODELS)" || { echo "no $(MODELS): serving TF-free digits + topics models instead"; \
	  $(PY) -c "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; \
	    from models import digits_logreg, topics_bow; from onnxfn.runtime import write_manifest; \
	    d = Path('$(OFFLINE_MODELS)'); digits_logreg(d / 'digits.onnx'); topics_bow(d / 'topics.onnx'); write_manifest(d)"; }
	$(PY) -m onnxfn._bundle offline "$(OFFLINE_MODELS)" --workdir dist/offline --http-port $(OFFLINE_PORT)

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache .ruff_cache artifacts
