# The two commands of the README are `make compare` (the main job) and `make test`.
PYTHON ?= python3
# A CPU build of torch is installed first when no torch is importable, so that the open
# `torch>=2.2` requirement does not pull a multi-GB CUDA build. Override to choose another build,
# e.g. `make test TORCH="torch --index-url https://download.pytorch.org/whl/cu124"`.
TORCH ?= torch==2.13.0

.PHONY: install test test-all compare lint bench

install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH)"
	$(PYTHON) -m pip install -e ".[test,tensorboard,dev,popgym,ray,zoo]"
	# gymnasium >= 1.0 no longer loads plugins: let gymnasium.make("rl_warmup/...") work without `import envs`
	$(PYTHON) -m envs.gymnasium_plugin install

test: install
	$(PYTHON) -m pytest -n 2 --timeout 900 -q

test-all: install
	$(PYTHON) -m pytest -n 2 -q -m ""

compare: install
	$(PYTHON) scripts/compare.py

lint:
	$(PYTHON) -m ruff check rl_warmup envs scripts tests
