# Two entry points for a fresh machine with Python 3.11 (3.12 and 3.13 work too):
#   make repro   runs the main job (dvc repro of every dataset of `datasets`, shapes and coco_mini, two tasks
#                at a time, LANES=N for more; where ../shared/coco-mini is absent, all but coco_mini's, saying
#                so: pipeline/run_plan.py)
#   make test    runs the test suite: the full suite on the oldest supported Python (3.11, in .venv), then,
#                when the newest (3.13) is on PATH, an install into .venv-newest and the fast subset there
# Both create (or reuse) the virtual environment in .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The newest supported Python; `make test` skips its check (saying so) when it is not installed.
# pyenv's shim answers `command -v` even when 3.13 is not selected, so prefer pyenv's own 3.13 binary.
PYTHON_NEWEST ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) python3.13)
VENV_NEWEST ?= .venv-newest
# A fast subset touching every dependency (torch, numpy, pyarrow, zarr-free paths, matplotlib, typer, dvc's yaml):
# params, registry and CLI, metrics, text, losses, the training loop, the report. About 2 minutes.
FAST_TESTS ?= tests/test_params.py tests/test_method_registry.py tests/test_metrics_ndcg.py \
	tests/test_metrics_recall.py tests/test_text_tokenizer.py tests/test_text_vocab.py \
	tests/test_models_losses.py tests/test_training_loop.py tests/test_report_build.py

.PHONY: repro test test-full test-newest venv
venv: $(VENV)/.installed

# The installer. uv (pinned, installed into the venv by pip) unpacks torch's few GB of wheels and byte-compiles
# them on every core, pip on one: 46 s against 81 s on the 2-core machine (bench/install.py). uv reads
# its own index settings (UV_INDEX_URL, ...), not pip.conf; INSTALLER=pip installs with pip alone.
INSTALLER ?= uv
UV_VERSION := 0.13.9
# $(call install,<venv>): the pinned dependencies of pyproject.toml and this project (editable) into <venv>.
ifeq ($(INSTALLER),uv)
install = $(1)/bin/python -m pip install --quiet uv==$(UV_VERSION) && \
	$(1)/bin/python -m uv pip install --quiet --python $(1)/bin/python --compile-bytecode -e '.[test]'
else ifeq ($(INSTALLER),pip)
install = $(1)/bin/python -m pip install --quiet --upgrade pip && $(1)/bin/python -m pip install --quiet -e '.[test]'
else
$(error INSTALLER must be uv or pip, got '$(INSTALLER)')
endif

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(call install,$(VENV))
	touch $@

repro: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pipeline.run_plan $(if $(LANES),--lanes $(LANES))

test: test-full test-newest

test-full: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

$(VENV_NEWEST)/.installed: pyproject.toml
	$(PYTHON_NEWEST) -m venv $(VENV_NEWEST)
	$(call install,$(VENV_NEWEST))
	touch $@

test-newest:
	@if $(PYTHON_NEWEST) --version >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(VENV_NEWEST)/.installed && \
		PATH="$(CURDIR)/$(VENV_NEWEST)/bin:$$PATH" $(VENV_NEWEST)/bin/python -m pytest -q $(FAST_TESTS); \
	else \
		echo "test-newest: $(PYTHON_NEWEST) does not run; skipped the newest-Python check (set PYTHON_NEWEST=...)"; \
	fi

# GPU check (docs/performance.md "GPU check"): the `gpu` tests and the GPU benchmarks in one command, from the
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
