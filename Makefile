# genlab: every target creates the virtual environment on first use, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# Test workers (pytest-xdist): the README's two halves run side by side; see tests/README.md.
WORKERS ?= 2

.PHONY: install train test test-fast lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# constraints.txt pins a matching torch/torchvision pair and every other dependency.
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -c "import torch, torchvision, torch_fidelity; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) -m src.train $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow" $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) -m experiments.benchmarks.run $(ARGS)

clean:
	rm -rf logs .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
