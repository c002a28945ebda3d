"""How much do tiny's DINO teacher outputs differ between images at initialisation?

    .venv/bin/python experiments/backbone_variants/dino_init.py [--preset tiny] [--data DIR]

Builds the preset's DINO (ResNet-10-T and head, untrained) and passes the first 64 training
images through its teacher: the mean pairwise cosine of the pooled backbone features and of
the head's L2-normalised bottleneck, and the spread of the prototype logits across images
(per prototype) and across prototypes (per image). A teacher whose logits hardly differ
between images is flat once centred; this tells whether DINO starts that way or gets there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from encoderlab.data.augment import normalize
from encoderlab.data.reader import SampleDataset, index_source
from encoderlab.encoders import build_encoder
from encoderlab.objectives import build_objective
from encoderlab.study.config import load_study


def first_images(source: Path, n: int) -> torch.Tensor:
    """The first ``n`` images of a shard directory, uint8 ``[n, 3, H, W]`` (the DINO
    diagnostics here share them)."""
    refs, _ = index_source(source)
    data = SampleDataset(refs[:n])
    return torch.stack([data[i]["image"] for i in range(len(data))])


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    x = F.normalize(x.float(), dim=-1)
    n = len(x)
    return float(((x @ x.T).sum() - n) / (n * n - n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--data", type=Path, default=Path("runs/tiny/data/shards/train"))
    args = parser.parse_args()
    cfg = load_study(args.preset)
    dino = build_objective("dino", build_encoder(cfg.encoder), cfg.objective).train()
    images = first_images(args.data, 64)
    with torch.no_grad():
        feats = dino.teacher.backbone(normalize(images))
        z = F.normalize(dino.teacher.head.mlp(feats), dim=-1)
        logits = dino.teacher.head.last_layer(z)
    print(f"pooled backbone features, mean pairwise cosine: {mean_pairwise_cosine(feats):.3f}")
    print(f"head bottleneck, mean pairwise cosine: {mean_pairwise_cosine(z):.3f}")
    print(
        f"logits: std across images {float(logits.std(0).mean()):.4f} (per prototype), "
        f"across prototypes {float(logits.std(1).mean()):.4f} (per image); "
        f"teacher temperature {cfg.objective.dino.teacher_temp}"
    )


if __name__ == "__main__":
    main()
