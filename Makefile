# Two commands on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
# DeepSpeed's CPU comm op is compiled against this venv's torch: built once by `make setup`,
# kept in the venv (venvs that share one folder rebuild it over each other).
export TORCH_EXTENSIONS_DIR ?= $(abspath $(VENV))/torch_extensions
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup quickstart test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-installs only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev,deepspeed]"
	$(PY) -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()"
	touch $(STAMP)

setup: $(STAMP)

quickstart: setup
	$(VENV)/bin/embedforge run jobs/configs/quickstart.yaml

test: setup
	$(PY) -m pytest tests -q --durations=25

# Each script rewrites its own section of docs/benchmarks.md.
bench: setup
	@for script in tests/benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info platform/*.egg-info
