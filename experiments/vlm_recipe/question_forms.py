"""Which of the VLM check's held-out questions does the recipe ever teach in the form it asks?

    .venv/bin/python experiments/vlm_recipe/question_forms.py [--preset tiny] [--data DIR]

The real - blank and oracle checks ask each held-out question and score its options by
cloze. In training (``suite.questions.training_conversation``) a question is taught as a
short answer with probability ``1 - mc_fraction`` only if it makes sense without its options
(``Question.short_ok``) or the recipe's ``short_option_questions`` is on; otherwise always as
multiple choice, answered by a letter, which the tiny LM cannot learn
(``experiments/lm_binding``). This counts, per question type, the check's questions whose
form training only ever teaches by letter under the preset's recipe (``--preset paper`` or
``short_option_questions: false``: the count before tiny adopted it).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from encoderlab.study.config import load_study
from encoderlab.vlm.sanity import heldout_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--data", type=Path, default=Path("runs/tiny/data/shards"))
    args = parser.parse_args()
    cfg = load_study(args.preset)
    items = heldout_items(args.data, cfg.suite.check_questions, cfg.world.image_size)
    total = Counter(q.qtype for _, q in items)

    def letter_only(short_ok: bool) -> bool:  # training_conversation's rule, never short
        return cfg.vlm.mc_fraction == 1.0 or not (short_ok or cfg.vlm.short_option_questions)

    never_short = Counter(q.qtype for _, q in items if letter_only(q.short_ok))
    print(
        f"mc_fraction {cfg.vlm.mc_fraction}, short_option_questions "
        f"{cfg.vlm.short_option_questions}: held-out check questions ({len(items)})"
    )
    print(f"{'type':14s} {'questions':>9s} {'taught by letter only':>22s}")
    for qtype, n in sorted(total.items(), key=lambda kv: -never_short[kv[0]]):
        print(f"{qtype:14s} {n:9d} {never_short[qtype]:22d}")


if __name__ == "__main__":
    main()
