# Two commands a new user needs (see README):
#   make demo   - the default Snakemake target on the built-in dataset
#   make test   - the test suite
# Each creates the virtual environment on first use (the pinned torch pair, then this package)
# and reuses it afterwards. VENV may point outside the clone (CI keeps it in a cache folder).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2
DEPS_HASH := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
STAMP := $(VENV)/.deps-$(DEPS_HASH)

.PHONY: env demo test lint clean-results

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

lint: env
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --lint
