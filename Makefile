# Two commands for a newcomer: `make run` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed

.PHONY: run test check migrate clean bench soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The service and its Python client (clients/python: the library and the `experiments` command).
CLIENT := clients/python

$(RUN_STAMP): pyproject.toml constraints.txt $(CLIENT)/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e . -e $(CLIENT)
	touch $@

$(TEST_STAMP): pyproject.toml constraints.txt $(CLIENT)/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]' -e $(CLIENT)
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m entrypoints serve

migrate: $(RUN_STAMP)
	$(BIN)/python -m entrypoints migrate

# The whole suite, its files spread over worker processes: most of its time is spent waiting
# on the servers and databases the integration tests start, so a few more workers than cores.
TEST_WORKERS ?= 3
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(TEST_ARGS)

# The fast tier, for every change: unit and contract tests on the embedded adapters.
check: $(TEST_STAMP)
	$(BIN)/python -m pytest --no-cov -m "(unit or contract) and not postgres and not redis" $(TEST_ARGS)

clean:
	rm -rf $(VENV) .coverage .hypothesis *.egg-info

bench: $(TEST_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

soak: $(TEST_STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)
