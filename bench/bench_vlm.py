"""VLM training time: stage 0 once, then stages 1 + 2 for a "clip" and a "dino" VLM.

Usage: ``python bench/bench_vlm.py [--preset tiny] [--out bench/out/vlm] [--data DIR]``.
Peer: the budgets, on a 2-core CPU (tiny preset): stage 0 <= 3 min, each VLM (stages 1 + 2,
feature cache included) <= 5 min. Measured figures: docs/performance.md.

With ``--runs``, the VLMs read trained encoder runs; otherwise the encoders are random-init tiny ViTs (64 px, patch 8:
64 image tokens) saved in a pretraining run's layout; "clip" and "dino" differ only by init
seed. Their cost is what matters here: a VLM's training time does not depend on the encoder's
weights. Prints wall-clock and CPU seconds (on a shared machine, CPU time shows the code's
cost) and the blank-image sanity check (about zero gain with random encoders).
Loss curves land in ``OUT/vlm-*/stage*/metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from encoderlab.data.synth import DataConfig, synthesize
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig
from encoderlab.vlm import load, load_vlm_config, train_vlm
from encoderlab.vlm.checkpoint import write_encoder_run
from encoderlab.vlm.data import read_world, train_split
from encoderlab.vlm.lm import pretrain_lm
from encoderlab.vlm.sanity import image_sanity


def timed(fn, *args, **kw):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--out", type=Path, default=Path("bench/out/vlm"))
    parser.add_argument("--data", type=Path, default=None, help="existing data set (else made)")
    parser.add_argument("--encoders", nargs="+", default=["clip", "dino"])
    parser.add_argument(
        "--runs", nargs="+", type=Path, default=None,
        help="trained encoder runs (e.g. runs/tiny/pretrain/clip) instead of random-init ones",
    )  # fmt: skip
    parser.add_argument("--fresh", action="store_true", help="delete OUT first (no caches)")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    cfg = load_vlm_config(args.preset)
    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"torch threads: {torch.get_num_threads()}")

    data = args.data
    if data is None:
        need = max(cfg.stage0.examples, cfg.image_examples)
        data = args.out / "data"
        splits = DataConfig(train=need, val=256, test=16, shard_size=2000)
        _, wall, _ = timed(synthesize, WorldConfig(image_size=64), splits, data, progress=False)
        print(f"data: {need} training samples ({wall:.1f} s)")

    rows = []
    world = read_world(train_split(data), cfg.stage0.examples, image_size=64, images=False)
    _, wall, cpu = timed(pretrain_lm, cfg, world, args.out / "lm-cache", args.progress)
    rows.append(("stage 0 (LM)", cfg.stage0.train.total_steps, wall, cpu, "", ""))
    runs = args.runs or [
        write_encoder_run(EncoderConfig(size="tiny", seed=seed), args.out / "enc" / name)
        for seed, name in enumerate(args.encoders)
    ]
    for run in runs:
        name = Path(run).name
        out = args.out / f"vlm-{name}"
        shutil.rmtree(out, ignore_errors=True)
        record, wall, cpu = timed(
            train_vlm, [run], data, out, cfg, args.out / "lm-cache", args.progress
        )
        st = record["stages"]
        losses = " / ".join(f"{st[s]['final'].get('loss', float('nan')):.3f}" for s in st)
        sanity = image_sanity(load(out), data, n=256, scoring="letter")  # cloze beside it
        cloze = sanity["cloze"]
        check = (
            f"{sanity['real']:.2f} vs {sanity['blank']:.2f} (cloze "
            f"{cloze['real']:.2f} vs {cloze['blank']:.2f})"
        )
        steps = sum(st[s]["steps"] for s in st)
        rows.append((f"VLM {name} (stages 1+2)", steps, wall, cpu, losses, check))
        (out / "bench.json").write_text(json.dumps({"wall_s": wall, "cpu_s": cpu, **sanity}))

    print("\npeer: the budgets (stage 0 <= 180 s once per study; stages 1 + 2 <= 300 s per VLM)")
    print(f"{'run':<26} {'steps':>6} {'wall s':>8} {'cpu s':>8}  {'final loss s1 / s2':<20} "
          f"{'acc real vs blank: letter (cloze)'}")  # fmt: skip
    for name, steps, wall, cpu, losses, check in rows:
        print(f"{name:<26} {steps:>6} {wall:>8.1f} {cpu:>8.1f}  {losses:<20} {check}")


if __name__ == "__main__":
    main()
