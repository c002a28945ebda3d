"""Which schedule and DINO knobs let every objective learn on the shared ResNet-10-T?

    .venv/bin/python experiments/backbone_variants/run.py [--variants NAME ...] [--data DIR]

Each variant is the preset ``experiments/backbone-resnet10t-bn`` (ResNet-10-T, global
BatchNorm, 300 steps of 64 at lr 1e-3) with a few keys changed: the shared lr, or DINO's own
knobs (teacher temperature and EMA momentum, BN in the head, crop scales, prototypes). One
objective is trained per variant (``encoderlab pretrain``) and probed on the held-out
one-object scenes (``encoderlab probe``); the table prints linear-probe and kNN category
accuracy (majority class 4.3%) and the pretraining time. Runs go to
``runs/experiments/backbone_variants/<variant>``; a finished variant is not retrained.
``--data`` is a SynthWorld data directory of the tiny world (``runs/tiny/data`` after
``make study``; its shards are the same for this preset).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from encoderlab.config import load_preset, merge_sections

BASE = "experiments/backbone-resnet10t-bn"
# DINO's ResNet-50 knobs, scaled to the schedule (tiny's DINO today)
RESNET_RECIPE: dict[str, Any] = {
    "momentum_teacher": 0.99,
    "teacher_temp": 0.04,
    "warmup_teacher_temp": 0.04,
    "head_batchnorm": False,
    "global_crop_scale": [0.14, 1.0],
    "local_crop_scale": [0.05, 0.14],
    "out_dim": 256,
}


def resnet_dino(lr: float = 2.0e-3, **knobs: Any) -> tuple[str, dict[str, Any]]:
    """A DINO variant: the ResNet knobs with ``knobs`` changed, at shared lr ``lr`` (tiny's)."""
    return ("dino", {"pretrain": {"lr": lr}, "objective": {"dino": {**RESNET_RECIPE, **knobs}}})


# name: (objective, keys changed from BASE)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "clip-lr2e-3": ("clip", {"pretrain": {"lr": 2.0e-3}}),
    "dino-m0.9-t0.04": (
        "dino",
        {
            "objective": {
                "dino": {"momentum_teacher": 0.9, "teacher_temp": 0.04, "warmup_teacher_temp": 0.04}
            }
        },
    ),
    "dino-m0.9-t0.01": ("dino", {"objective": {"dino": {"momentum_teacher": 0.9}}}),
    "dino-m0.99-t0.02": (
        "dino",
        {
            "objective": {
                "dino": {
                    "momentum_teacher": 0.99,
                    "teacher_temp": 0.02,
                    "warmup_teacher_temp": 0.02,
                }
            }
        },
    ),
    "dino-resnet-recipe": ("dino", {"objective": {"dino": RESNET_RECIPE}}),
    # the ResNet recipe at tiny's shared lr (2e-3) with DINOv2's Sinkhorn-Knopp teacher in
    # place of the EMA centre: balanced targets from the first step
    "dino-sinkhorn": resnet_dino(centering="sinkhorn"),
    # ... with BN in the head (DINO's --use_bn_in_head), so that the teacher's outputs differ
    # across images from the first step. (With DINOv2's 0.04 -> 0.07 teacher the teacher's
    # entropy rose to 5.50 of ln 256 = 5.55 by step 140 and the loss stayed at ln 256: the
    # run was stopped.) Balanced by Sinkhorn-Knopp, a sharp teacher cannot pick one prototype
    # for every image, so it stays sharp: 0.02
    "dino-sinkhorn-bn-t0.02": resnet_dino(
        centering="sinkhorn", head_batchnorm=True, teacher_temp=0.02, warmup_teacher_temp=0.02
    ),
    # the ResNet knobs at DINO's own ViT-S learning rate for batch 64 (5e-4 x 64 / 256)
    "dino-resnet-recipe-lr1.25e-4": resnet_dino(lr=1.25e-4),
    # The ResNet knobs at tiny's lr with no colour augmentation (crops, flips and blur only):
    # at initialisation the random ResNet's two DINO views of one image are hardly more alike
    # than two images (dino_views.py), because its pooled features are mostly colour
    "dino-crops-only": resnet_dino(jitter_p=0.0, grayscale_p=0.0, solarize_p=0.0),
    # tiny's DINO (the ResNet knobs at tiny's lr) once the teacher's BatchNorm uses batch
    # statistics (before 2026-12-06 it silently ran in eval mode: every variant above)
    "dino-resnet-recipe-lr2e-3": resnet_dino(),
    # colour jitter kept, grayscale and solarize off
    "dino-jitter-only": resnet_dino(grayscale_p=0.0, solarize_p=0.0),
    # every colour operation at half DINO's probability
    "dino-colour-half": resnet_dino(jitter_p=0.4, grayscale_p=0.1, solarize_p=0.1),
    # ... with BN in the head (DINO's --use_bn_in_head): keeps the head's hidden units varying
    # across the batch, which slows the student's turn to one bottleneck direction
    "dino-resnet-recipe-bn": resnet_dino(head_batchnorm=True),
    # DINO's ViT crops (global 0.4-1, local 0.05-0.4) in place of its ResNet-50 ones: the
    # world's objects cover a small part of the image, so larger global crops share the
    # object more often (and the background too)
    "dino-global0.4": resnet_dino(global_crop_scale=[0.4, 1.0], local_crop_scale=[0.05, 0.4]),
    # SigLIP at tiny's 1,000-step schedule with its logit bias initialised to -log(batch) =
    # -log 64: SigLIP's -10 starts "close to the prior" of one positive among ~32k pairs per
    # image (-log 32768 = -10.4); at batch 64 that prior is -4.2 (tiny's siglip: -10)
    "siglip-1000-bias-log64": (
        "siglip",
        {
            "pretrain": {"lr": 2.0e-3, "samples": 64000, "checkpoint_every": 200},
            "objective": {"siglip": {"init_logit_bias": -4.16}},
        },
    ),
    # CLIP's text tower (from scratch, on the captions' BPE) at tiny's lr, sized down and up:
    # with MiniLM in its place the same image tower reaches 96% (clip-pretrained-text), so is
    # the from-scratch tower what holds CLIP at ~45%? (clip-lr2e-3: tiny's 4 x 192)
    "clip-text-l2": (
        "clip",
        {"pretrain": {"lr": 2.0e-3}, "objective": {"clip": {"text": {"layers": 2}}}},
    ),
    "clip-text-w384": (
        "clip",
        {"pretrain": {"lr": 2.0e-3}, "objective": {"clip": {"text": {"width": 384, "heads": 6}}}},
    ),
    # ... or is it the 63 negatives per image? The same 19,200 pairs in 150 batches of 128,
    # and (more samples, a diagnostic only) 300 batches of 128
    "clip-b128": ("clip", {"pretrain": {"lr": 2.0e-3, "batch_size": 128}}),
    "clip-b128-300": ("clip", {"pretrain": {"lr": 2.0e-3, "batch_size": 128, "samples": 38400}}),
}


