"""Can the encoder learn the world's object categories at all in the pretraining budget?

An upper bound for the control check: the tiny ViT trained end to end WITH category labels
(cross-entropy, one-object training scenes, AdamW, the preset's batch, steps and warm-up), for
each stem, side by side in the same run. If the labelled upper bound stays near chance, no
language or self-supervised objective can be expected to do better in that budget. Peer: the
plain patchify ViT, side by side in the same run.

Usage: ``python bench/bench_stem.py --data runs/tiny/data/shards [--steps 400] [--lr 5e-4]``
``[--stems patch conv] [--archs resnet18 convnext_atto]`` (``--archs``: timm CNNs through
``encoder.arch``, the same builder the objectives use). Prints one row per encoder: held-out
category accuracy at a few steps, seconds, FLOP/image. ``--precision auto`` trains under bf16
autocast where the CPU has native bf16, as the trainer does (default fp32, as the README's rows).
Results and the commit they were measured at: docs/results.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from encoderlab.data.augment import normalize
from encoderlab.encoders.vit import EncoderConfig, build_encoder
from encoderlab.evaluate.control import SINGLE, load_labelled
from encoderlab.precision import autocast, resolve_precision


def one_object_categories(data: Path, split: str, size: int, n: int | None):
    labelled = load_labelled(data / split, size, ("category", SINGLE), split=split, max_images=n)
    keep = [i for i, k in enumerate(labelled.labels[SINGLE]) if k == 1]
    names = [labelled.labels["category"][i] for i in keep]
    return labelled.images.get(keep), names


def flops_per_image(encoder: torch.nn.Module, size: int) -> float:
    with FlopCounterMode(display=False) as counter:
        encoder(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


def encoder_config(name: str, args) -> EncoderConfig:
    """``patch`` / ``conv``: the ViT of ``--size`` with that stem; else a timm CNN arch."""
    if name in ("patch", "conv"):
        return EncoderConfig(size=args.size, stem=name, image_size=args.size_px)
    return EncoderConfig(arch=name, image_size=args.size_px)


def train_supervised(stem: str, args, xtr, ytr, xte, yte, classes: int) -> dict:
    torch.manual_seed(0)
    encoder = build_encoder(encoder_config(stem, args))
    head = torch.nn.Linear(encoder.embed_dim, classes)
    params = [*encoder.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1, anneal_strategy="cos"
    )
    gen = torch.Generator().manual_seed(0)
    row: dict = {"encoder": stem, "GFLOP/img": flops_per_image(encoder, args.size_px) / 1e9}
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(xtr), (args.batch,), generator=gen)
        with autocast(args.precision, torch.device("cpu")):
            logits = head(encoder(normalize(xtr[idx])))
        loss = F.cross_entropy(logits.float(), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % (args.steps // 4) == 0:
            encoder.eval()
            with torch.no_grad():
                pred = torch.cat(
                    [
                        head(encoder(normalize(xte[s : s + 256]))).argmax(1)
                        for s in range(0, len(xte), 256)
                    ]
                )
            encoder.train()
            row[f"acc@{step}"] = 100 * float((pred == yte).float().mean())
    row["seconds"] = time.perf_counter() - start
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="data-set root (train/, test/)")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--size-px", type=int, default=64)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--train-images", type=int, default=25_600)
    parser.add_argument("--stems", nargs="*", default=["patch", "conv"], help="ViT stems")
    parser.add_argument("--archs", nargs="*", default=[], help="timm CNNs (encoder.arch)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    args = parser.parse_args()

    xtr, ntr = one_object_categories(args.data, "train", args.size_px, args.train_images)
    xte, nte = one_object_categories(args.data, "test", args.size_px, None)
    classes = sorted(set(ntr) | set(nte))
    ytr = torch.tensor([classes.index(c) for c in ntr])
    yte = torch.tensor([classes.index(c) for c in nte])
    chance = 100 * np.bincount(yte.numpy()).max() / len(yte)
    print(
        f"{len(ytr)} one-object training images, {len(yte)} test, {len(classes)} categories, "
        f"chance {chance:.1f}%; {args.steps} steps x {args.batch}, lr {args.lr:g}, "
        f"{resolve_precision(args.precision, torch.device('cpu'))}"
    )
    rows = [
        train_supervised(s, args, xtr, ytr, xte, yte, len(classes))
        for s in [*args.stems, *args.archs]
    ]
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print(
            "| "
            + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values())
            + " |"
        )


if __name__ == "__main__":
    main()
