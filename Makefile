# sheetgen: `make` sets up and builds everything; `make test` sets up and runs every test.
# Prerequisites: Python >= 3.11, Node >= 18 and Pango (WeasyPrint's text layout) on Debian/Ubuntu.
# Python and npm packages go into .venv and node_modules; the few system packages the PDF and the
# tests need (HarfBuzz subsetting, DejaVu fonts, poppler, Chromium) are installed by
# scripts/system-packages.sh with apt-get when run as root, or it prints the one command to run.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SHEETGEN := $(PY) -m sheetgen
# The live PyTorch comparison in `make test`; `make test TORCH=` skips it (recorded references still run).
TORCH  ?= torch==2.13.0
YAML   ?= formulas.yaml

export NO_MKDOCS_2_WARNING := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Reproducible outputs: dates come from the last commit, not the clock.
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: all setup system system-test build module schema pdf site serve notebooks anki check test test-fast lint fuzz bench golden preview clean

all: build

# --- setup --------------------------------------------------------------------------------------
setup: system $(VENV)/.installed node_modules/.installed

system:
	@scripts/system-packages.sh build

system-test:
	@scripts/system-packages.sh test

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "sheetgen needs Python >= 3.11 (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' || { echo "sheetgen needs Node >= 18"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(VENV)/.torch: $(VENV)/.installed
	@if [ -n "$(TORCH)" ]; then $(PY) -m pip install --quiet "$(TORCH)"; fi
	@touch $@

# --- build --------------------------------------------------------------------------------------
# Everything is built and checked first, then moved into place: a failure leaves the old outputs.
build: setup schema
	$(SHEETGEN) build -f $(YAML)

module: setup
	$(SHEETGEN) code -f $(YAML) -o build/formulas.py

schema: setup
	$(SHEETGEN) schema -o docs/formulas.schema.json

pdf: setup
	$(SHEETGEN) pdf -f $(YAML) -o build/cheatsheet.pdf

# The README's picture of the sheet: refreshed only on request, so content edits don't carry a binary diff.
preview: setup
	$(SHEETGEN) pdf -f $(YAML) -o build/cheatsheet.pdf --preview docs/assets/sheet-preview.png

notebooks: setup
	$(SHEETGEN) notebooks -f $(YAML)

# The Anki deck (`make` builds it too, with everything else).
anki: setup
	$(SHEETGEN) anki -f $(YAML) -o build/cheatsheet.apkg

site: setup
	$(SHEETGEN) site -f $(YAML)

# PORT=8001 make serve to use another port.
PORT ?= 8000
serve: setup
	$(SHEETGEN) serve -f $(YAML) --dev-addr 127.0.0.1:$(PORT)

check: setup
	$(SHEETGEN) check -f $(YAML)

# --- quality ------------------------------------------------------------------------------------
test: setup system-test $(VENV)/.torch
	$(PY) -m ruff check sheetgen tests scripts
	$(PY) -m mypy sheetgen
	$(PY) -m pytest -n 2 --dist worksteal

# The inner loop: no browser, no slow builds, no lint.
test-fast: setup
	$(PY) -m pytest -n 2 --dist worksteal -m "not slow and not browser" -q

lint: setup
	$(PY) -m ruff check sheetgen tests scripts
	$(PY) -m mypy sheetgen

# Rewrites every golden file from the current renderers; review the diff before committing.
golden: setup
	$(PY) -m pytest tests --update-goldens -q

fuzz: setup
	SHEETGEN_FUZZ_EXAMPLES=10000 $(PY) -m pytest tests/test_fuzz.py -q

bench: setup
	$(PY) scripts/bench.py $(BENCH_ARGS)

clean:
	rm -rf build site .pytest_cache .mypy_cache .ruff_cache
