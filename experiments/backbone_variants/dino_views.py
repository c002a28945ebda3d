"""Do two DINO views of one image look alike to the network DINO starts from?

    .venv/bin/python experiments/backbone_variants/dino_views.py [--preset tiny] [--data DIR]
        [--encoder RUN_DIR ...]

DINO's student learns to predict the teacher's output for one view from another view of the
same image. If, at initialisation, the teacher's outputs for two views of an image are no more
alike than for two different images, the best prediction is the batch's average, which
centring makes uniform: the teacher flattens. This passes the first 256 training images
through the preset's untrained DINO teacher (and, with ``--encoder``, through trained
backbones for reference) under four augmentation settings, and prints, for the pooled
backbone features and the teacher's logits (each centred over the images): the mean cosine
between two views of the same image, between views of different images, and how often an
image's first view finds its own second view as its nearest neighbour among the 256.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from dino_init import first_images  # this folder's script (on the path when run as one)

from encoderlab.data.augment import ViewSpec, augment_views
from encoderlab.encoders import build_encoder
from encoderlab.objectives import build_objective
from encoderlab.study.config import load_study
from encoderlab.train.pretrain import load_encoder


def agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    """(same-image cosine, other-image cosine, view-retrieval top-1) of centred rows."""
    a = F.normalize((a - a.mean(0)).float(), dim=-1)
    b = F.normalize((b - b.mean(0)).float(), dim=-1)
    sim = a @ b.T
    n = len(sim)
    same = float(sim.diag().mean())
    other = float((sim.sum() - sim.diag().sum()) / (n * n - n))
    top1 = float((sim.argmax(1) == torch.arange(n)).float().mean())
    return same, other, top1


def settings(g0: ViewSpec, g1: ViewSpec) -> dict[str, tuple[ViewSpec, ViewSpec]]:
    no_colour = dict(jitter_p=0.0, grayscale_p=0.0, solarize_p=0.0)
    full = (1.0, 1.0)
    return {
        "preset's views": (g0, g1),
        "crops only": (replace(g0, **no_colour), replace(g1, **no_colour)),
        "colour only": (replace(g0, scale=full), replace(g1, scale=full)),
        "neither": (
            replace(g0, scale=full, **no_colour),
            replace(g1, scale=full, **no_colour),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--data", type=Path, default=Path("runs/tiny/data/shards/train"))
    parser.add_argument("--encoder", type=Path, nargs="*", default=[], help="trained run dirs")
    args = parser.parse_args()
    cfg = load_study(args.preset)
    dino = build_objective("dino", build_encoder(cfg.encoder), cfg.objective).train()
    images = first_images(args.data, 256)
    ids = torch.arange(len(images))
    nets = {"untrained DINO": (dino.teacher.backbone, dino.teacher.head)}
    for run in args.encoder:
        nets[f"trained {run.name}"] = (load_encoder(run).train(), None)
    print(
        f"{'network':22s} {'views':16s} {'backbone same/other/top-1':>27s}  logits same/other/top-1"
    )
    with torch.no_grad():
        for name, (backbone, head) in nets.items():
            for label, specs in settings(dino.specs[0], dino.specs[1]).items():
                va, vb = augment_views(images, ids, list(specs), seed=0, step=0)
                fa, fb = backbone(va), backbone(vb)
                row = f"{name:22s} {label:16s} " + " ".join(f"{x:8.3f}" for x in agreement(fa, fb))
                if head is not None:
                    row += "  " + " ".join(f"{x:7.3f}" for x in agreement(head(fa), head(fb)))
                print(row)


if __name__ == "__main__":
    main()
