# The README's two commands. Both set up .venv on a fresh machine that has only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Two xdist workers match the 2-core CI machine; override with `make test PYTEST_WORKERS=0`. Whole files per
# worker (loadfile): a file's module-level compiles and fixtures (test_objectives*.py's jitted bundles, the
# errors table's one subprocess) then run once, not once per worker. The slow tier keeps per-test load balancing.
PYTEST_WORKERS ?= 2
PYTEST_DIST ?= loadfile
# The fast tier compiles at XLA's lowest backend (LLVM) optimisation level: its programs are tiny, so compiling
# them is most of its time, and -O0 takes 20-40% less CPU (tests/test_sampling.py, test_lora.py, test_rl.py:
# 84 -> 51 s of user time). Processes the tests start inherit it. The slow tier keeps XLA's default: its
# experiment runs execute more than they compile (and test_rl_smoke's KL of 3.6e-16 is 0.0 at -O0).
FAST_XLA_FLAGS := --xla_backend_optimization_level=0

.PHONY: test test-slow run lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Two tiers: `make test` lints and runs every test not marked `slow` (the functional suite, minutes);
# `make test-slow` runs only the `slow` ones (longer experiment smoke and fault runs). .ci/run runs both.
# pytest exits 5 when it collects (or selects) nothing: that must fail loudly, never pass.
test: lint
	@XLA_FLAGS="$(FAST_XLA_FLAGS) $$XLA_FLAGS" $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist $(PYTEST_DIST) \
		-q -m "not slow"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)"; fi; exit $$rc

test-slow: $(STAMP)
	@$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -m slow; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-slow: pytest collected no slow tests (exit 5)"; fi; exit $$rc

run: $(STAMP)
	$(BIN)/python -m experiments.quickstart --workdir=workdirs/quickstart

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
