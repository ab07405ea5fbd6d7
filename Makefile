# lossbook: `make test` and `make book` set themselves up (a .venv beside this file).
#
#   make test                         unit tests + every notebook via nbmake (smoke budget)
#   make book                         build the HTML book into _build/html
#   make book LOSSBOOK_BUDGET=smoke   ... at a chosen budget (smoke | cpu | gpu | auto)
#                                     (a chapter is re-executed only when its code,
#                                     src/lossbook, the budget or a dependency changed:
#                                     see "The build cache" in README.md)
#   make chapter NB=notebooks/01_pixel_losses.ipynb   build one chapter on its own
#   make sync                         regenerate the notebooks' setup cells, strip outputs
#   make lint                         ruff
#   make clean
#
# An already-installed torch is honoured: when the Python that runs make can import
# torch, the .venv sees it (--system-site-packages) and pip keeps it. Otherwise pip
# installs $(TORCH_SPEC) (default: the newest torch from PyPI).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch
LOSSBOOK_BUDGET ?= auto
export LOSSBOOK_BUDGET
STAMP := $(VENV)/.installed

.PHONY: test book chapter sync lint clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  if $(PYTHON) -c "import torch" 2>/dev/null; then \
	    echo "Using the installed torch: $$($(PYTHON) -c 'import torch; print(torch.__version__)')"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else \
	    $(PYTHON) -m venv $(VENV); \
	    $(BIN)/python -m pip install "$(TORCH_SPEC)"; \
	  fi; \
	fi
	$(BIN)/python -m pip install -q -e ".[book,test,dev,coursework]"
	$(BIN)/python -m playwright --version >/dev/null
	@touch $(STAMP)

test: $(STAMP)
	LOSSBOOK_BUDGET=smoke $(BIN)/python -m pytest tests notebooks --nbmake \
	  --nbmake-timeout=600 -p no:cacheprovider

book: $(STAMP)
	@echo "Building the book at budget: $(LOSSBOOK_BUDGET)"
	$(BIN)/jupyter-book build . -W --keep-going

chapter: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make chapter NB=notebooks/01_pixel_losses.ipynb"; exit 2; }
	$(BIN)/jupyter-book build $(NB)

sync: $(STAMP)
	$(BIN)/python -m lossbook sync-notebooks .

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf _build .pytest_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
