# echoprep developer and demo entry points. `make demo` and `make test` are the README's first lines.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_PRESET ?= tiny
DEMO_DIR ?= demo
CORES ?= 2

.PHONY: setup demo test test-fast lint docs

# Upstream GLMsingle (glm.engine: glmsingle) is not on the package index. Where WHEELS holds its
# wheel (development checkouts and CI have ../shared beside the checkout), setup also installs
# the extra `glmsingle` (pinned in pyproject.toml) from there, so that its tests run; elsewhere
# they skip, saying why.
WHEELS ?= ../shared/wheels
GLMSINGLE_WHEEL := $(wildcard $(WHEELS)/glmsingle-*.whl)
comma := ,
EXTRAS := workflow,spatial,report,test,docs$(if $(GLMSINGLE_WHEEL),$(comma)glmsingle)

# A virtual environment with exactly the versions pinned in pyproject.toml, and every package
# they need at the version envs/constraints.txt locks (written by envs/lock.py): a fresh .venv
# is the tested one, not the registry's newest of the day.
$(VENV)/.installed: pyproject.toml envs/constraints.txt $(GLMSINGLE_WHEEL)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c envs/constraints.txt $(if $(GLMSINGLE_WHEEL),--find-links $(WHEELS)) -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

# Simulate a 7T multi-echo BIDS dataset and run the workflow on it. The dataset records the
# preset it was simulated with (dataset_description.json, echoprepSimulation.preset): when
# DEMO_PRESET differs, $(DEMO_DIR)/bids, results and work are removed and simulated anew
# (only those three folders, and only when bids is a simulated dataset).
DEMO_SIMULATED = $(BIN)/python -c 'import json, sys; d = json.load(open(sys.argv[1])); \
	print(d.get("echoprepSimulation", {}).get("preset", "NOT-SIMULATED"))'

demo: setup
	@test -n "$(DEMO_DIR)" || { echo "DEMO_DIR is empty" >&2; exit 2; }
	@had=$$(test -f "$(DEMO_DIR)/bids/dataset_description.json" && \
		$(DEMO_SIMULATED) "$(DEMO_DIR)/bids/dataset_description.json" || echo NONE); \
	if [ "$$had" = NOT-SIMULATED ]; then \
		echo "$(DEMO_DIR)/bids is not a dataset simulated by echoprep; not touching it." \
			"Use another folder: make demo DEMO_DIR=<folder>" >&2; exit 2; \
	elif [ "$$had" != "$(DEMO_PRESET)" ]; then \
		if [ "$$had" != NONE ]; then \
			echo "$(DEMO_DIR)/bids holds preset $$had, DEMO_PRESET=$(DEMO_PRESET):" \
				"removing $(DEMO_DIR)/bids, $(DEMO_DIR)/results and $(DEMO_DIR)/work"; \
			rm -rf "$(DEMO_DIR)/bids" "$(DEMO_DIR)/results" "$(DEMO_DIR)/work"; \
		fi; \
		echo "$(BIN)/echoprep simulate $(DEMO_DIR)/bids --preset $(DEMO_PRESET)"; \
		$(BIN)/echoprep simulate "$(DEMO_DIR)/bids" --preset "$(DEMO_PRESET)"; \
	fi
	$(BIN)/snakemake --configfile config/demo.yaml --cores $(CORES) \
		--config "bids_dir=$(DEMO_DIR)/bids" "output_dir=$(DEMO_DIR)/results" \
		"work_dir=$(DEMO_DIR)/work"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/vulture
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# The documentation site from docs/ (docs/about-these-docs.md), offline, warnings as errors; the
# references (config keys, commands, rules) are generated from the code by the build.
docs: setup
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The first check for a newcomer: lint and the unit tests (a few minutes; no workflow runs,
# no apt, no SLURM). `make test` (CI) runs everything.
test-fast: lint
	$(BIN)/python -m pytest tests/unit
