# Two commands a new user needs (see README):
#   make demo   - the default Snakemake target on the built-in dataset
#   make test   - the test suite (make lint: ruff and snakemake --lint, which CI runs first)
# Each creates the virtual environment on first use (the pinned torch pair, then this package)
# and reuses it afterwards. VENV may point outside the clone (CI keeps it in a cache folder).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2
DEPS_HASH := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
STAMP := $(VENV)/.deps-$(DEPS_HASH)

.PHONY: env demo test lint clean-results readme-numbers

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The pinned pair first: it installs from the machine's disk (no multi-GB download).
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The editable install must point at *this* checkout (a cached venv may serve several clones).
env: $(STAMP)
	@$(PY) -c "import harness, pathlib, sys; sys.exit(pathlib.Path(harness.__file__).resolve().parent != pathlib.Path('harness').resolve())" \
	  || $(PY) -m pip install -q --no-deps -e .

demo: env
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --cores $(CORES)

test: env
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q

# The README's 1-seed demo table against a demo run at HEAD (a full demo: ~20 min on 2 cores);
# UPDATE=1 rewrites the README block with HEAD's numbers and commit instead of failing.
readme-numbers: demo
	$(PY) tests/readme_numbers.py results/table_toycity.md $(if $(UPDATE),--update)

# ruff (pyproject.toml [tool.ruff]: pyflakes, pycodestyle at 110 columns, import order, pyupgrade,
# bugbear) over the package and the tests, then Snakemake's own linter over the workflow.
lint: env
	$(VENV)/bin/ruff check .
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --lint

# Tables and figures of the workflow (results/, results/smoke/); the published figures stay.
clean-results:
	find results -mindepth 1 -maxdepth 1 ! -name published -exec rm -rf {} +
