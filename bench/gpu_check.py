"""The paper path on a GPU, in minutes: what bench/gpu_check.sh runs (one H100: under 8 minutes).

1. pretraining throughput: ViT-B/16 at 224 px (the paper preset's encoder and heads), CLIP and
   DINO, bf16, a few dozen steps on SynthWorld shards at 224 px: samples/s and MFU (training
   FLOPs per sample counted by torch's FlopCounterMode, over the GPU's dense bf16 peak);
2. VLM stage 1 + 2 steps on the CLIP encoder with a random-init Qwen2-0.5B-shaped LM
   (``vlm.random_lm``; tied 151,936-row embedding: ~494M parameters), bf16: stage-2 samples/s;
3. a few suite items scored by letter on that VLM;
4. the loss curve of one micro config (paper-dry's ViT-B/16 at 32 px, CLIP, 8 steps) on the GPU
   in bf16 against the same run on the CPU in fp32: every step within bf16 tolerance.

``--micro`` runs every part at micro size on whatever device there is (the CPU test of this
script: tests/test_gpu_check.py); the numbers then mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from encoderlab.config import load_preset
from encoderlab.data.reader import SampleDataset, collate, index_source
from encoderlab.data.synth import DataConfig, synthesize
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import build_encoder
from encoderlab.objectives import build_objective
from encoderlab.precision import autocast
from encoderlab.train.distributed import DistInfo
from encoderlab.train.pretrain import PretrainConfig, fit_text_tokenizer, pretrain

# dense bf16 tensor-core peaks (FLOP/s), the denominators of MFU (vendor data sheets, SXM)
PEAKS = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L40S": 362e12}
CURVE_RTOL = 0.05  # bf16 (8 mantissa bits) against fp32, a few steps in: a few per cent


def device_peak(device: torch.device) -> float | None:
    """The device's dense bf16 peak, if known (None on CPUs and unknown GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAKS.items() if k in name), None)


def pretrain_config(
    preset_name: str, objective: str, steps: int, device: torch.device
) -> PretrainConfig:
    """A preset's encoder and heads for ``steps`` steps (``paper``: batch per GPU as the
    objectives' recipes run it; ``paper-dry`` and ``smoke``: batch 8)."""
    preset = load_preset(preset_name)
    batch = {"clip": 256, "dino": 64}[objective] if preset_name == "paper" else 8
    train = {
        **preset["pretrain"],
        "batch_size": batch,
        "samples": batch * steps,
        "warmup_frac": 0.1,
        "precision": "bf16" if device.type == "cuda" else "fp32",
        "num_workers": min(8, os.cpu_count() or 1) if preset_name == "paper" else 0,
        "log_every": 5 if preset_name == "paper" else 1,
        "checkpoint_every": 10_000,
    }
    return PretrainConfig.model_validate(
        {"encoder": preset["encoder"], "objective": preset["objective"], "train": train}
    )


def flops_per_sample(
    objective: str, cfg: PretrainConfig, data: Path, device: torch.device
) -> float:
    """Training FLOPs (forward + backward) per sample, counted by torch on a batch of 2."""
    refs, _ = index_source(data)
    dataset = SampleDataset(refs, image_size=cfg.encoder.image_size)
    task = build_objective(objective, build_encoder(cfg.encoder), cfg.objective).to(device)
    fit_text_tokenizer(task, dataset, None)
    inputs = task.prepare_batch(collate([dataset[i] for i in range(2)]), 0)
    counter = FlopCounterMode(display=False)
    with counter, autocast(cfg.train.precision, device):
        task(inputs)["loss"].backward()
    return counter.get_total_flops() / 2


def losses(run_dir: Path) -> list[float]:
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(r)["loss"] for r in rows]


def steady_rate(run_dir: Path) -> float:
    """Samples/s over the logged windows after the first (compilation, cuDNN autotuning)."""
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in rows[1:]] or [rows[-1]["samples_per_s"]]
    return sum(rates) / len(rates)


def compare_curves(gpu: list[float], cpu: list[float], rtol: float = CURVE_RTOL) -> dict[str, Any]:
    """Step-by-step relative difference of two loss curves; ``ok`` when every step is within
    ``rtol`` and both are finite and of equal length."""
    if len(gpu) != len(cpu) or not gpu:
        return {"ok": False, "why": f"{len(gpu)} vs {len(cpu)} steps"}
    rel = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(gpu, cpu, strict=True)]
    finite = all(math.isfinite(v) for v in (*gpu, *cpu))
    return {"ok": finite and max(rel) <= rtol, "max_rel": max(rel), "rtol": rtol, "steps": len(rel)}


def part_pretrain(args: argparse.Namespace, data: Path, device: torch.device) -> Path:
    peak = device_peak(device)
    clip_run = args.out / "pretrain" / "clip"
    for objective in ("clip", "dino"):
        cfg = pretrain_config("smoke" if args.micro else "paper", objective, args.steps, device)
        run = args.out / "pretrain" / objective
        t0 = time.perf_counter()
        pretrain(objective, cfg, data, run, progress=False, dist_info=DistInfo(device=device))
        wall = time.perf_counter() - t0
        rate = steady_rate(run)
        flops = flops_per_sample(objective, cfg, data, device)
        mfu = f"{rate * flops / peak:.1%}" if peak else "n/a (peak unknown)"
        print(
            f"pretrain {objective}: ViT {cfg.encoder.size} at {cfg.encoder.image_size} px, batch "
            f"{cfg.train.batch_size}, {cfg.train.total_steps} steps, {cfg.train.precision}: "
            f"{rate:,.0f} samples/s, {flops / 1e9:,.1f} GFLOP/sample, MFU {mfu} "
            f"(final loss {losses(run)[-1]:.4f}; {wall:.0f} s with checkpoint)",
            flush=True,
        )
    return clip_run


