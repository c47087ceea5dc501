# Two commands do everything on a fresh machine:  make book   and   make test
# Both create .venv with the pinned environment when it is missing or pyproject.toml changed, and do
# nothing more when it is up to date (the stamp file records the last install).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
PROFILE ?= cpu
PYTEST_ARGS ?=

.PHONY: book test env clean-book

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

book: $(STAMP)
	$(VENV)/bin/repro book --profile $(PROFILE)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-book:
	rm -rf _build
