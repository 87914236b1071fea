# Entry points for people and CI: `make demo`, `make lab`, `make check` (quick) and `make test` (full, CI). Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo figures check test lab browser lint format clean-runs

# The pinned packages, and a JupyterLab that starts as root (CI, containers) without --allow-root: the
# environment's own jupyter_server_config.json says so (jupyter_server_config.d/ holds only extension switches).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e .
	mkdir -p $(VENV)/etc/jupyter
	echo '{"ServerApp": {"allow_root": true}}' > $(VENV)/etc/jupyter/jupyter_server_config.json
	touch $(STAMP)

## browser: Debian's chromium for tests/test_browser.py (installed as root where missing; never downloaded by playwright)
browser:
	test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)

## demo: synthetic street scenes -> train a small FCN-8 -> MaxF, loss curve and overlays in runs/demo/figures/
## (git-ignored, so a fresh clone stays clean)
demo: $(STAMP)
	$(BIN)/fcn demo --run-dir runs/demo --figures-dir runs/demo/figures

## figures: the same run, on purpose into the committed figures/demo/ (the README's figure); commit the result
figures: $(STAMP)
	$(BIN)/fcn demo --run-dir runs/demo-figures --figures-dir figures/demo

## lab: JupyterLab on the notebooks (figures show inline and are saved to figures/)
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

## check: the quick loop while working: lint, notebook hygiene and the tests not marked slow
check: $(STAMP)
	$(BIN)/ruff check fcn tests notebooks benchmarks data
	$(BIN)/nbstripout --verify notebooks/*.ipynb
	$(BIN)/python -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder -m "not slow" --durations=15

## test: lint, notebook hygiene, then the whole test suite (real data from $$FCN_SHARED_DATA, default ../shared/data)
test: $(STAMP) browser
	$(BIN)/ruff check fcn tests notebooks benchmarks data
	$(BIN)/nbstripout --verify notebooks/*.ipynb
	$(BIN)/python -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder --durations=15

format: $(STAMP)
	$(BIN)/ruff format fcn tests notebooks benchmarks data
	$(BIN)/nbstripout notebooks/*.ipynb

clean-runs:
	rm -rf runs
