# The two commands of the quick start: `make run` and `make test`.
# Both install what they need: a virtualenv with the package and its dev
# extras, and a redis-server binary (Debian's package) when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck pytest docs docs-serve package redis-server browser wrk bench soak fuzz model redteam clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

redis-server:
	@bash scripts/ensure_redis.sh

# The browser test needs Debian's chromium; installed when missing and
# installable, otherwise that test reports a skip with the reason.
browser:
	@bash scripts/ensure_browser.sh || true

run: $(STAMP)
	HOST=$(HOST) PORT=$(PORT) $(BIN)/python -m examples.app

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) redis-server browser
	$(BIN)/pytest -q

test: lint typecheck $(DOCS_STAMP) pytest  # pytest builds the docs site strictly (tests/test_docs_site.py)


$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

# The documentation site (mkdocs.yml over docs/) into site/. --strict: a broken
# link, a page left out of the nav or an unresolved API reference fails.
# Never add --quiet: it hides the warnings that --strict counts, and the build
# then passes whatever is broken (tests/test_docs_site.py checks both ways).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# sdist + wheel into dist/, then twine's metadata check (README renders on PyPI).
# make test covers the same through tests/test_packaging.py, which also installs
# the wheel and an editable install into fresh venvs and type-checks against them.
package: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist . >/dev/null 2>&1 || $(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# wrk drives the HTTP benchmark (Debian's package, installed when missing).
wrk:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" -eq 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || \
		echo "note: wrk is missing and could not be installed; the HTTP benchmark is skipped"

bench: $(BENCH_STAMP) redis-server wrk
	$(BIN)/python -m bench

# The long fuzzing campaign: >= 1,000,000 inputs across the verifier, refresh
# tokens and the HTTP layer (~7 minutes on one core); prints the counts.
fuzz: $(STAMP)
	$(BIN)/python -m scripts.fuzz

# The long store-model campaign: MemoryStore against RedisStore on one Redis and
# on a 3-master cluster, 1000 random operation sequences each (make test runs
# 25 on one Redis); a divergence prints its minimal sequence.
model: $(STAMP) redis-server
	JWTSESS_MODEL_EXAMPLES=1000 JWTSESS_MODEL_BACKENDS=redis,cluster \
		$(BIN)/pytest -q -p no:cacheprovider tests/test_store_model.py

# A bounded (60 s) loopback soak of mixed traffic against uvicorn and Redis:
# throughput, errors (target 0) and RSS over time.
soak: $(STAMP) redis-server
	$(BIN)/python -m scripts.soak --seconds 60

# The black-box review: attacks the demo as shipped (python -m examples.app and
# examples.fastapi_app under uvicorn) over loopback on six deployments (HS256, RS256,
# ES256, EdDSA; MemoryStore and a private Redis) plus a short-lived one for the
# revocation-comeback case; prints cases, forged tokens accepted, 5xx, tracebacks and
# flaws (~5 minutes). Server logs go to .redteam/. Not part of make test.
redteam: $(STAMP) redis-server
	$(BIN)/python -m scripts.redteam

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site dist build .redteam
