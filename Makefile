# Two commands do everything on a fresh machine:  make book   and   make test
# Both create .venv from requirements.lock (exact versions and hashes of every package) when it is missing or
# the lock or pyproject.toml changed, and do nothing more when it is up to date (the stamp records the last
# install). `make lock` regenerates the lock from pyproject.toml (see book/manual_environment.md).
# The one supported Python (pyproject.toml's requires-python; a test keeps them equal). Every recipe that would
# create a venv first checks the interpreter: one `error:` line and exit 2 when it is another version.
PYTHON_VERSION := 3.11
PYTHON ?= $(shell command -v python$(PYTHON_VERSION) || command -v python3)
# $(call check_python,INTERPRETER,FIX): a command that fails with one line unless INTERPRETER is $(PYTHON_VERSION).
check_python = v=$$($(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	test "$$v" = "$(PYTHON_VERSION)" || { echo "error: this project needs Python $(PYTHON_VERSION) but '$(1)' is \
	$${v:+Python }$${v:-not a Python interpreter}; $(2)" >&2; exit 2; }
PYTHON_FIX := install Python $(PYTHON_VERSION) or run make PYTHON=/path/to/python$(PYTHON_VERSION)
VENV := .venv
STAMP := $(VENV)/.installed
LOCK := requirements.lock
PROFILE ?= cpu
PYTEST_ARGS ?=
# The lock tool itself is pinned, so the same pyproject.toml and package index give the same lock.
LOCK_TOOLS := pip==25.3 pip-tools==7.6.2
# `make lock UPGRADE=1` moves every pin to the newest version pyproject.toml allows; without it, pins that
# still satisfy pyproject.toml are kept and only what changed is re-resolved.
UPGRADE ?=

.PHONY: book test env lock rehearse clean-book lab params

env: $(STAMP)

# The lock is installed with --require-hashes; the package itself cannot be hash-pinned, so it comes after,
# without dependencies and with the locked setuptools. Then the lock must satisfy every requirement of
# pyproject.toml, extras included (else: run `make lock`), and `pip check` the installed set.
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(VENV)/bin/python || { $(call check_python,$(PYTHON),$(PYTHON_FIX)) && $(PYTHON) -m venv $(VENV); }
	@$(call check_python,$(VENV)/bin/python,remove $(VENV) and run make again)
	$(VENV)/bin/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@$(VENV)/bin/python -c 'import sys; from repro import provenance; sys.exit(provenance.check_lock())'
	@$(VENV)/bin/python -m pip check
	@touch $(STAMP)

# pip-compile runs in a throwaway venv; no absolute path or date of this machine goes into the lock.
lock:
	@$(call check_python,$(PYTHON),$(PYTHON_FIX))
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install --quiet $(LOCK_TOOLS) && \
	CUSTOM_COMPILE_COMMAND="make lock" "$$tmp/venv/bin/pip-compile" --quiet --all-extras \
	  --build-deps-for=editable --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links --no-emit-trusted-host $(if $(UPGRADE),--upgrade) --output-file=$(LOCK) pyproject.toml
	@echo "$(LOCK): $$(grep -c '^[A-Za-z0-9]' $(LOCK)) packages"

book: $(STAMP)
	$(VENV)/bin/repro book --profile $(PROFILE)

# The paper profile end to end on this machine with shrunk sizes and random weights (repro.rehearse; book/manual_gpus.md).
rehearse: $(STAMP)
	$(VENV)/bin/repro book --profile paper --rehearse

# JupyterLab (the extra `lab` of pyproject.toml, installed from the lock with everything else) opened at the
# repository root: a notebook of book/ runs there as in a build (repro.page.at_root). LAB_ARGS: e.g. --no-browser
# (as root, JupyterLab also wants --allow-root).
LAB_ARGS ?=
lab: $(STAMP)
	@test -x $(VENV)/bin/jupyter-lab || { echo "error: $(VENV) has no JupyterLab (the extra 'lab' of pyproject.toml): run make lock to \
	add it to $(LOCK), then make lab" >&2; exit 2; }
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(LAB_ARGS)

# Rewrite the listing of every params/<profile>/<name>.yml from its template's parameters cell (repro.params).
params: $(STAMP)
	$(VENV)/bin/repro params --write

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-book:
	rm -rf _build
