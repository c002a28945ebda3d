# The README's two commands: `make study` (the default study on the embedded default world)
# and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: study test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

study: $(STAMP)
	$(BIN)/encoderlab study run --preset tiny --out runs/tiny

# The suite runs twice: as this CPU is, then as the other kind (native bf16 or not), since
# `precision: auto` follows the CPU and results differ between the two (tests/conftest.py).
OTHER_CPU := from encoderlab.precision import cpu_has_native_bf16 as n; print('no' if n() else 'yes')

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q --native-bf16 "$$($(BIN)/python -c "$(OTHER_CPU)")"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_synthworld.py

clean:
	rm -rf $(VENV) runs .pytest_cache
