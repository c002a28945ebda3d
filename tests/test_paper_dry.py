"""The paper-dry preset: the paper preset's code paths (ViT-B/16, real-format shards by path, a
Hugging Face LM by path, letter scoring) at micro size on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from encoderlab.study.config import load_study

pytest.importorskip("sentencepiece", reason="paper-dry's LM has a SentencePiece tokenizer")

# what decides which code runs: the same in paper-dry as in the paper preset
SAME = [
    ("encoder", "size"),
    ("encoder", "patch_size"),
    ("encoder", "stem"),
    ("objective", "dino"),
    ("vlm", "tap_layer"),
    ("vlm", "mc_fraction"),
    ("vlm", "short_option_questions"),
    ("vlm", "stage2_projector_lr_scale"),
    ("vlm", "standardize_features"),
    ("vlm", "pool_tokens"),
    ("suite", "scoring"),
    ("fused",),
]


def _get(cfg: object, path: tuple[str, ...]) -> object:
    for part in path:
        cfg = getattr(cfg, part)
    return cfg.model_dump() if hasattr(cfg, "model_dump") else cfg


def test_paper_dry_takes_the_paper_presets_code_paths() -> None:
    paper, dry = load_study("paper"), load_study("paper-dry")
    for path in SAME:
        if path == ("objective", "dino"):  # the head and temperatures; crops scaled to 32 px
            keep = {"out_dim", "hidden_dim", "bottleneck_dim", "n_local_crops", "teacher_temp"}
            a, b = (_get(c, path) for c in (paper, dry))
            assert {k: a[k] for k in keep} == {k: b[k] for k in keep}
            continue
        assert _get(dry, path) == _get(paper, path), path
    assert dry.data_path is not None and dry.vlm.lm_path is not None  # both by path
    assert dry.encoder.image_size < paper.encoder.image_size


@pytest.mark.slow
def test_paper_dry_study_runs_its_stages_on_the_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    run = [sys.executable, "-m"]
    prep = subprocess.run(
        [*run, "encoderlab.study.dry", "--preset", "paper-dry"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert prep.returncode == 0, prep.stderr[-3000:]
    inputs = tmp_path / "runs" / "paper-dry-inputs"
    with tarfile.open(next((inputs / "data" / "train").glob("*.tar"))) as tar:
        assert {Path(n).suffix for n in tar.getnames()} == {".jpg", ".txt", ".json"}
    proc = subprocess.run(
        [*run, "encoderlab", "study", "run", "--preset", "paper-dry", "--only", "suite/clip"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = tmp_path / "runs" / "paper-dry"
    for stage in ("data", "pretrain/clip", "lm", "vlm/clip", "suite/clip"):
        assert (out / stage / "stage.json").is_file(), stage
    encoder = json.loads((out / "pretrain/clip/encoder.json").read_text())
    assert encoder["size"] == "vit_base_patch16_224"
    vlm = json.loads((out / "vlm/clip/vlm.json").read_text())
    assert vlm["lm"]["source"] == "runs/paper-dry-inputs/lm"
    lm_cfg = json.loads((out / "vlm/clip/lm/config.json").read_text())
    assert lm_cfg["architectures"] == ["LlamaForCausalLM"]
    results = json.loads((out / "suite/clip/results.json").read_text())
    assert results["config"]["scoring"] == "letter"
    assert results["benchmarks"] and all(b["n"] >= 1 for b in results["benchmarks"].values())
