PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test bench lint

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

# Start the whole system with the embedded default (SQLite under var/, dev mode).
run: $(STAMP)
	BROEN_ENV=dev exec $(VENV)/bin/broen dev up

# Run the tests (SQLite always; PostgreSQL too when one answers on 127.0.0.1:5432).
test: $(STAMP)
	$(VENV)/bin/pytest

# Figures, not asserts: every benchmark of docs/PERFORMANCE.md (gateway vs direct reads, the
# policy decision, audit verification, messages, events) on SQLite and PostgreSQL, a load run
# of mixed traffic with Locust, then docs/benchmarks.md from their results (var/bench/*.json).
# A failing bench does not stop the others; the report says what is missing and fails then.
bench: export BENCH_RESULTS_DIR ?= $(CURDIR)/var/bench
bench: $(STAMP)
	mkdir -p $(BENCH_RESULTS_DIR) && rm -f $(BENCH_RESULTS_DIR)/*.json
	-$(VENV)/bin/python bench/run.py
	-$(VENV)/bin/python bench/policy.py
	-$(VENV)/bin/python bench/audit_verify.py
	-$(VENV)/bin/python bench/messaging.py
	-$(VENV)/bin/python bench/events.py
	-$(VENV)/bin/python bench/load.py
	-$(VENV)/bin/python bench/web.py
	$(VENV)/bin/python bench/report.py

# ruff and mypy --strict, as STYLE.md asks; CI runs it before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check shared services gateway broen_cli web tests bench
	$(VENV)/bin/ruff format --check shared services gateway broen_cli web
	$(VENV)/bin/mypy
