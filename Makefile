# The two commands of the README:
#   make tutorial   run every notebook; executed copies and figures land in output/
#   make test       unit tests, then every notebook under nbval
# Both create the pinned environment in .venv first if it is missing or out of date.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 3

# With the real data (FEDRECON_DATA_DIR set), nbval compares every output with the
# committed ones. Without it, the notebooks run on synthetic data in the smoke
# configuration and nbval only checks that they execute.
ifneq ($(strip $(FEDRECON_DATA_DIR)),)
NBVAL := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg
NBVAL_ENV :=
else
NBVAL := --nbval-lax
NBVAL_ENV := FEDRECON_DATASET=synthetic FEDRECON_CONFIG=smoke
endif

.PHONY: tutorial test unit notebooks-test env lock clean

tutorial: $(STAMP)
	$(BIN)/python -m tutorial_utils.run_notebooks

test: unit notebooks-test

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q

notebooks-test: $(STAMP)
	$(NBVAL_ENV) $(BIN)/python -m pytest $(NBVAL) --nbval-current-env -p no:cacheprovider notebooks -q

# Re-run every notebook on the real data and store its outputs in the notebooks.
notebooks: $(STAMP)
	@test -n "$(FEDRECON_DATA_DIR)" || { echo "Set FEDRECON_DATA_DIR to MovieLens 1M first."; exit 1; }
	$(BIN)/python -m tutorial_utils.run_notebooks --in-place

env: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: TensorFlow Federated 0.87 needs Python 3.11 (see README, Troubleshooting)."; exit 1; }
	@rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==24.3.1
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

# Rebuild requirements/lock.txt from requirements/direct.txt in a scratch environment.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	grep -v '^tensorflow-federated' requirements/direct.txt | .venv-lock/bin/python -m pip install --quiet -r /dev/stdin
	.venv-lock/bin/python -m pip install --quiet --no-deps $$(grep '^tensorflow-federated' requirements/direct.txt)
	{ grep '^#' requirements/lock.txt; .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^fedrecon-tutorial'; } > requirements/lock.tmp
	mv requirements/lock.tmp requirements/lock.txt && rm -rf .venv-lock

clean:
	rm -rf $(VENV) output
