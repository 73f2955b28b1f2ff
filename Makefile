# Two entry points for newcomers: `make demo` and `make test`.
# Both create/use a local virtualenv in .venv. On machines without CUDA the CPU build of PyTorch
# is installed first, so pip never pulls the multi-GB CUDA wheels; with nvidia-smi present the
# torch you already have (or pip's default CUDA build) is kept.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format clean bench bench-quick

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c "import torch" 2>/dev/null; then \
		$(PY) -m pip install --quiet torch==2.13.0; fi
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) jobs/reconstruct_volume.py

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -m "not slow"

lint format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Benchmark suite (bench/suite.py): JSON + Markdown table in bench/results/. Run on an idle machine.
bench: $(STAMP)
	$(PY) bench/suite.py

bench-quick: $(STAMP)
	$(PY) bench/suite.py --quick

clean:
	rm -rf $(VENV)
