# The two commands a fresh machine needs:
#   make demo   serve the chat demo on http://127.0.0.1:8000
#   make test   lint, type-check and run every test (installs what they need)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo dashboard editor game test test-latest lint types pytest compliance bench system-deps clean

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
	$(MAKE) test-latest

# The event layer's tests again on the newest Python the machine has (pyenv's 3.13
# here): how handlers are scheduled changed between versions (eager tasks since 3.12),
# and one peer's messages must be handled in order on each. None newer: nothing to do.
LATEST := $(shell PYTHON=$(PYTHON) bash scripts/latest-python.sh)
LATEST_VENV := .venv-latest
# The HTTP fallback included: its sessions feed peers like connections do.
EVENT_TESTS := tests/hub tests/client tests/protocol tests/security/test_robustness.py \
	tests/security/test_fuzz_backpressure.py

$(LATEST_VENV)/.dev: pyproject.toml Makefile
	test -x $(LATEST_VENV)/bin/python || $(LATEST) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q -e '.[redis,jwt,metrics]' \
		pytest pytest-asyncio pytest-timeout hypothesis trustme pydantic aiohttp uvicorn
	touch $@

test-latest:
ifeq ($(LATEST),)
	@echo "test-latest: no Python newer than $$($(PYTHON) --version) here; skipped"
else
	$(MAKE) $(LATEST_VENV)/.dev
	$(LATEST_VENV)/bin/python --version
	$(LATEST_VENV)/bin/pytest -q -p no:cacheprovider $(EVENT_TESTS)
endif

compliance: $(VENV)/.dev
	bash compliance/install_wstest.sh
	$(PY) compliance/run.py --cases full

# The single-node matrix, then the cross-node workloads through Redis (bench/README.md).
bench: $(VENV)/.dev
	$(PY) bench/run.py
	$(PY) bench/cross_node.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) .tools .pytest_cache .mypy_cache .ruff_cache
