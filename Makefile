# The two commands of the README:
#   make tutorial   run every notebook on the modern stack, three at a time; executed copies and figures in output/
#   make test       ruff, unit tests, then every notebook under nbval, on both stacks
# Both create the pinned environments first if they are missing or out of date:
#   .venv            the modern stack (default): Colab's default runtime (Python 3.13, TensorFlow 2.20) plus TFF
#   .venv-reference  the reference stack: Python 3.11 with the pins TFF 0.87 declares

# The first of these Pythons that runs: on the PATH, under pyenv, or in /usr/bin.
find_python = $(firstword $(foreach v,$(1),$(foreach p,python$(v) $(wildcard $(HOME)/.pyenv/versions/$(v).*/bin/python$(v)) /usr/bin/python$(v),$(shell $(p) -c 'print("$(p)")' 2>/dev/null))))
PYTHON ?= $(call find_python,3.13 3.12 3.11)
PYTHON_REFERENCE ?= $(call find_python,3.11)
PYTHON_COLAB ?= $(call find_python,3.13)
# 1 makes `make test` fail when the reference stack cannot be built (CI sets it).
REQUIRE_REFERENCE ?=

VENV := .venv
VENV_REFERENCE := .venv-reference
PIP_VERSION := 26.3
export TF_CPP_MIN_LOG_LEVEL ?= 3
# ipykernel 6 (Colab's, so the modern lock's) starts debugpy, which warns about frozen modules.
export PYDEVD_DISABLE_FILE_VALIDATION ?= 1

# The walkthrough's notebooks (01-03): with the real data (FEDRECON_DATA_DIR set), nbval
# compares every output with the committed ones, on both stacks; without it, they run on
# synthetic data in the smoke configuration and nbval only checks that they execute. The
# longer notebooks (04 onwards) always run in the smoke configuration, so the tests stay fast.
CORE_NOTEBOOKS := $(wildcard notebooks/0[1-3]_*.ipynb)
MORE_NOTEBOOKS := $(filter-out $(CORE_NOTEBOOKS),$(wildcard notebooks/[0-9][0-9]_*.ipynb))
SMOKE_ENV := FEDRECON_DATASET=synthetic FEDRECON_CONFIG=smoke
ifneq ($(strip $(FEDRECON_DATA_DIR)),)
CORE_NBVAL := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg
CORE_ENV :=
else
CORE_NBVAL := --nbval-lax
CORE_ENV := $(SMOKE_ENV)
endif
NBVAL := -m pytest --nbval-current-env -p no:cacheprovider -q
# Notebooks whose Colab cell installs no TFF, and the tests of the modules they use: they
# also run with TFF hidden (tests/without_tff), as on a Python where it is not installed.
TFF_FREE_NOTEBOOKS := $(shell grep -L 'colab_no_deps_packages' notebooks/[0-9][0-9]_*.ipynb)
TFF_FREE_TESTS := tests/test_plotting.py tests/test_simulator.py tests/test_clients.py tests/test_config.py tests/test_recommend.py tests/test_baselines.py tests/test_communication.py tests/test_experiments.py tests/test_environment.py tests/test_live.py

.PHONY: tutorial test lint test-modern test-reference test-without-tff notebooks env lock lock-modern lock-reference clean

# Three notebooks at a time, the longest first: the run ends sooner (make tutorial JOBS=1 for one
# at a time, as `make notebooks` does to record each notebook's own time).
JOBS ?= 3

tutorial: $(VENV)/.installed
	$(VENV)/bin/python -m tutorial_utils.plumbing.run_notebooks --jobs $(JOBS)

test: lint test-modern test-reference

# ruff (rules and line length in pyproject.toml) on the whole tree, notebooks included.
# `$(VENV)/bin/ruff format .` and `$(VENV)/bin/ruff check --fix .` repair most findings.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The unit tests and every notebook on one stack: $(call test_stack,VENV)
define test_stack
	$(1)/bin/python -m pytest tests -q
	$(CORE_ENV) $(1)/bin/python $(NBVAL) $(CORE_NBVAL) $(CORE_NOTEBOOKS)
	$(if $(MORE_NOTEBOOKS),$(SMOKE_ENV) $(1)/bin/python $(NBVAL) --nbval-lax $(MORE_NOTEBOOKS))
endef

test-modern: $(VENV)/.installed
	$(call test_stack,$(VENV))
	$(MAKE) --no-print-directory test-without-tff

test-without-tff: $(VENV)/.installed
	PYTHONPATH=tests/without_tff $(VENV)/bin/python -m pytest -q $(TFF_FREE_TESTS)
	PYTHONPATH=tests/without_tff $(SMOKE_ENV) $(VENV)/bin/python $(NBVAL) --nbval-lax $(TFF_FREE_NOTEBOOKS)

ifneq ($(strip $(PYTHON_REFERENCE)),)
test-reference: $(VENV_REFERENCE)/.installed
	$(call test_stack,$(VENV_REFERENCE))
