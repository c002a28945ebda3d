# The README's two commands: `make study` (the default study on the embedded default world)
# and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LMMS_STAMP := $(VENV)/.installed-lmms

.PHONY: study test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The tests also run the lmms-eval adapter inside lmms-eval: the `lmms` extra (0.7 GB more; its
# sentencepiece bound in pyproject.toml keeps SentencePiece tokenizers loading beside it), which
# the study does not need. ENCODERLAB_REQUIRE_LMMS makes its test fail, not skip, if lmms-eval
# is missing.
$(LMMS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,lmms]'
	touch $(LMMS_STAMP)

study: $(STAMP)
	$(BIN)/encoderlab study run --preset tiny --out runs/tiny

# The suite runs twice, side by side: as this CPU is and as the other kind (native bf16 or not),
# since `precision: auto` follows the CPU and results differ between the two.
test: $(LMMS_STAMP)
	$(BIN)/ruff check src tests bench
	ENCODERLAB_REQUIRE_LMMS=1 $(BIN)/python tests/run_both_cpu_kinds.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_synthworld.py

clean:
	rm -rf $(VENV) runs .pytest_cache