def part_vlm(args: argparse.Namespace, data: Path, encoder: Path, device: torch.device) -> Path:
    from encoderlab.vlm.config import VLMConfig, load_vlm_config
    from encoderlab.vlm.random_lm import write_random_lm

    lm = write_random_lm(args.out / "lm", "qwen2", "micro" if args.micro else "0.5b")
    n_params = sum(p.numel() for p in _lm_params(lm))
    precision = "bf16" if device.type == "cuda" else "fp32"
    base = load_vlm_config("smoke" if args.micro else "paper")
    batch, steps = (4, 2) if args.micro else (16, args.vlm_steps)

    def stage(lr: float) -> dict[str, Any]:
        train = {"batch_size": batch, "samples": batch * steps, "lr": lr, "precision": precision}
        return {"examples": batch * steps, "train": {**train, "log_every": 1}}

    cfg = VLMConfig.model_validate(
        {
            **base.model_dump(mode="json"),
            "lm_path": str(lm),
            "max_text_tokens": 256,
            "stage1": stage(1e-3),
            "stage2": stage(2e-5),
        }
    )
    from encoderlab.vlm.pipeline import train_vlm

    out = args.out / "vlm"
    t0 = time.perf_counter()
    record = train_vlm(
        [encoder], data.parent, out, cfg, progress=False, dist_info=DistInfo(device=device)
    )
    s2 = record["stages"]["stage2"]
    print(
        f"vlm: random-init Qwen2 ({n_params:,} parameters), stage 2: {steps} steps of "
        f"{batch}, {precision}: {steady_rate(out / 'stage2'):,.1f} samples/s, final loss "
        f"{s2['final']['loss']:.4f} ({time.perf_counter() - t0:.0f} s with stage 1 and saving)",
        flush=True,
    )
    return out


def _lm_params(path: Path):
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).parameters()


def part_suite(args: argparse.Namespace, vlm_dir: Path, device: torch.device) -> None:
    from encoderlab.suite.harness import EvalConfig, evaluate
    from encoderlab.vlm import load

    vlm = load(vlm_dir).to(device)
    size = 32 if args.micro else 224
    cfg = EvalConfig(
        suite="colour,count,read_word",
        items=args.items,
        scoring="letter",
        bootstrap=100,
        workers=1,
        world=WorldConfig(image_size=size),
    )
    t0 = time.perf_counter()
    results = evaluate(vlm, cfg, args.out / "suite", args.out / "suite-items", progress=False)
    scores = {k: round(v["score"], 3) for k, v in results["benchmarks"].items()}
    print(f"suite (letter scoring): {scores} in {time.perf_counter() - t0:.1f} s", flush=True)


def part_curve(args: argparse.Namespace, data: Path, device: torch.device) -> dict[str, Any]:
    """paper-dry's CLIP (smoke's with --micro) for 8 steps on ``device`` (bf16 on a GPU) and
    on the CPU in fp32."""
    curves = {}
    for name, dev in (("device", device), ("cpu", torch.device("cpu"))):
        cfg = pretrain_config("smoke" if args.micro else "paper-dry", "clip", 8, dev)
        run = args.out / "curve" / name
        pretrain("clip", cfg, data, run, progress=False, dist_info=DistInfo(device=dev))
        curves[name] = losses(run)
    check = compare_curves(curves["device"], curves["cpu"])
    verdict = "OK" if check["ok"] else "MISMATCH"
    print(
        f"loss curve, micro CLIP, {device.type} vs cpu fp32: {verdict} (max relative "
        f"difference {check.get('max_rel', float('nan')):.4f}, tolerance {CURVE_RTOL}; "
        f"{device.type}: {[round(v, 4) for v in curves['device']]}, cpu: "
        f"{[round(v, 4) for v in curves['cpu']]})",
        flush=True,
    )
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Peer: the same micro run on the CPU in fp32 (the loss curve); the GPU's "
        "data-sheet dense bf16 peak (MFU).",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--micro", action="store_true", help="micro sizes (a CPU test)")
    parser.add_argument("--steps", type=int, default=30, help="pretraining steps per objective")
    parser.add_argument("--vlm-steps", type=int, default=20)
    parser.add_argument("--items", type=int, default=8, help="suite items per benchmark")
    args = parser.parse_args(argv)
    if args.micro:
        args.steps, args.items = 3, 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    size = 32 if args.micro else 224
    batch = 256 if not args.micro else 8
    world = WorldConfig(image_size=size, image_format="jpg")
    splits = DataConfig(
        train=max(batch * 2, 512), val=64, test=64, shard_size=512, workers=os.cpu_count() or 1
    )
    data = synthesize(world, splits, args.out / "data", progress=False) / "train"
    print(f"data: SynthWorld at {size} px in {time.perf_counter() - t0:.0f} s", flush=True)
    encoder = part_pretrain(args, data, device)
    vlm = part_vlm(args, data, encoder, device)
    part_suite(args, vlm, device)
    check = part_curve(args, data, device)
    print(f"gpu check finished in {time.perf_counter() - t0:.0f} s")
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
