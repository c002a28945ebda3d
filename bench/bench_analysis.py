"""Embedding-analysis speed: 4 fresh encoders (the tiny preset's), N scenes x 8 factors.

Usage: ``python bench/bench_analysis.py [--scenes 2000] [--encoders 4] [--out DIR]``.
Runs the whole analysis twice on the same cache directory: cold (render + embed everything)
and warm (embeddings and probe results from the disk cache). Prints one row per stage; the
target is <= 120 s cold for 4 encoders x 2,000 scenes on the 2-core dev machine. Numbers of
fresh encoders mean nothing scientifically; only the timings matter.

Budget note: 2,000 scenes give ~17,000 images per encoder (~72,000 forward passes for 4
encoders plus CKA: ~27 TFLOP with the 0.36-GFLOP dim-192 / 6-block ViT, ~8 TFLOP with the
0.11-GFLOP `mini` one). With tiny that fits 120 s only with native bf16 (AVX-512-BF16/AMX, or
a GPU); on an AVX2-only CPU inference runs in fp32 (see ``resolve_precision``) and the
embedding alone is bounded by the fp32 matmul rate. The mini ViT's analysis stage took 124 s
there in fp32.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from encoderlab.config import load_preset
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig, build_encoder
from encoderlab.evaluate.analyze import AnalysisConfig, analyze
from encoderlab.evaluate.embeddings import resolve_precision

NAMES = ("clip", "siglip", "clip-text", "dino", "enc4", "enc5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--encoders", type=int, default=4, choices=range(1, len(NAMES) + 1))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="keep the report here")
    args = parser.parse_args()

    preset = load_preset("tiny")
    encoders = {
        NAMES[s]: build_encoder(EncoderConfig(**{**preset["encoder"], "seed": s}))
        for s in range(args.encoders)
    }
    cfg = AnalysisConfig(scenes=args.scenes, batch_size=args.batch_size)
    world = WorldConfig(**preset["world"])
    work = Path(tempfile.mkdtemp(prefix="bench_analysis_"))
    out = args.out or work / "out"
    runs = {}
    try:
        for label in ("cold", "warm"):
            start = time.perf_counter()
            result = analyze(encoders, out, cfg, world=world, cache_dir=work / "cache")
            runs[label] = (time.perf_counter() - start, result["timing"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    images = sum(result["sensitivity"]["variants"].values()) + args.scenes
    cka_images = min(cfg.cka.images, args.scenes)
    precision = resolve_precision(cfg.precision, torch.device("cpu"))
    print(
        f"\n{args.encoders} {preset['encoder']['size']} encoders x {args.scenes} scenes x "
        f"{len(cfg.factors)} factors: "
        f"{images} images per encoder, precision {precision}, {torch.get_num_threads()} threads"
    )
    stages = list(dict.fromkeys(s for _, timing in runs.values() for s in timing))
    print(f"{'stage':<20} {'cold s':>8} {'warm s':>8}")
    for stage in stages:
        cold, warm = (runs[k][1].get(stage, float("nan")) for k in ("cold", "warm"))
        print(f"{stage:<20} {cold:>8.1f} {warm:>8.1f}")
    print(f"{'total':<20} {runs['cold'][0]:>8.1f} {runs['warm'][0]:>8.1f}")
    embed_s = runs["cold"][1].get("embed scenes", float("nan"))
    rate = args.encoders * images / embed_s
    print(f"embedding: {rate:.0f} images/s (all encoders), + {cka_images} per encoder for CKA")
    verdict = "meets" if runs["cold"][0] <= 120 else "misses"
    print(f"cold run {verdict} the 120 s target")


if __name__ == "__main__":
    main()