def encoderlab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "encoderlab", *args], check=True)


def run_variant(name: str, data: Path, root: Path) -> dict[str, Any]:
    objective, changes = VARIANTS[name]
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    preset = out / "preset.yaml"
    preset.write_text(yaml.safe_dump(merge_sections(load_preset(BASE), changes), sort_keys=False))
    run = out / objective
    if not (run / "run.json").exists():
        encoderlab(
            "pretrain",
            "--preset",
            str(preset),
            "--objective",
            objective,
            "--data",
            str(data / "shards" / "train"),
            "--out",
            str(run),
        )
    seconds = json.loads((run / "run.json").read_text())["seconds"]
    control = out / "control"
    if not (control / "control.json").exists():
        encoderlab(
            "probe",
            str(run),
            "--data",
            str(data / "shards"),
            "--preset",
            str(preset),
            "--out",
            str(control),
        )
    scores = json.loads((control / "control.json").read_text())["encoders"][objective]
    return {"variant": name, "objective": objective, "seconds": seconds, **scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data", type=Path, default=Path("runs/tiny/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/experiments/backbone_variants"))
    args = parser.parse_args()
    rows = [run_variant(name, args.data, args.out) for name in args.variants]
    print("| variant | objective | linear probe | kNN | pretraining s |")
    print("|---|---|---|---|---|")
    for r in rows:
        cat = r["category"]
        print(
            f"| {r['variant']} | {r['objective']} | {100 * cat['linear']:.1f} | "
            f"{100 * cat['knn']:.1f} | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
