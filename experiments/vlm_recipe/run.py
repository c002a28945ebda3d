"""Which tiny VLM recipe reads object-level facts from PERFECT image features?

    .venv/bin/python experiments/vlm_recipe/run.py [--variants NAME ...] [--data DIR] [--lm-cache DIR]

Each variant is the ``tiny`` preset's VLM recipe (``vlm:``) as it was before issue #18
(``BEFORE``) with a few keys changed (batch, examples, turns, template, question weights,
learning rates); ``c-b32x4-t4-oc2-shortopt-p8-seed0`` is tiny's recipe today. Its oracle VLM
(``vlm.oracle.oracle_check``, the study's ``vlm/oracle`` stage itself: ground-truth scene tokens instead of an encoder's) is trained
from the stage-0 LM cached under ``--lm-cache`` (a variant whose stage-0 corpus differs, e.g.
more turns, trains its own LM there) and checked on held-out questions scored as the study
scores them. The table prints own tokens - another scene's (points, 95% paired-bootstrap CI)
overall and for object-category, colour, count and style questions, and the training time.
Runs go to ``runs/experiments/vlm_recipe/<variant>``; a finished variant is not retrained.
``--data`` is the tiny world's shards (``runs/tiny/data/shards`` after ``make study``).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import reduce
from pathlib import Path
from typing import Any

from encoderlab.config import load_preset, merge_sections, parse_config
from encoderlab.files import write_json
from encoderlab.study.config import load_study
from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.oracle import oracle_check, oracle_grid

BASE = "tiny"


def merged(*sections: dict[str, Any]) -> dict[str, Any]:
    """The sections merged left to right (``merge_sections``: nested keys merged)."""
    return reduce(merge_sections, sections, {})


TYPES = ("object", "colour", "count", "texture", "style", "superclass")
# the tiny recipe before issue #18's changes, which every variant starts from: LLaVA's
# turns, two per image, every question type alike, 1,024 stage-2 steps of 8 conversations
BEFORE = {
    "template": "vicuna_v1",
    "n_turns": 2,
    "short_option_questions": False,
    "stage2_projector_lr_scale": 1.0,
    "question_weights": {"object": 1.0, "colour": 1.0},
    "conversations_per_image": 1,
    "stage2": {"examples": 8192, "train": {"batch_size": 8, "samples": 8192}},
}
# 1,024 stage-2 steps of 32 instead of 8: 4x the examples, fresh ones (none seen twice)
B32 = {"stage2": {"examples": 32768, "train": {"batch_size": 32, "samples": 32768}}}
# a 4x larger stage 1 (captions name the objects): 256 steps of 32
S1 = {"stage1": {"examples": 8192, "train": {"batch_size": 32, "samples": 8192}}}
# B32 with the compact template (no system prompt, no answer-format instruction)
B32_COMPACT = merge_sections(B32, {"template": "compact"})
# stage 2 on 8,192 images with 4 conversations each (the same 32,768 conversations seen)
X4 = {"conversations_per_image": 4, "stage2": {"examples": 8192}}
# the stage-2 projector at 4x the LM's learning rate
P4 = {"stage2_projector_lr_scale": 4.0}
# c-b32x4-t4-oc2: compact turns, 4 per conversation, object and colour questions 2x
OC2 = merged(B32_COMPACT, X4, {"n_turns": 4, "question_weights": {"object": 2.0, "colour": 2.0}})
# ... with option questions taught by their text (vlm.short_option_questions)
SHORTOPT = merged(OC2, {"short_option_questions": True})


def seeds(name: str, *sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``name-seed0`` .. ``name-seed2``: ``sections`` merged, with each seed."""
    return {f"{name}-seed{seed}": merged(*sections, {"seed": seed}) for seed in (0, 1, 2)}


