"""Can the VLM recipe use PERFECT image features? The study's ``vlm/oracle`` check, per question
type and with short answers too: a diagnostic that separates the encoder from the recipe.

    .venv/bin/python experiments/vlm_oracle/run.py --data runs/tiny/data/shards --lm-cache runs/tiny/lm \
        [--preset tiny] [--stage2-samples 8192] [--mc-fraction 0] [--heldout 400]

Every training and held-out image is replaced by ground-truth tokens from its scene metadata
(``vlm.oracle.OracleTokens``) and stages 1-2 run exactly as for an encoder, from the preset's
stage-0 LM (``vlm.oracle.train_oracle_vlm``). Prints, on held-out (val) scenes, multiple-choice
accuracy scored by letter and by cloze, and greedy short-answer exact match, per question type,
with the scene's own tokens vs another scene's: if a VLM cannot use these, no encoder will help
it. (A different ``--mc-fraction`` changes the stage-0 corpus too, so its LM is trained anew.)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from encoderlab.evaluate.stats import paired_difference
from encoderlab.study.config import load_study
from encoderlab.vlm.config import load_vlm_config
from encoderlab.vlm.generate import greedy_generate, left_pad
from encoderlab.vlm.model import VLMModel
from encoderlab.vlm.oracle import OracleTokens, oracle_grid, own_vs_other, train_oracle_vlm
from encoderlab.vlm.sanity import heldout_items
from encoderlab.vlm.template import Template


@torch.no_grad()
def short_answers(
    model: VLMModel, template: Template, items: list, tokens: torch.Tensor
) -> np.ndarray:
    """Greedy short answers (exact match, 0/1 per item) with ``tokens`` as the images."""
    rows = [template.prompt(q.short_prompt()) for _, q in items]
    answers: list[str] = []
    for s in range(0, len(rows), 64):
        ids, mask = left_pad(rows[s : s + 64], int(template.tok.pad_token_id))
        out = greedy_generate(model.lm, model.embed(ids, tokens[s : s + 64]), mask, 8, template.tok)
        answers += [
            a.strip().lower() for a in template.tok.batch_decode(out, skip_special_tokens=True)
        ]
    return np.array(
        [a == q.answer.lower() for a, (_, q) in zip(answers, items, strict=True)], float
    )


def report(model: VLMModel, template: Template, items: list, oracle: OracleTokens) -> None:
    mc, cloze = {}, {}
    for qtype in sorted({q.qtype for _, q in items}):
        subset = [it for it in items if it[1].qtype == qtype]
        mc[qtype] = own_vs_other(model, template, subset, oracle, "letter")
        cloze[qtype] = own_vs_other(model, template, subset, oracle, "cloze")
    # short answers, on the types that have one (some only make sense with their options)
    short_items = [it for it in items if it[1].short_ok]
    tokens = oracle.features([item["meta"] for item, _ in short_items])
    own = short_answers(model, template, short_items, tokens)
    other = short_answers(model, template, short_items, tokens.roll(1, 0))
    print(
        f"{'question type':<16}{'n':>5}{'letter own':>12}{'other':>7}{'cloze own':>11}"
        f"{'other':>7}{'short own':>11}{'other':>7}"
    )
    for qtype, r in mc.items():
        rows = [i for i, (_, q) in enumerate(short_items) if q.qtype == qtype]
        s_own, s_other = (own[rows].mean(), other[rows].mean()) if rows else (np.nan, np.nan)
        c = cloze[qtype]
        print(
            f"{qtype:<16}{r['n']:>5}{r['own']:>12.2f}{r['other']:>7.2f}{c['own']:>11.2f}"
            f"{c['other']:>7.2f}{s_own:>11.2f}{s_other:>7.2f}"
        )
    for scoring in ("letter", "cloze"):
        total = own_vs_other(model, template, items, oracle, scoring)
        print(
            f"MC {scoring}: own {total['own']:.3f}, other {total['other']:.3f}, own - other "
            f"{total['gain']:+.3f} [{total['gain_low']:+.3f}, {total['gain_high']:+.3f}]"
        )
    gain = paired_difference(own, other)
    print(
        f"short answer: own {own.mean():.3f}, other {other.mean():.3f}, own - other "
        f"{gain.value:+.3f} [{gain.low:+.3f}, {gain.high:+.3f}]"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a SynthWorld data set (train + val)")
    ap.add_argument(
        "--lm-cache", type=Path, required=True, help="stage-0 cache (e.g. runs/tiny/lm)"
    )
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--stage2-samples", type=int, default=None, help="override stage 2's length")
    ap.add_argument("--mc-fraction", type=float, default=None, help="override vlm.mc_fraction")
    ap.add_argument("--heldout", type=int, default=400)
    args = ap.parse_args()

    cfg = load_vlm_config(args.preset)
    if args.stage2_samples:
        n = args.stage2_samples
        train = cfg.stage2.train.model_copy(update={"samples": n})
        cfg = cfg.model_copy(
            update={"stage2": cfg.stage2.model_copy(update={"examples": n, "train": train})}
        )
    if args.mc_fraction is not None:
        cfg = cfg.model_copy(update={"mc_fraction": args.mc_fraction})
    oracle = OracleTokens(oracle_grid(load_study(args.preset).encoder, cfg.pool_tokens))
    with tempfile.TemporaryDirectory() as tmp:
        model, template, stages = train_oracle_vlm(cfg, args.data, args.lm_cache, tmp, oracle)
    for name, s in stages.items():
        loss = s["final"].get("loss", float("nan"))
        print(f"{name}: {s['steps']} steps, {s['seconds']:.0f} s, final loss {loss:.3f}")
    report(model, template, heldout_items(args.data, args.heldout, None), oracle)


if __name__ == "__main__":
    main()
