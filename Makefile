# The two commands a fresh machine needs:
#   make demo   serve the chat demo on http://127.0.0.1:8000
#   make test   lint, type-check and run every test (installs what they need)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo dashboard editor game test lint types pytest compliance bench system-deps clean

$(VENV)/.base: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "wirehub needs Python 3.11+"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base pyproject.toml
	$(PIP) install -q -e '.[dev,redis,jwt,metrics,bench,examples,asgi,reload]'
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/wirehub serve examples/chat/app.py:hub --host $(HOST) --port $(PORT)

# The other example apps (examples/README.md); they need psutil and pycrdt.
$(VENV)/.examples: $(VENV)/.base pyproject.toml
	$(PIP) install -q -e '.[examples]'
	touch $@

dashboard editor game: $(VENV)/.examples
	$(VENV)/bin/wirehub serve examples/$@/app.py:hub --host $(HOST) --port $(PORT)

# Debian packages the tests drive for real; installed only when missing.
system-deps:
	@bash scripts/system-deps.sh

test: $(VENV)/.dev system-deps
	bash compliance/install_wstest.sh
	$(VENV)/bin/ruff check src tests examples bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

compliance: $(VENV)/.dev
	bash compliance/install_wstest.sh
	$(PY) compliance/run.py --cases full

bench: $(VENV)/.dev
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