else ifneq ($(strip $(REQUIRE_REFERENCE)),)
test-reference:
	@echo "No Python 3.11 found for the reference stack: install python3.11 (or pyenv install 3.11) or set PYTHON_REFERENCE=/path/to/python3.11."; exit 1
else
test-reference:
	@echo "SKIPPED the reference stack: no Python 3.11 found (install it, or set PYTHON_REFERENCE=/path/to/python3.11, to test both stacks)."
endif

# Re-run every notebook on the real data; store its outputs in the notebooks and the times
# in notebooks/run_times.json (the README's run-time column is checked against it).
notebooks: $(VENV)/.installed
	@test -n "$(FEDRECON_DATA_DIR)" || { echo "Set FEDRECON_DATA_DIR to MovieLens 1M first."; exit 1; }
	$(VENV)/bin/python -m tutorial_utils.plumbing.run_notebooks --in-place

env: $(VENV)/.installed

# A fresh environment from a lock file: $(call make_env,PYTHON,VENV,STACK,WHAT)
define make_env
	@test -n "$(1)" || { echo "No Python $(4) found: install it (on Debian or Ubuntu: apt install python3-venv; or pyenv install 3.13), or set PYTHON=/path/to/python3."; exit 1; }
	@rm -rf $(2)
	$(1) -m venv $(2)
	$(2)/bin/python -m pip install --quiet --upgrade pip==$(PIP_VERSION)
	$(2)/bin/python -m pip install --quiet --no-deps --ignore-requires-python -r requirements/$(3)-lock.txt
	$(2)/bin/python -m pip install --quiet --no-deps -e .
	@# Notebook kernels of this environment leave what C++ libraries write to stderr in the
	@# terminal (TensorFlow 2.20's graph optimizer logs past TF_CPP_MIN_LOG_LEVEL), not in cells.
	@mkdir -p $(2)/etc/ipython
	@echo 'c.IPKernelApp.capture_fd_output = False' > $(2)/etc/ipython/ipython_kernel_config.py
	@$(2)/bin/python -c 'import tutorial_utils.plumbing.environment as e; print(e.describe())'
	@touch $(2)/.installed
endef

$(VENV)/.installed: requirements/modern-lock.txt pyproject.toml
	$(call make_env,$(PYTHON),$(VENV),modern,3.13$(comma) 3.12 or 3.11)

$(VENV_REFERENCE)/.installed: requirements/reference-lock.txt pyproject.toml
	$(call make_env,$(PYTHON_REFERENCE),$(VENV_REFERENCE),reference,3.11)

comma := ,

# Rebuild the lock files (make lock-modern for one of them) from the direct files, each in a
# scratch environment. Lines marked "# no-deps" are installed with --no-deps
# --ignore-requires-python. The modern stack is Colab's default runtime plus TFF: it is
# resolved with Python 3.13 under the constraints of Colab's package list
# (requirements/colab-default.txt; replace it with a newer list to follow Colab). The
# reference stack is resolved with Python 3.11 and the pins TFF 0.87 declares.

# $(call lock_stack,STACK,PYTHON,PIP CONSTRAINT OPTIONS)
define lock_stack
	rm -rf .venv-lock && $(2) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip==$(PIP_VERSION) setuptools
	grep -v '# no-deps' requirements/$(1)-direct.txt | .venv-lock/bin/python -m pip install --quiet $(3) -r /dev/stdin
	.venv-lock/bin/python -m pip install --quiet --no-deps --ignore-requires-python $$(grep -E '^[^#].*# no-deps' requirements/$(1)-direct.txt | cut -d' ' -f1)
	{ sed -n '1,/^$$/p' requirements/$(1)-lock.txt; .venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip=='; } > requirements/$(1)-lock.tmp
	mv requirements/$(1)-lock.tmp requirements/$(1)-lock.txt && rm -rf .venv-lock
endef

lock: lock-modern lock-reference

# Colab's list as pip constraints (pins.colab_constraints: without pip itself and without
# the direct references, name @ URL, that pip refuses as constraints).
lock-modern:
	@test -n "$(PYTHON_COLAB)" || { echo "make lock-modern needs Python 3.13, Colab's (set PYTHON_COLAB=/path/to/python3.13)."; exit 1; }
	$(PYTHON_COLAB) -c 'from tutorial_utils.plumbing import pins; print(pins.colab_constraints("default"), end="")' > requirements/colab-constraints.tmp
	$(call lock_stack,modern,$(PYTHON_COLAB),-c requirements/colab-constraints.tmp)
	rm -f requirements/colab-constraints.tmp

lock-reference:
	@test -n "$(PYTHON_REFERENCE)" || { echo "make lock-reference needs Python 3.11 (set PYTHON_REFERENCE=/path/to/python3.11)."; exit 1; }
	$(call lock_stack,reference,$(PYTHON_REFERENCE),)

clean:
	rm -rf $(VENV) $(VENV_REFERENCE) output
