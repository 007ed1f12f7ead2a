# dymos — `make test` and `make export` each set up what they need; `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# GPU=1 adds TensorRT (the `gpu` extra) and swaps onnxruntime for onnxruntime-gpu. A CUDA torch build: TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# Sticky: once `make setup GPU=1` has run, later targets keep the GPU setup until `make setup GPU=0`.
GPU ?= $(if $(wildcard $(VENV)/.installed-gpu1),1,0)
$(if $(filter-out 0 1,$(GPU)),$(error GPU must be 0 or 1, got '$(GPU)'))
TORCH_SPEC ?= torch==2.13.0
comma := ,
EXTRAS := dev$(if $(filter 1,$(GPU)),$(comma)gpu,)
# One stamp per GPU setting, so `make setup GPU=1` after a CPU setup installs the GPU packages (and back).
STAMP := $(VENV)/.installed-gpu$(GPU)
PYTEST_ARGS ?=
# pytest-xdist workers of `make test` (one per core here; 0 runs the suite in one process)
TEST_WORKERS ?= 2

MODEL ?=
OUT ?= build
EXPORT_ARGS ?=

.PHONY: help setup test test-slow test-gpu lint format export bench bench-gpu train sweep clean clean-venv

help:
	@echo "make setup      create $(VENV) (GPU=1 adds onnxruntime-gpu + TensorRT and stays set; GPU=0 undoes it)"
	@echo "make test       fast test suite (sets up first; TEST_WORKERS=2 xdist workers, 0: one process)"
	@echo "make test-slow  slower end-to-end checks"
	@echo "make test-gpu   GPU/TensorRT tests (skip with a reason without a GPU)"
	@echo "make lint       ruff"
	@echo "make export     export the default model into OUT=build/ (MODEL=<sprites|tiny-pipeline:name|tiny:case|family|checkpoint dir>, EXPORT_ARGS=...)"
	@echo "make bench      benchmarks (ratios measured side by side)"
	@echo "make bench-gpu  DyMoS cost on a CUDA GPU in PyTorch (tools/bench_gpu.py; BENCH_GPU_ARGS=...)"
	@echo "make train      retrain the shipped sprite model (60 min on 2 cores; TRAIN_ARGS=...)"
	@echo "make sweep      the motion-slider sweep of the shipped model (re-exports it first; SWEEP_ARGS=...)"
	@echo "make format     ruff format + autofix"
	@echo "make clean      remove build/ (exports, sweeps, checkpoints)"
	@echo "make clean-venv remove $(VENV) (the next target sets it up again)"

# onnxruntime and onnxruntime-gpu both provide the `onnxruntime` module, and `pip install -e .` puts the CPU one back
# (a base dependency): GPU=1 then reinstalls the GPU wheel over it, GPU=0 swaps back (a reinstall, since removing the
# GPU wheel removes the shared files). The stamp goes first, so a failed setup is redone. A new TORCH_SPEC needs
# `make clean-venv`.
$(STAMP): pyproject.toml Makefile
	rm -f $(VENV)/.installed*
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(if $(filter 1,$(GPU)),$(PY) -m pip uninstall -q -y onnxruntime && $(PY) -m pip install -q --force-reinstall --no-deps onnxruntime-gpu==1.32.0,! $(PY) -m pip show -q onnxruntime-gpu 2>/dev/null || { $(PY) -m pip uninstall -q -y onnxruntime-gpu \
		&& $(PY) -m pip install -q --force-reinstall --no-deps onnxruntime==1.32.0; })
	touch $@

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow and not gpu" $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -q -m "slow" $(PYTEST_ARGS)

test-gpu: setup
	$(PY) -m pytest -q -rs -m "gpu" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

export: setup
	$(VENV)/bin/dymos export $(if $(MODEL),--model $(MODEL),) --out $(OUT) $(EXPORT_ARGS)

BENCH_ARGS ?=

bench: setup
	$(PY) tools/bench.py $(BENCH_ARGS)
	$(PY) tools/bench_runtime.py

bench-gpu: setup
	$(PY) tools/bench_gpu.py --kernels $(BENCH_GPU_ARGS)

TRAIN_ARGS ?=
SWEEP_ARGS ?=

train: setup
	$(PY) tools/train_tiny.py --out dymos/weights/sprites-wan $(TRAIN_ARGS)

sweep: setup
	$(VENV)/bin/dymos export --model sprites --out $(OUT)  # always: an export of older weights would be stale
	$(VENV)/bin/dymos sweep --export $(OUT)/sprites --out $(OUT)/sweep $(SWEEP_ARGS)

clean:
	rm -rf build .pytest_cache

clean-venv:
	rm -rf $(VENV)
