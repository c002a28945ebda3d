"""What a trained VLM answers, and whether its image changes that: a diagnostic, not a test.

    .venv/bin/python bench/vlm_answers.py runs/tiny/vlm/clip [--data runs/tiny/data/shards]

Prints, on held-out (val) images: multiple-choice accuracy, scored by letter and by cloze, with
the real vs a blank image (``vlm.sanity.image_sanity``, paired CI), then greedy short answers (exact match) per
question type with the real vs a blank image, with a few answers next to the truth, so one can
see whether a VLM that ignores its image has at least learned the answer formats.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from encoderlab.data.reader import SampleDataset, index_source
from encoderlab.suite.questions import generate
from encoderlab.vlm import load
from encoderlab.vlm.sanity import BLANK_VALUE, image_sanity


def short_answers(vlm, data: Path, qtype: str, n: int) -> tuple[dict[str, float], list, list]:
    refs, _ = index_source(data / "val")
    dataset = SampleDataset(refs, image_size=vlm.tower.image_size)
    images, prompts, truth = [], [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if "skip" in item:
            continue
        q = generate(qtype, item["meta"], np.random.default_rng([0, i]))
        if q is None or not q.short_ok:
            continue
        images.append(item["image"])
        prompts.append(q.short_prompt())
        truth.append(q.answer.lower())
        if len(images) >= n:
            break
    batch = torch.stack(images)
    acc, said = {}, {}
    for name, x in (("real", batch), ("blank", torch.full_like(batch, BLANK_VALUE))):
        said[name] = vlm.generate(x, prompts, max_new_tokens=6)
        hits = [a.strip().lower().rstrip(".") == t for a, t in zip(said[name], truth, strict=True)]
        acc[name] = float(np.mean(hits))
    return acc, said["real"][:4], truth[:4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vlm", type=Path)
    parser.add_argument("--data", type=Path, default=Path("runs/tiny/data/shards"))
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument(
        "--types", default="object,colour,count,read_word", help="short-answer types ('': none)"
    )
    args = parser.parse_args()
    vlm = load(args.vlm)
    s = image_sanity(vlm, args.data, n=2 * args.n)
    for name, r in (("MC letters", s), ("MC cloze", s["cloze"])):
        print(
            f"{name}, {r['n']} questions: real {100 * r['real']:.1f}% vs blank "
            f"{100 * r['blank']:.1f}%, gain {100 * r['gain']:+.1f} "
            f"[{100 * r['gain_low']:+.1f}, {100 * r['gain_high']:+.1f}] points"
        )
    types = [t for t in args.types.split(",") if t]
    if types:
        print(f"\n{'type':<12} {'real':>6} {'blank':>6}  answers (real image) vs truth")
    for qtype in types:
        acc, said, truth = short_answers(vlm, args.data, qtype, args.n)
        print(
            f"{qtype:<12} {100 * acc['real']:5.1f}% {100 * acc['blank']:5.1f}%  {said} vs {truth}"
        )


if __name__ == "__main__":
    main()
