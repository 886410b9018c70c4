# The two commands of the README:
#   make tutorial   run every notebook; executed copies and figures land in output/
#   make test       unit tests, then every notebook under nbval
# Both create the pinned environment in .venv first if it is missing or out of date.

# The first Python 3.11 that runs: on PATH, or installed by pyenv but not activated.
PYTHON ?= $(firstword $(foreach p,python3.11 $(wildcard $(HOME)/.pyenv/versions/3.11*/bin/python3.11) /usr/bin/python3.11,$(shell $(p) -c 'print("$(p)")' 2>/dev/null)))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A second environment without TFF: Python 3.12 and the newest TensorFlow, where the
# simulator (tutorial_utils/simulation.py) must run too.
# The first Python 3.12 that runs: on PATH, or installed by pyenv but not activated.
PYTHON312 ?= $(firstword $(foreach p,python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) /usr/bin/python3.12,$(shell $(p) -c 'print("$(p)")' 2>/dev/null)))
VENV312 := .venv-py312
STAMP312 := $(VENV312)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 3

# The walkthrough's notebooks (01-03): with the real data (FEDRECON_DATA_DIR set), nbval
# compares every output with the committed ones; without it, they run on synthetic data in
# the smoke configuration and nbval only checks that they execute. The longer notebooks
# (04 onwards) always run in the smoke configuration, so the tests stay fast.
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
NBVAL_RUN := $(BIN)/python -m pytest --nbval-current-env -p no:cacheprovider -q
# Notebooks whose Colab cell does not install TFF: they must also run without it (test-py312).
# The unit tests of the modules those notebooks use (TFF parity tests skip without TFF).
PY312_TESTS := tests/test_simulation.py tests/test_recommend.py tests/test_baselines.py tests/test_communication.py tests/test_experiments.py
TFF_FREE_NOTEBOOKS := $(shell grep -L 'tensorflow-federated==' notebooks/[0-9][0-9]_*.ipynb)

.PHONY: tutorial test unit notebooks notebooks-test test-py312 env lock clean

tutorial: $(STAMP)
	$(BIN)/python -m tutorial_utils.run_notebooks

test: unit notebooks-test test-py312

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q

notebooks-test: $(STAMP)
	$(CORE_ENV) $(NBVAL_RUN) $(CORE_NBVAL) $(CORE_NOTEBOOKS)
	$(if $(MORE_NOTEBOOKS),$(SMOKE_ENV) $(NBVAL_RUN) --nbval-lax $(MORE_NOTEBOOKS))

test-py312: $(STAMP312)
	$(VENV312)/bin/python -m pytest -q $(PY312_TESTS)
	$(if $(TFF_FREE_NOTEBOOKS),$(SMOKE_ENV) $(VENV312)/bin/python -m pytest --nbval-current-env -p no:cacheprovider -q --nbval-lax $(TFF_FREE_NOTEBOOKS))

# Re-run every notebook on the real data and store its outputs in the notebooks.
notebooks: $(STAMP)
	@test -n "$(FEDRECON_DATA_DIR)" || { echo "Set FEDRECON_DATA_DIR to MovieLens 1M first."; exit 1; }
	$(BIN)/python -m tutorial_utils.run_notebooks --in-place

env: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "No working python3.11 found: TensorFlow Federated 0.87 needs Python 3.11 (see README, Troubleshooting)."; exit 1; }
	@rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==24.3.1
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(STAMP312): requirements/py312.txt pyproject.toml
	@test -n "$(PYTHON312)" || { echo "No working python3.12 found: the no-TFF check needs Python 3.12 (set PYTHON312=/path/to/python3.12)."; exit 1; }
	@rm -rf $(VENV312)
	$(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install --quiet -r requirements/py312.txt
	$(VENV312)/bin/python -m pip install --quiet --no-deps -e .
	@touch $@

# Rebuild requirements/lock.txt from requirements/direct.txt in a scratch environment.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	grep -v '^tensorflow-federated' requirements/direct.txt | .venv-lock/bin/python -m pip install --quiet -r /dev/stdin
	.venv-lock/bin/python -m pip install --quiet --no-deps $$(grep '^tensorflow-federated' requirements/direct.txt)
	{ grep '^#' requirements/lock.txt; .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^fedrecon-tutorial'; } > requirements/lock.tmp
	mv requirements/lock.tmp requirements/lock.txt && rm -rf .venv-lock

clean:
	rm -rf $(VENV) $(VENV312) output
