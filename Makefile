# `make demo` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is installed first, pinned, so pip takes the release this machine has on disk
# instead of resolving a newer multi-GB build. Override on other machines:
#   make test TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_RUN := runs/demo

.PHONY: setup demo test test-fast lint bench floors clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The stamp is rebuilt whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/imgcls train --data digits --model lenet5 --epochs 15 --output $(DEMO_RUN) --overwrite
	$(BIN)/imgcls eval $(DEMO_RUN)/model.safetensors --data digits --split test
	@echo "model:   $(DEMO_RUN)/model.safetensors"
	@echo "metrics: $(DEMO_RUN)/metrics.json"

# The whole suite (~12 min on one free core): every tier, trained runs, browsers, servers.
test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest

# The edit-test loop (under 60 s): leaves out the tests marked slow, browser or multiprocess.
test-fast: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -m "not slow and not browser and not multiprocess"

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup
	$(BIN)/python bench/train_throughput.py

# The dependency floors, checked (not part of `make test`): a venv of its own holding the lowest
# release of every direct dependency that pyproject.toml allows (uv's lowest-direct resolution),
# and the fast tiers of the suite run there. Needs uv (`UV=/path/to/uv`) and the package index.
FLOORS_VENV ?= /tmp/imgcls-floors
UV ?= uv
UV_FLAGS ?= $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))

floors:
	rm -rf $(FLOORS_VENV) $(FLOORS_VENV)-pytest
	$(UV) venv -q $(FLOORS_VENV) --python $(PYTHON)
	VIRTUAL_ENV=$(FLOORS_VENV) $(UV) pip install -q --resolution lowest-direct $(UV_FLAGS) -e ".[dev]"
	VIRTUAL_ENV=$(FLOORS_VENV) $(UV) pip list 2>/dev/null | grep -E "^(torch|numpy|pillow|pydantic|onnxruntime|playwright) "
	$(FLOORS_VENV)/bin/python -m pytest -p no:cacheprovider --basetemp=$(FLOORS_VENV)-pytest \
		-m "not browser and not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
