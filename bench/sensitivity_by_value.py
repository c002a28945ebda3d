"""Which value changes drive a factor's sensitivity? A diagnostic for surprising findings.

    .venv/bin/python bench/sensitivity_by_value.py runs/tiny [--factor style] [--a clip --b dino]

Rebuilds the study's counterfactual set (same world, scenes and split as its analysis stage),
reads the two encoders' cached embeddings (``analysis/cache``; nothing is re-embedded when the
analysis stage has run), and splits the factor's variants by the value the variant moves
to (for style: flat, outline, sketch, pixel, blur). Prints each encoder's normalised
sensitivity per target value and A - B with a paired-bootstrap 95% CI: e.g. whether DINO's
blur augmentation makes it blind to the "blur" style, which would flip the style finding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from encoderlab.evaluate.embeddings import embed
from encoderlab.evaluate.sensitivity import (
    build_counterfactual_set,
    factor_distances,
    random_partners,
)
from encoderlab.evaluate.stats import (
    bootstrap,
    bootstrap_indices,
    paired_difference,
    ratio_of_means,
)
from encoderlab.study.config import load_study
from encoderlab.train.pretrain import load_encoder


def changed_values(original, variant, factor: str) -> tuple[str, str]:
    """The factor's value before and after (object factors: on the object that changed)."""
    a, b = original.to_meta(), variant.to_meta()
    for obj_a, obj_b in zip(a.get("objects", []), b.get("objects", []), strict=False):
        if obj_a.get(factor) != obj_b.get(factor):
            return str(obj_a.get(factor)), str(obj_b.get(factor))
    return str(a.get(factor)), str(b.get(factor))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--factor", default="style")
    parser.add_argument("--a", default="clip")
    parser.add_argument("--b", default="dino")
    args = parser.parse_args()
    cfg = load_study(args.preset).analysis
    world = load_study(args.preset).world
    cset = build_counterfactual_set(world, cfg.scenes, cfg.factors, cfg.split, cfg.workers)
    partners = random_partners(len(cset.scenes), cfg.partners, cfg.seed)
    dists = {}
    for name in (args.a, args.b):
        encoder = load_encoder(args.study / "pretrain" / name)
        emb = embed(
            encoder,
            cset.images,
            precision=cfg.precision,
            cache_dir=args.study / "analysis" / "cache",
        )
        dists[name] = factor_distances(emb, cset, partners)
    src = cset.source[args.factor]
    pairs = [
        changed_values(cset.scenes[i], v, args.factor)
        for i, v in zip(src, cset.variants[args.factor], strict=True)
    ]
    origins, targets = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    print(f"{args.factor}: {len(src)} variants; sensitivity = mean(1 - cos) / random-pair baseline")
    print(
        f"{'variant ' + args.factor:>16} {'n':>5} {args.a:>8} {args.b:>8}   {args.a} - {args.b} [95% CI]"
    )
    for label, keep in [
        *((f"to {t}", targets == t) for t in sorted(set(targets))),
        *((f"from {o}", origins == o) for o in sorted(set(origins))),
    ]:
        rows = src[keep]
        cols = {n: (d.factor[args.factor][rows], d.baseline[rows]) for n, d in dists.items()}
        idx = bootstrap_indices(len(rows), 1000, 0)
        est = {
            n: bootstrap(*c, statistic=ratio_of_means, indices=idx).value for n, c in cols.items()
        }
        diff = paired_difference(cols[args.a], cols[args.b], statistic=ratio_of_means, indices=idx)
        print(
            f"{label:>16} {len(rows):5d} {est[args.a]:8.3f} {est[args.b]:8.3f}   "
            f"{diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
        )


if __name__ == "__main__":
    main()