# name: keys changed from the base preset's vlm section as it was before #18 (BEFORE);
# c-b32x4-t4-oc2-shortopt-p8-seed0 is tiny's recipe today
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "b32": B32,
    # with 4 (or 8) question turns per conversation (stage 0's corpus too)
    "b32-t4": {**B32, "n_turns": 4},
    "b32-t8": {**B32, "n_turns": 8},
    "b32-t4-s1": {**B32, **S1, "n_turns": 4},
    # as b32-t4-s1, stage 2 at twice the learning rate
    "b32-t4-s1-lr2": merge_sections(
        {**B32, **S1, "n_turns": 4}, {"stage2": {"train": {"lr": 2.0e-3}}}
    ),
    # b32-t4 rendered compact
    "c-b32-t4": merge_sections(B32_COMPACT, {"n_turns": 4}),
    # c-b32-t4 on the base's 8,192 images, 4 conversations each (an encoder VLM encodes a
    # quarter of the images)
    "c-b32x4-t4": merged(B32_COMPACT, X4, {"n_turns": 4}),
    # ... with object-category and colour questions each asked twice as often
    "c-b32x4-t4-oc2": merged(
        B32_COMPACT, X4, {"n_turns": 4, "question_weights": {"object": 2.0, "colour": 2.0}}
    ),
    # ... in 768 stage-2 steps instead of 1,024 (three quarters of the time)
    "c-b32x4-t4-oc2-768": merged(
        B32_COMPACT,
        X4,
        {"n_turns": 4, "question_weights": {"object": 2.0, "colour": 2.0}},
        {"stage2": {"train": {"samples": 24576}}},
    ),
    # ... with 6 question turns per conversation instead of 4 (stage 0's corpus too)
    "c-b32x4-t6-oc2": merged(
        B32_COMPACT, X4, {"n_turns": 6, "question_weights": {"object": 2.0, "colour": 2.0}}
    ),
    # ... with the stage-2 projector at 4x the LM's learning rate (4e-3 vs 1e-3)
    "c-b32x4-t4-oc2-p4": merged(
        B32_COMPACT,
        X4,
        {"n_turns": 4, "question_weights": {"object": 2.0, "colour": 2.0}},
        {"stage2_projector_lr_scale": 4.0},
    ),
    # tiny's recipe with other seeds (projector init and conversation draws): how much of a
    # readout is the recipe's and how much one run's
    **{
        f"c-b32x4-t4-oc2-seed{seed}": merged(
            B32_COMPACT,
            X4,
            {"n_turns": 4, "question_weights": {"object": 2.0, "colour": 2.0}, "seed": seed},
        )
        for seed in (1, 2)
    },
    # half as many stage-2 steps again (1,536), six fresh conversations per image: does more
    # training make the object-category readout reliable? (two seeds)
    **{
        f"c-b32x6-t4-oc2-1536-seed{seed}": merged(
            B32_COMPACT,
            {"conversations_per_image": 6, "stage2": {"examples": 8192}},
            {"n_turns": 4, "question_weights": {"object": 2.0, "colour": 2.0}, "seed": seed},
            {"stage2": {"train": {"samples": 49152}}},
        )
        for seed in (0, 1)
    },
    # tiny's recipe (three seeds) with the questions that refer to their options (every
    # caption question, the object questions of multi-object scenes: 14% of the check's, see
    # question_forms.py) taught as short answers, the correct option's text, instead of by
    # letter (vlm.short_option_questions, tiny's since these runs).
    #   run.py --variants c-b32x4-t4-oc2-shortopt-seed{0,1,2} --lm-cache runs/experiments/vlm_recipe/lm-shortopt
    **seeds("c-b32x4-t4-oc2-shortopt", SHORTOPT),
    # ... and the stage-2 projector at 4x the LM's learning rate (c-b32x4-t4-oc2-p4 read colour
    # at +70 without the short option answers): does it make the colour readout reliable too?
    #   run.py --variants c-b32x4-t4-oc2-shortopt-p4-seed{0,1,2} --lm-cache runs/experiments/vlm_recipe/lm-shortopt
    **seeds("c-b32x4-t4-oc2-shortopt-p4", SHORTOPT, P4),
    # ... with object-category questions 3x as often as a plain type (colour 2x): seed 0 read
    # category far less than seeds 1 and 2 (+23 vs +67 to +79). Its own stage-0 LM per seed
    **seeds("c-b32x4-t4-o3c2-shortopt-p4", SHORTOPT, P4, {"question_weights": {"object": 3.0}}),
    # tiny's recipe (shortopt-p4) with the projector at 8x in stage 2, or with a 4x stage 1
    # (256 steps of 32 captions, which name the objects): does seed 0 read category as well?
    **seeds("c-b32x4-t4-oc2-shortopt-p8", SHORTOPT, {"stage2_projector_lr_scale": 8.0}),
    **seeds("c-b32x4-t4-oc2-shortopt-p4-s1", SHORTOPT, P4, S1),
}


def recipe(name: str, base: str) -> VLMConfig:
    section = load_preset(base).get("vlm") or {}
    keys = merged(VLMConfig().model_dump(mode="json"), section, BEFORE, VARIANTS[name])
    return parse_config(VLMConfig, keys, source=f"{base}+{name}", prefix="vlm")


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    out = args.out / name
    done = out / "oracle.json"
    if not done.is_file():
        cfg = recipe(name, args.preset)
        out.mkdir(parents=True, exist_ok=True)
        write_json(cfg.model_dump(mode="json"), out / "recipe.json")
        start = time.perf_counter()
        grid = args.grid or oracle_grid(load_study(args.preset).encoder, cfg.pool_tokens)
        check = oracle_check(
            cfg, args.data, args.lm_cache, out, args.questions, scoring=args.scoring, grid=grid
        )
        check["seconds"] = time.perf_counter() - start
        write_json(check, done)
    return json.loads(done.read_text())


def cell(result: dict[str, Any]) -> str:
    return (
        f"{100 * result['gain']:+.1f} [{100 * result['gain_low']:+.1f}, "
        f"{100 * result['gain_high']:+.1f}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--preset", default=BASE, help="the preset whose vlm recipe is varied")
    parser.add_argument("--data", type=Path, default=Path("runs/tiny/data/shards"))
    parser.add_argument("--lm-cache", type=Path, default=Path("runs/tiny/lm"))
    parser.add_argument(
        "--grid", type=int, default=None, help="oracle grid per side (default: the encoder's)"
    )
    parser.add_argument("--questions", type=int, default=1024, help="held-out questions")
    parser.add_argument("--scoring", default="cloze", choices=["cloze", "letter"])
    parser.add_argument("--out", type=Path, default=Path("runs/experiments/vlm_recipe"))
    args = parser.parse_args()
    rows = {name: run_variant(name, args) for name in args.variants}
    print(f"| variant | own - other (n) | {' | '.join(TYPES)} | train s |")
    print("|---|---|" + "---|" * len(TYPES) + "---|")
    for name, r in rows.items():
        types = [cell(r["by_type"][t]) if t in r["by_type"] else "-" for t in TYPES]
        print(f"| {name} | {cell(r)} ({r['n']}) | {' | '.join(types)} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
