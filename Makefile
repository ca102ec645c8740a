# Two entry points for a fresh machine with only Python 3.11:
#   make repro   runs the main job (dvc repro on the embedded dataset)
#   make test    runs the test suite
# Both create (or reuse) the virtual environment in .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: repro test venv
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

repro: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

# GPU check (README "GPU check"): the `gpu` tests and the GPU benchmarks in one command, from the
# source tree. GPU_PYTHON is the interpreter that holds torch there; the wheels in $(GPU_WHEELS)
# (what the check imports beyond a plain torch machine: zarr and its needs) go to a throwaway dir.
GPU_PYTHON ?= python3
GPU_WHEELS ?= .whl
GPU_SITE ?= /tmp/xmr-gpu-site
GPU_OUT ?= reports/gpu_check.json
GPU_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64,--platform $(p))
GPU_WHEEL_PINS := zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0

.PHONY: gpu-wheels gpu-check gpu-dry-run
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(GPU_PLATFORMS) -d $(GPU_WHEELS) $(GPU_WHEEL_PINS)

gpu-check:
	@if ls $(GPU_WHEELS)/*.whl >/dev/null 2>&1; then \
		$(GPU_PYTHON) -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
			--target $(GPU_SITE) $(GPU_WHEELS)/*.whl || exit 1; fi
	PYTHONPATH="$(CURDIR):$(GPU_SITE)" PYTHONUNBUFFERED=1 $(GPU_PYTHON) bench/gpu_check.py --out $(GPU_OUT) \
		--record reports/benchmarks.md

gpu-dry-run:
	PYTHONPATH="$(CURDIR):$(GPU_SITE)" $(GPU_PYTHON) bench/gpu_check.py --dry-run --out /tmp/xmr-gpu-dry-run.json
