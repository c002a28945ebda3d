"""Pretraining end to end on the smoke world: DDP equivalence, exact resume, run artefacts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from encoderlab.config import load_preset
from encoderlab.data.synth import DataConfig, synthesize
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig
from encoderlab.errors import EncoderlabError
from encoderlab.objectives import ObjectiveConfig
from encoderlab.train.config import TrainConfig
from encoderlab.train.pretrain import (
    PretrainConfig,
    load_encoder,
    load_objective,
    pretrain,
    run_names,
)

STEPS = 5
BATCH = 32


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    preset = load_preset("smoke")
    out = tmp_path_factory.mktemp("data")
    data = DataConfig(train=BATCH * STEPS, val=32, test=32, shard_size=64, workers=1)
    synthesize(WorldConfig(**preset["world"]), data, out, progress=False)
    return out / "train"


# The smoke preset as shipped (micro ViT), and with a micro timm ConvNeXt as the shared
# backbone (stride 16, so DINO's 16-px local crops fit) and the text towers' own BPE trained
# on the captions (text.tokenizer: world), which every rank and a resumed run must rebuild.
CNN_ENCODER = {
    "arch": "convnext_atto",
    "timm_kwargs": {"dims": [16, 24, 32, 48], "depths": [1, 1, 1, 1], "output_stride": 16},
    "image_size": 32,
    "seed": 0,
}
WORLD_TEXT = {"tokenizer": "world", "vocab_size": 256, "tokenizer_captions": 100}


def _smoke(arch: str) -> dict:
    preset = load_preset("smoke")
    if arch == "cnn":
        preset["encoder"] = dict(CNN_ENCODER)
        for name in ("clip", "siglip"):
            preset["objective"][name]["text"].update(WORLD_TEXT)
    return preset


def _fp32_preset(tmp_path: Path, arch: str = "vit") -> Path:
    preset = _smoke(arch)
    preset["pretrain"].update(
        batch_size=BATCH, samples=BATCH * STEPS, precision="fp32", log_every=1, num_workers=0
    )
    path = tmp_path / "fp32.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows]


def _run(nproc: int, objective: str, preset: Path, data: Path, out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m"]
    if nproc > 1:
        cmd += ["torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m"]
    cmd += ["encoderlab", "pretrain", "--objective", objective, "--preset", str(preset)]
    cmd += ["--data", str(data), "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vit", "cnn"])
@pytest.mark.parametrize("objective", ["clip", "siglip", "dino"])
def test_two_ranks_follow_the_single_process_trajectory(
    objective: str, arch: str, smoke_data: Path, tmp_path: Path
) -> None:
    preset = _fp32_preset(tmp_path, arch)
    _run(1, objective, preset, smoke_data, tmp_path / "one")
    _run(2, objective, preset, smoke_data, tmp_path / "two")
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == STEPS
    assert len(set(one)) > 1  # the loss moves: the runs really trained
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-4, atol=0)


def _cfg(arch: str = "vit") -> PretrainConfig:
    preset = _smoke(arch)
    train = {**preset["pretrain"], "batch_size": BATCH, "samples": BATCH * 4, "precision": "fp32"}
    train.update(checkpoint_every=2, num_workers=0)
    return PretrainConfig(
        encoder=EncoderConfig(**preset["encoder"]),
        objective=ObjectiveConfig(**preset["objective"]),
        train=TrainConfig(**train),
    )


@pytest.mark.parametrize("arch", ["vit", "cnn"])
@pytest.mark.parametrize("objective", ["clip", "dino"])
def test_killed_and_resumed_run_is_bitwise_equal(
    objective: str, arch: str, smoke_data: Path, tmp_path: Path
) -> None:
    cfg = _cfg(arch)
    pretrain(objective, cfg, smoke_data, tmp_path / "full", progress=False)
    pretrain(objective, cfg, smoke_data, tmp_path / "cut", progress=False, max_steps=2)
    assert not (tmp_path / "cut" / "run.json").exists()  # an interrupted run is not complete
    pretrain(objective, cfg, smoke_data, tmp_path / "cut", progress=False)
    full = load_file(str(tmp_path / "full" / "objective.safetensors"))
    cut = load_file(str(tmp_path / "cut" / "objective.safetensors"))
    assert full.keys() == cut.keys()
    for key in full:
        assert torch.equal(full[key], cut[key]), key


def test_world_tokenizer_is_kept_with_the_run(smoke_data: Path, tmp_path: Path) -> None:
    """A CNN CLIP with the captions' own BPE: the tokenizer is written beside the weights and
    read back by load_objective, so zero-shot embeds text exactly as training did."""
    run = tmp_path / "clip"
    pretrain("clip", _cfg("cnn"), smoke_data, run, progress=False)
    assert (run / "text_tokenizer.json").is_file()
    task = load_objective(run)
    assert task.text.transformer.token_embedding.weight.shape[0] == 256
    texts = ["a red fish", "two blue cars"]
    tokens = task.text.tokenize(texts)["input_ids"]
    assert int(tokens.max()) == 255  # the world BPE's end of text, not OpenCLIP's 49407
    assert task.embed_text(texts).shape == (2, 64)
    assert load_encoder(run)(torch.zeros(2, 3, 32, 32)).shape == (2, 48)


def test_run_artefacts_and_sibling_diffs(smoke_data: Path, tmp_path: Path) -> None:
    for objective in ("clip", "dino"):
        pretrain(objective, _cfg(), smoke_data, tmp_path / objective, progress=False)
    siblings = json.loads((tmp_path / "clip" / "siblings.json").read_text())
    assert list(siblings["dino"]) == ["objective"], "only the objective may differ"
    enc = load_encoder(tmp_path / "dino")
    assert not any(p.requires_grad for p in enc.parameters())
    images = torch.zeros(2, 3, 32, 32)
    assert enc(images).shape == (2, enc.embed_dim)
    with pytest.raises(EncoderlabError, match="not a finished encoderlab run"):
        load_encoder(tmp_path)
    # Runs are labelled by objective; two runs of one objective (two studies' CLIPs) by
    # directory, then numbered, so the control check and analysis never merge them.
    shutil.copytree(tmp_path / "clip", tmp_path / "other" / "clip")
    shutil.copytree(tmp_path / "clip", tmp_path / "clip-b")
    runs = [tmp_path / "clip", tmp_path / "dino", tmp_path / "clip-b", tmp_path / "other" / "clip"]
    assert run_names(runs) == ["clip", "dino", "clip-b", "clip-2"]


def test_cli_errors_are_one_line(smoke_data: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "encoderlab", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    bad = run("pretrain", "--objective", "mae", "--data", str(smoke_data), "--out", str(tmp_path))
    assert bad.returncode == 2 and "unknown objective 'mae'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    missing = run(
        "pretrain", "--objective", "clip", "--data", "/nonexistent", "--out", str(tmp_path)
    )
    assert missing.returncode == 2 and "/nonexistent" in missing.stderr
    preset = load_preset("smoke")
    preset["encoder"]["size"] = "huge"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(preset))
    size = run(
        "pretrain",
        "--objective",
        "clip",
        "--data",
        str(smoke_data),
        "--out",
        str(tmp_path / "r"),
        "--preset",
        str(tmp_path / "bad.yaml"),
    )
    assert size.returncode == 2 and "encoder.size" in size.stderr and "huge" in size.stderr
