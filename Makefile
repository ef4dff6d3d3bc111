# hybrid-router: `make run` starts the router (local profile), `make test` runs every test.
# Both create .venv and install the project into it first (once, and again when pyproject.toml changes).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch==2.13.0 as a CPU build: taken from /opt/wheels where the machine has it, else from
# PyTorch's CPU index (a plain PyPI torch is a multi-GB CUDA build).
TORCH_INDEX := $(if $(wildcard /opt/wheels/torch-2.13.0*),,--extra-index-url https://download.pytorch.org/whl/cpu)

.PHONY: install run test test-fast test-unit test-integration check bench train-router clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_INDEX) -e ".[test]"
	touch $@

run: install  ## start the router on http://localhost:8000 (serve run, local CPU profile), metrics on :8080
	BIN=$(BIN) scripts/run-local.sh

test: install  ## unit tests (no Ray), then integration tests (one real Ray cluster)
	$(BIN)/python -m pytest tests/unit tests/monitoring tests/integration -p no:cacheprovider

# Every benchmark, one after the other (~25 min on 2 cores); each rewrites its own section of
# benchmarks/RESULTS.md and its plots in benchmarks/plots/. LiteLLM gets its own venv there.
# hybrid_replay runs twice: the seed's day, then the document-reuse day (prompt caching).
BENCHMARKS := routing_quality decision_speed hybrid_replay router_overhead ingress_memory burst

bench: $(VENV)/.bench-installed  ## reproduce benchmarks/RESULTS.md (see benchmarks/README.md)
	for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py || exit 1; done
	$(BIN)/python benchmarks/hybrid_replay.py --workload document-reuse

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q $(TORCH_INDEX) -e ".[test,bench]"
	touch $@

# Retrains the quality predictor (app/routing/quality/quality_model.json) from data/routing/ and the
# config's quality.roles; deterministic. FEEDBACK=feedback.jsonl folds in exported /v1/feedback ratings
# (python -m app.feedback.export), FEEDBACK=store reads them from the ledger store.
train-router: install  ## rebuild the quality predictor that `auto` routes with
	$(BIN)/python -m pip install -q $(TORCH_INDEX) -e ".[train]"
	$(BIN)/python -m app.routing.quality.train $(if $(filter store,$(FEEDBACK)),--feedback-store,$(if $(FEEDBACK),--feedback $(FEEDBACK)))

# The quality gate: lint (ruff, the rules in pyproject.toml), formatting, and types (mypy, strict on app/).
check: install  ## lint, format check and types; CI runs it before the tests
	$(BIN)/ruff check app deployments tests benchmarks scripts
	$(BIN)/ruff format --check app deployments tests benchmarks scripts
	$(BIN)/mypy

test-fast: install  ## the unit tests without the slow ones (no Ray, CPU engine, fuzzing or process kills): ~1 min on 2 cores
	$(BIN)/python -m pytest tests/unit -m "not slow" -p no:cacheprovider -q

test-unit: install
	$(BIN)/python -m pytest tests/unit -p no:cacheprovider

test-integration: install
	$(BIN)/python -m pytest tests/integration -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info
