"""Does the VLM look at the image? Multiple-choice accuracy with the real image vs a blank one.

Questions come from the VQA suite's generators on a held-out split (``val``), one per image.
A VLM that learned to use its encoder must beat the blank-image baseline, which measures what
the language model guesses from the question and options alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from encoderlab.data.reader import SampleDataset, index_source
from encoderlab.errors import DataError
from encoderlab.evaluate.stats import paired_difference
from encoderlab.vlm.model import VLM

if TYPE_CHECKING:
    from encoderlab.suite.questions import Question

__all__ = [
    "BLANK_VALUE",
    "heldout_items",
    "heldout_questions",
    "image_sanity",
    "paired_accuracy",
    "real_vs_blank",
]

BLANK_VALUE = 128  # a uniform mid-grey image: no content, in range for every normalisation


def heldout_items(
    data: str | Path, n: int, image_size: int | None, split: str = "val", seed: int = 0
) -> list[tuple[dict[str, Any], Question]]:
    """Up to ``n`` samples of a held-out split with one multiple-choice question each, as
    ``(sample, question)``; the sample is the reader's item (``image``, ``meta``, ``text``)."""
    from encoderlab.suite.questions import QUESTION_TYPES, generate

    data = Path(data)
    source = data / split if (data / "manifest.json").is_file() else data
    if not source.exists():
        raise DataError(f"{source}: no such directory (held-out split {split!r})")
    refs, _ = index_source(source)
    dataset = SampleDataset(refs, image_size=image_size)
    items = []
    for i in range(len(dataset)):
        if len(items) >= n:
            break
        item = dataset[i]
        if "skip" in item:
            continue
        rng = np.random.default_rng([seed, i])
        for k in rng.permutation(len(QUESTION_TYPES)):
            q = generate(list(QUESTION_TYPES)[int(k)], item["meta"], rng)
            if q is not None:
                items.append((item, q))
                break
    if not items:
        raise DataError(f"{source}: no sample supports a question")
    return items


def heldout_questions(
    data: str | Path, n: int, image_size: int, split: str = "val", seed: int = 0
) -> tuple[torch.Tensor, list[str], list[str]]:
    """Up to ``n`` images of a held-out split with one multiple-choice question each:
    ``(uint8 images [N,3,H,W], prompts, correct letters)``."""
    items = heldout_items(data, n, image_size, split, seed)
    images = torch.stack([item["image"] for item, _ in items])
    return images, [q.mc_prompt() for _, q in items], [q.letter for _, q in items]


@torch.no_grad()
def real_vs_blank(
    vlm: VLM,
    images: torch.Tensor,
    prompts: Sequence[str],
    letters: Sequence[str],
    options: Sequence[str] = ("A", "B", "C", "D"),
    batch_size: int = 64,
) -> dict[str, Any]:
    """Letter accuracy (argmax of ``score_choices``) with the images and with blank ones, and
    their difference ``gain`` with a paired-bootstrap 95% CI (``gain_low``, ``gain_high``)."""
    truth = torch.tensor([list(options).index(x) for x in letters])
    blank = torch.full_like(images[:1], BLANK_VALUE)
    correct = {}
    for name in ("real", "blank"):
        picks = []
        for s in range(0, len(prompts), batch_size):
            batch = images[s : s + batch_size]
            batch = blank.expand_as(batch) if name == "blank" else batch
            scores = vlm.score_choices(batch, prompts[s : s + batch_size], options)
            picks.append(scores.argmax(dim=1))
        correct[name] = (torch.cat(picks) == truth).double().numpy()
    return paired_accuracy(correct["real"], correct["blank"], ("real", "blank"))


def paired_accuracy(
    with_image: np.ndarray, without: np.ndarray, names: tuple[str, str]
) -> dict[str, Any]:
    """Accuracies of the same questions answered with the image and without it (0/1 per
    question), named ``names``; ``gain`` = their difference with a paired-bootstrap 95% CI
    (``gain_low``, ``gain_high``); ``uses_image``: the CI lies above 0."""
    gain = paired_difference(with_image, without)  # same questions: paired
    return {
        "n": len(with_image),
        names[0]: float(with_image.mean()),
        names[1]: float(without.mean()),
        "gain": gain.value,
        "gain_low": gain.low,
        "gain_high": gain.high,
        "uses_image": bool(gain.low > 0),
    }


def image_sanity(
    vlm: VLM, data: str | Path, n: int = 256, split: str = "val", seed: int = 0
) -> dict[str, Any]:
    """``real_vs_blank`` on ``n`` held-out questions; ``uses_image``: the paired-bootstrap 95%
    CI of real - blank accuracy lies above 0."""
    images, prompts, letters = heldout_questions(data, n, vlm.tower.image_size, split, seed)
    return real_vs_blank(vlm, images, prompts, letters)
