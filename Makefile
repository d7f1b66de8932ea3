# Aftershock: `make run` to try it, `make test` to check it. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := data/demo
DEMO_USERS ?= 3000
PYTEST_ARGS ?=
API_PORT ?= 8000
DASHBOARD_PORT ?= 8501

.PHONY: install run test test-fast lint bench lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	test -f $(DEMO)/interactions.csv || $(BIN)/aftershock demo generate --users $(DEMO_USERS) --seed 7 --out $(DEMO)
	$(BIN)/aftershock ingest exposures $(DEMO)/exposures.csv
	$(BIN)/aftershock ingest interactions $(DEMO)/interactions.csv
	$(BIN)/aftershock status
	$(BIN)/aftershock analyze --experiment chat-model-upgrade --out data/analysis
	test -f data/plan.json || $(BIN)/aftershock plan --experiment chat-model-upgrade \
		--feature chat-model --rollback-value previous-model --current-value new-model \
		--record-only --out data/plan.json
	@echo "An admin token for the API (shown once; the previous make-run token is revoked):"
	@$(BIN)/aftershock tokens create --name make-run --scope admin --replace
	@echo "API: http://localhost:$(API_PORT)/docs   dashboard: http://localhost:$(DASHBOARD_PORT)"
	@# Ctrl-C reaches both servers (one process group); the trap only stops the API when the
	@# dashboard ends otherwise, and says nothing if the API has already gone.
	$(BIN)/aftershock serve --port $(API_PORT) & api=$$!; \
		trap 'kill $$api 2>/dev/null || true' EXIT; \
		$(BIN)/streamlit run app.py --server.port $(DASHBOARD_PORT)  # on 127.0.0.1: .streamlit/config.toml

# Everything, PostgreSQL and the browser included. The PostgreSQL variants run against this
# server; they are skipped when it does not answer (CI sets AFTERSHOCK_REQUIRE_POSTGRES=1 to
# fail instead). Tests marked slow run first, shared out between the xdist workers.
test: export AFTERSHOCK_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
test: install
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

# The quick loop while editing: SQLite only, no browser, nothing marked slow.
test-fast: install
	$(BIN)/python -m pytest -n auto -m "not slow and not postgres and not browser" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy analytics rollout

bench: install
	$(BIN)/python -m bench

# Re-resolve the pinned versions (run after changing dependencies in pyproject.toml).
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^aftershock' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
