# `make run` and `make test` each create .venv on first use and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: run test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# One stamp per extras set, so `make test` re-installs only when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[llamacpp]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[test]'
	touch $@

# Serves Gemma 3 270M from two llama.cpp pools (F16 and Q4_K_M) on 127.0.0.1:8000 and
# leaves it running; `.venv/bin/orchestrator down` stops it.
run: $(VENV)/.installed-run
	$(BIN)/orchestrator discover
	$(BIN)/orchestrator plan clusters/local.yaml
	-@$(BIN)/orchestrator down >/dev/null 2>&1
	$(BIN)/orchestrator up clusters/local.yaml --sample
	$(BIN)/orchestrator status

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
