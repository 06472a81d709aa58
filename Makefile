# deploykit: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deploykit-installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
PYTEST_ARGS ?=

.PHONY: setup data demo test test-avx2 lint clean

setup: $(STAMP)

# constraints-cpu.txt pins the CPU build of torch, so no step here ever pulls a CUDA build.
$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints-cpu.txt torch
	$(PY) -m pip install --quiet -c constraints-cpu.txt -e '.[pipeline,cpu,dev,serve,openvino]'
	touch $@

# Fashion-MNIST, the real labelled data, comes from Debian's dataset-fashion-mnist package.
data: $(FASHION_MNIST)
$(FASHION_MNIST):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist

demo: setup data
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash scripts/demo.sh

test: setup data
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

# The suite as a Zen 3 (AVX2, no VNNI, no native bf16) would run it, on whatever CPU this is:
# deploykit's per-CPU decisions read tests/data/cpuinfo-zen3-avx2.txt, and OpenVINO's and torch's
# oneDNN kernels are capped at AVX2. ONNX Runtime's own kernels cannot be capped: it keeps this
# CPU's. A check, not a proof; a real AVX2 machine runs plain `make test`.
test-avx2: setup data
	DEPLOYKIT_CPUINFO=tests/data/cpuinfo-zen3-avx2.txt ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 \
		OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

# ruff: lint rules and formatting, both configured in pyproject.toml; CI runs this before the tests.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) artifacts .pytest_cache
