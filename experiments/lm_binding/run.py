"""Can the embedded LM answer with an option's LETTER when the answer is in its context?

    .venv/bin/python experiments/lm_binding/run.py [--data runs/tiny/data/shards] [--types style]
        [--steps 1500] [--mc-fraction 0.5]

A text-only diagnostic of multiple-choice symbol binding (Robinson et al., ICLR 2023): a fresh
LM of the tiny recipe's size (``VLMConfig().lm``; the shared trainer, stage 0's optimiser
settings) is trained on conversations whose picture slot holds a COMPLETE description of the
scene (every factor in words, ``vlm.context.full_description``), so each answer can be read from
the context. Turns ask the given question types, multiple choice with probability
``--mc-fraction``, else for the short answer. Held-out (val) questions are then scored two ways,
with the scene's own description in the slot and with another scene's: by option letter after
the multiple-choice prompt (the suite's scoring) and by cloze, the option's text after the
short-answer prompt (``vlm.model.option_loglik``'s rule). Letter accuracy stuck at chance while
cloze accuracy with the own description climbs means the LM reads the answer but cannot bind it
to a letter: no image can then show in letter-scored results.
"""

from __future__ import annotations

import argparse
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch

from encoderlab.evaluate.stats import paired_difference
from encoderlab.suite.questions import LETTERS, generate
from encoderlab.train.trainer import Trainer
from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.context import full_description
from encoderlab.vlm.data import ExampleDataset, PadCollate, conversation_rng, read_world
from encoderlab.vlm.generate import left_pad, score_continuations, score_next_token
from encoderlab.vlm.lm import build_lm
from encoderlab.vlm.tasks import LMTask
from encoderlab.vlm.template import Template, user_text
from encoderlab.vlm.tokenizer import train_tokenizer


def conversation(meta: dict, index: int, types: list[str], mc_fraction: float, stage: int):
    """(description, turns) of one object scene: one turn per type it supports, in random
    order; None for documents and charts."""
    description = full_description(meta)
    if description is None:
        return None
    rng = conversation_rng(0, stage, index)
    turns = []
    for qtype in rng.permutation(types):
        q = generate(str(qtype), meta, rng)
        if q is not None:
            mc = not q.short_ok or rng.random() < mc_fraction
            turns.append((q.mc_prompt(), q.letter) if mc else (q.short_prompt(), q.answer))
    return (description, turns) if turns else None


@torch.no_grad()
def accuracy(lm, template: Template, items: list, scoring: str, shift: int) -> np.ndarray:
    """1/0 per held-out ``(description, question)``, the slot holding item i+shift's text."""
    letters = [template.answer(x)[0] for x in LETTERS]
    hits = []
    for i, (_, q) in enumerate(items):
        slot = items[(i + shift) % len(items)][0]
        if scoring == "letter":
            ids, mask = left_pad(
                [
                    template.bos
                    + template.ids(
                        user_text(q.mc_prompt(), True, style=template.style, picture=slot)
                    )
                ],
                0,
            )
            scores = score_next_token(lm, lm.get_input_embeddings()(ids), mask)[0, letters]
        else:
            head = template.bos + template.ids(
                user_text(q.short_prompt(), True, style=template.style, picture=slot)
            )
            tails = [template.answer(o) + template.eos for o in q.options]
            ids, mask = left_pad([head + t for t in tails], int(template.tok.pad_token_id))
            embeds = lm.get_input_embeddings()(ids)
            scores = score_continuations(lm, embeds, mask, ids, [len(t) for t in tails])
        hits.append(float(int(scores.argmax()) == q.answer_index))
    return np.array(hits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("runs/tiny/data/shards"))
    ap.add_argument("--types", default="style", help="question types, comma-separated")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--mc-fraction", type=float, default=0.5)
    ap.add_argument("--heldout", type=int, default=300)
    args = ap.parse_args()
    types = args.types.split(",")
    cfg = VLMConfig()
    train = read_world(args.data / "train", 20_000, None, images=False)
    val = read_world(args.data / "val", 2 * args.heldout, None, images=False)
    make = partial(conversation, types=types, mc_fraction=args.mc_fraction)
    convs = [c for i, m in enumerate(train.metas) if (c := make(m, i, stage=2))]
    texts = [d for d, _ in convs] + [x for _, ts in convs for q, a in ts for x in (q, f" {a}")]
    tokenizer = train_tokenizer(texts, cfg.lm.vocab_size)
    template = Template(tokenizer, 0, max_text_tokens=320, style=cfg.template)
    examples = [template.conversation(turns, picture=d) for d, turns in convs]
    items = []
    for i, meta in enumerate(val.metas):
        rng = np.random.default_rng([9, i])
        q = generate(types[i % len(types)], meta, rng)
        if (d := full_description(meta)) is not None and q is not None:
            items.append((d, q))
    items = items[: args.heldout]
    lm = build_lm(cfg.lm, tokenizer)
    schedule = cfg.stage0.train.model_copy(
        update={"samples": args.steps * cfg.stage0.train.batch_size, "log_every": 50}
    )
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(
            LMTask(lm),
            ExampleDataset(examples),
            PadCollate(int(tokenizer.pad_token_id)),
            schedule,
            Path(tmp),
            description="LM on described scenes",
        ).fit()
    lm.eval()
    print(
        f"{len(examples)} training conversations ({', '.join(types)}; multiple choice "
        f"{args.mc_fraction:.0%} where a short answer exists), {args.steps} steps; "
        f"{len(items)} held-out questions, accuracy with the own vs another scene's description:"
    )
    print(f"{'scoring':<8} {'own':>6} {'other':>6}  own - other [95% CI]")
    for scoring in ("letter", "cloze"):
        own, other = (accuracy(lm, template, items, scoring, s) for s in (0, 1))
        gain = paired_difference(own, other)
        print(
            f"{scoring:<8} {own.mean():6.3f} {other.mean():6.3f}  "
            f"{gain.value:+.3f} [{gain.low:+.3f}, {gain.high:+.3f}]"
        )


if __name__ == "__main__":
    main()
