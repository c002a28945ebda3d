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

# The suite runs twice, side by side: as this CPU is and as the other kind (native bf16 or not),
# since `precision: auto` follows the CPU and results differ between the two.
test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python tests/run_both_cpu_kinds.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_synthworld.py

clean:
	rm -rf $(VENV) runs .pytest_cache
