"""Does the stage-0 LM read its picture slot? A diagnostic of why tiny VLMs ignore their image.

    .venv/bin/python experiments/lm_context/run.py runs/tiny/lm/lm-<hash>   # a study's cached LM
    .venv/bin/python experiments/lm_context/run.py --train [--samples 6000] [--describe] [--full]

Stage 0 trains the embedded LM on conversations whose picture slot holds the sample's caption
(``vlm/lm.py``). If the LM learned to read that slot, its loss on the answers is lower with
the sample's own caption than with another sample's. The same check with a "Describe the image
briefly." turn (answer: the slot's text, a verbatim copy) shows whether it can copy from the
slot at all. ``--train`` builds a fresh LM with the study's stage-0 recipe (optionally with more
samples, a describe turn in every conversation, or complete scene descriptions in place of the
alt-text captions) under ``runs/experiments/lm_context`` and checks that one. Prints held-out (val)
losses in nats per answer token, own vs other picture text (``encoderlab.vlm.context``, what the
study's lm stage writes to ``lm/context.json``); a gap near 0 = the slot is ignored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.context import DESCRIBE, context_check, full_description
from encoderlab.vlm.data import default_conversation_fn, read_world
from encoderlab.vlm.lm import load_lm, pretrain_lm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lm", nargs="?", type=Path, help="a cached stage-0 LM (lm-<hash>)")
    parser.add_argument("--data", type=Path, default=Path("runs/tiny/data/shards"))
    parser.add_argument("--train", action="store_true", help="train a fresh stage-0 LM")
    parser.add_argument("--samples", type=int, default=None, help="stage-0 samples seen")
    parser.add_argument("--describe", action="store_true", help="add a describe turn")
    parser.add_argument("--full", action="store_true", help="complete scene descriptions")
    parser.add_argument("--n", type=int, default=512, help="held-out samples")
    args = parser.parse_args()
    if (args.lm is None) == (not args.train):
        parser.error("give a cached LM directory or --train")
    cfg = VLMConfig()
    val = read_world(args.data / "val", args.n, None, images=False)
    worlds = [val]
    if args.train:
        train = cfg.stage0.train
        if args.samples:
            train = train.model_copy(update={"samples": args.samples})
        cfg = cfg.model_copy(update={"stage0": cfg.stage0.model_copy(update={"train": train})})
        world = read_world(args.data / "train", cfg.stage0.examples, None, images=False)
        worlds.append(world)
    if args.full:
        for w in worlds:
            w.texts = [full_description(m) or t for m, t in zip(w.metas, w.texts, strict=True)]
    if args.train:
        slot = {m["index"]: t for m, t in zip(world.metas, world.texts, strict=True)}

        ask = default_conversation_fn(world, cfg.stage0.examples, cfg.question_mix)

        def with_describe(meta: dict, rng: np.random.Generator, n: int) -> list:
            turns = ask(meta, rng, n)
            return [(DESCRIBE, slot[meta["index"]]), *turns] if turns else turns

        fn = with_describe if args.describe else None
        root = pretrain_lm(cfg, world, Path("runs/experiments/lm_context"), conversation_fn=fn)
    else:
        root = args.lm
    lm, tokenizer = load_lm(root / "lm")
    check = context_check(lm, tokenizer, val, cfg)
    print(f"LM {root}: held-out loss per answer token (nats), picture slot own vs other")
    print(f"{'check':26s} {'own':>7s} {'other':>7s} {'gap [95% CI]':>24s}")
    for name, label in (("questions", "questions (stage-2 mix)"), ("describe", "describe (copy)")):
        r = check[name]
        ci = f"{r['gap']:+.3f} [{r['gap_low']:+.3f}, {r['gap_high']:+.3f}]"
        print(f"{label:26s} {r['own']:7.3f} {r['other']:7.3f} {ci:>24s}")
    print(f"reads its picture slot: {check['reads_context']} ({check['n']} conversations)")


if __name__ == "__main__":
    main()
