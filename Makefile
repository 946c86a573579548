# echoprep developer and demo entry points. `make demo` and `make test` are the README's first lines.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_PRESET ?= demo
DEMO_DIR ?= demo
CORES ?= 2

.PHONY: setup demo test lint

# A virtual environment with exactly the versions pinned in pyproject.toml.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[workflow,spatial,report,test]"
	touch $@

setup: $(VENV)/.installed

# Simulate a 7T multi-echo BIDS dataset (once) and run the workflow on it.
demo: setup
	test -f $(DEMO_DIR)/bids/dataset_description.json || \
		$(BIN)/echoprep simulate $(DEMO_DIR)/bids --preset $(DEMO_PRESET)
	$(BIN)/snakemake --configfile config/demo.yaml --cores $(CORES) \
		--config bids_dir=$(DEMO_DIR)/bids output_dir=$(DEMO_DIR)/results work_dir=$(DEMO_DIR)/work

lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow/rules

test: lint
	$(BIN)/python -m pytest
