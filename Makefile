# Two entry points for people and CI: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format clean-runs

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e .
	touch $(STAMP)

## demo: synthetic street scenes -> train a small FCN-8 -> MaxF, loss curve and overlays in figures/demo/
demo: $(STAMP)
	$(BIN)/fcn demo --run-dir runs/demo --figures-dir figures/demo

## test: lint, notebook hygiene, then the whole test suite (real data from $$FCN_SHARED_DATA, default ../shared/data)
test: $(STAMP)
	$(BIN)/ruff check fcn tests notebooks benchmarks data
	$(BIN)/nbstripout --verify notebooks/*.ipynb
	$(BIN)/python -m pytest -q --durations=15

format: $(STAMP)
	$(BIN)/ruff format fcn tests notebooks benchmarks data
	$(BIN)/nbstripout notebooks/*.ipynb

clean-runs:
	rm -rf runs
