"""Embedding-analysis speed: 4 fresh encoders (the tiny preset's backbone), N scenes x 8 factors.

Usage: ``python bench/bench_analysis.py [--scenes 2000] [--encoders 4] [--out DIR]``.
Runs the whole analysis twice on the same cache directory: cold (render + embed everything)
and warm (embeddings and probe results from the disk cache). Prints one row per stage; the
target is <= 120 s cold for 4 encoders x 2,000 scenes on a 2-core CPU. Numbers of fresh
encoders mean nothing scientifically; only the timings matter.

Peer: the 120 s target (no library runs this analysis). 2,000 scenes give ~17,000 images per
encoder (~27 TFLOP for 4 tiny ViTs plus CKA), so the embedding is bounded by the CPU's matmul
rate: fp32 unless the CPU has native bf16 (``resolve_precision``). Measured figures and the
machine they came from: docs/performance.md.
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


def backbone_name(cfg: EncoderConfig) -> str:
    """What the preset's encoders are: a timm CNN's name or the ViT's size."""
    return f"{cfg.size} ViT" if cfg.arch == "vit" else cfg.arch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--encoders", type=int, default=4, choices=range(1, len(NAMES) + 1))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="keep the report here")
    args = parser.parse_args()

    preset = load_preset("tiny")
    encoder_cfg = EncoderConfig(**preset["encoder"])
    encoders = {
        NAMES[s]: build_encoder(encoder_cfg.model_copy(update={"seed": s}))
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
        f"\n{args.encoders} {backbone_name(encoder_cfg)} encoders x {args.scenes} scenes x "
        f"{len(cfg.factors)} factors: "
        f"{images} images per encoder, precision {precision}, {torch.get_num_threads()} threads"
    )
    stages = list(dict.fromkeys(s for _, timing in runs.values() for s in timing))
    print(
        "peer: the 120 s target for 4 tiny encoders x 2,000 scenes (no library runs this analysis)"
    )
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
