# stepguard: one target per habit. Every target does its own set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench venv sysdeps format clean

$(STAMP): pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@test -x $(PY) || uv venv --quiet --python python3 $(VENV)
	uv pip install --quiet --python $(PY) -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

sysdeps:
	@bash scripts/ensure-system-deps.sh

run: $(STAMP)
	$(VENV)/bin/stepguard serve --host $(HOST) --port $(PORT) --demo

test: $(STAMP) sysdeps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .stepguard .pytest_cache .mypy_cache .ruff_cache
