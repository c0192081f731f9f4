# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv (Python 3.11) when missing and install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install whenever pyproject.toml changes.
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEMO_DIR ?= demo

.PHONY: demo test test-fast bench bench-quality bench-quality-smoke install clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[orchestration,mlflow,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# The MLflow server the tests start: a separate process whose dependencies clash with the project's pins.
MLFLOW_SERVER := .venv-mlflow/bin/mlflow
$(MLFLOW_SERVER):
	$(PYTHON) -m venv .venv-mlflow
	.venv-mlflow/bin/python -m pip install --disable-pip-version-check -q 'mlflow==3.17.2'

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/spira demo --workdir $(DEMO_DIR)

# Two workers, one test module each at a time (module fixtures start servers once per module).
test: $(STAMP) $(MLFLOW_SERVER)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not integration"

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# The quality benchmark (docs/quality.md): hours at full size, cached per training under $$SPIRA_QUALITY_WORKDIR.
bench-quality: $(STAMP)
	$(BIN)/python -m bench.quality

# Small sets, 1 seed, few epochs: a few minutes, figures not meaningful.
bench-quality-smoke: $(STAMP)
	$(BIN)/python -m bench.quality --smoke

clean-demo:
	rm -rf $(DEMO_DIR)
