"""docs/memory.md's tables come from the code's own sizes (bench/memory_table.py) and match it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location(
        "memory_table", ROOT / "bench" / "memory_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_sizes_are_the_codes_and_the_doc_is_current(capsys) -> None:
    mt = _module()
    s = mt.code_sizes(8)
    assert s.lm_params == 6_738_415_616  # Llama-2-7B / Vicuna-7B v1.5, exactly
    assert (s.image_tokens, s.vision_dim, s.image_side) == (196, 768, 224)  # ViT-B/16 at 224
    assert (s.examples, s.global_batch) == (665_000, 128)  # LLaVA-1.5's stage 2
    ddp = sum(gib for _, gib in mt.device_rows(s, "ddp-fp32"))
    fsdp = sum(gib for _, gib in mt.device_rows(s, "fsdp2"))
    assert ddp > 80 > fsdp  # plain DDP does not fit an 80 GB GPU; the chosen sharding does
    text = mt.main([])
    assert text in (ROOT / "docs" / "memory.md").read_text()  # regenerate the doc if this fails
