"""Does the VLM look at the image? Multiple-choice accuracy with the real image vs a blank one.

Questions come from the VQA suite's generators on a held-out split (``val``), one per image.
A VLM that learned to use its encoder must beat the blank-image baseline, which measures what
the language model guesses from the question and options alone. Scored two ways: by option
letter and by cloze (the option's text as the answer), because a small LM may read its image yet
be unable to answer with a letter (multiple-choice symbol binding); the study reads the
one its suite scores by. Each result also holds the comparison per question type (``by_type``),
since one overall gain cannot say which facts (colour, count, text...) a VLM reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoderlab.data.reader import SampleDataset, index_source
from encoderlab.errors import DataError
from encoderlab.evaluate.stats import paired_difference
from encoderlab.suite.questions import QUESTION_TYPES, SCORINGS, Question, generate
from encoderlab.vlm.model import VLM, VLMModel, letter_logprobs, option_loglik
from encoderlab.vlm.template import Template

__all__ = [
    "BLANK_VALUE",
    "SCORINGS",
    "answer_correct",
    "by_question_type",
    "compare_features",
    "heldout_items",
    "image_sanity",
    "paired_accuracy",
    "real_vs_blank",
    "with_other_scorings",
]

BLANK_VALUE = 128  # a uniform mid-grey image: no content, in range for every normalisation


def heldout_items(
    data: str | Path, n: int, image_size: int | None, split: str = "val", seed: int = 0
) -> list[tuple[dict[str, Any], Question]]:
    """Up to ``n`` samples of a held-out split with one multiple-choice question each, as
    ``(sample, question)``; the sample is the reader's item (``image``, ``meta``, ``text``)."""
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
    if not items:  # real data: questions about its labels (category, superclass)
        from encoderlab.data.labelled_vqa import heldout_label_items

        items = heldout_label_items(dataset, n, seed)
    if not items:
        raise DataError(f"{source}: no sample supports a question")
    return items


@torch.no_grad()
def answer_correct(
    model: VLMModel,
    template: Template,
    features: torch.Tensor,
    questions: Sequence[Question],
    scoring: str,
    batch_size: int = 64,
) -> np.ndarray:
    """1.0 where the model picks the right option of ``questions[i]`` with image features
    ``features[i]``, else 0.0. ``letter``: the most likely option letter after the
    multiple-choice prompt (how the suite scores); ``cloze``: the most likely option text after
    the short-answer prompt (``option_loglik``), for LMs that cannot bind answers to letters."""
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; known: {', '.join(SCORINGS)}")
    hits = []
    for s in range(0, len(questions), batch_size):
        batch, feats = questions[s : s + batch_size], features[s : s + batch_size]
        if scoring == "letter":
            scores = letter_logprobs(model, template, feats, [q.mc_prompt() for q in batch])
        else:
            prompts = [q.short_prompt() for q in batch]
            scores = option_loglik(model, template, feats, prompts, [q.options for q in batch])
        hits.append(scores.argmax(1) == torch.tensor([q.answer_index for q in batch]))
    return torch.cat(hits).double().numpy()


def compare_features(
    model: VLMModel,
    template: Template,
    questions: Sequence[Question],
    features: dict[str, torch.Tensor],
    scoring: str,
    batch_size: int = 64,
) -> dict[str, Any]:
    """``paired_accuracy`` of the same questions answered with two sets of image features
    (``features``: name -> ``[N, T, D]``, the first the real ones)."""
    (a, fa), (b, fb) = features.items()
    hits = [answer_correct(model, template, f, questions, scoring, batch_size) for f in (fa, fb)]
    return paired_accuracy(*hits, (a, b), [q.qtype for q in questions])


@torch.no_grad()
def real_vs_blank(
    vlm: VLM,
    images: torch.Tensor,
    questions: Sequence[Question],
    scoring: str,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Accuracy with the images and with blank ones (``compare_features``), scored by
    ``scoring`` (``answer_correct``)."""
    real = torch.cat(
        [vlm.tower(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
    )
    blank = vlm.tower(torch.full_like(images[:1], BLANK_VALUE)).expand_as(real)
    features = {"real": real, "blank": blank}
    return compare_features(vlm.model, vlm.template, questions, features, scoring, batch_size)


def paired_accuracy(
    with_image: np.ndarray,
    without: np.ndarray,
    names: tuple[str, str],
    qtypes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracies of the same questions answered with the image and without it (0/1 per
    question), named ``names``; ``gain`` = their difference with a paired-bootstrap 95% CI
    (``gain_low``, ``gain_high``); ``uses_image``: the CI lies above 0. With each question's
    type (``qtypes``), ``by_type`` breaks it down (``by_question_type``)."""
    gain = paired_difference(with_image, without)  # same questions: paired
    result: dict[str, Any] = {
        "n": len(with_image),
        names[0]: float(with_image.mean()),
        names[1]: float(without.mean()),
        "gain": gain.value,
        "gain_low": gain.low,
        "gain_high": gain.high,
        "uses_image": bool(gain.low > 0),
    }
    if qtypes is not None:
        result["by_type"] = by_question_type(with_image, without, names, qtypes)
    return result


def by_question_type(
    with_image: np.ndarray, without: np.ndarray, names: tuple[str, str], qtypes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per question type (the suite's generators' order; others, e.g. a real set's labels,
    after them by name): ``n``, both accuracies and their paired difference with its
    bootstrap 95% CI, as ``paired_accuracy``'s keys. One overall gain can hide which facts a
    VLM reads (scene-wide style but not an object's colour, say); this shows them. Types with
    few questions get wide intervals: read them as such."""
    kinds = np.asarray(qtypes)
    if len(kinds) != len(with_image):
        raise ValueError(f"{len(kinds)} question types for {len(with_image)} questions")
    order = {t: i for i, t in enumerate(QUESTION_TYPES)}
    out = {}
    for qtype in sorted(set(kinds.tolist()), key=lambda t: (order.get(t, len(order)), t)):
        rows = kinds == qtype
        gain = paired_difference(with_image[rows], without[rows])
        out[qtype] = {
            "n": int(rows.sum()),
            names[0]: float(with_image[rows].mean()),
            names[1]: float(without[rows].mean()),
            "gain": gain.value,
            "gain_low": gain.low,
            "gain_high": gain.high,
        }
    return out


def image_sanity(
    vlm: VLM,
    data: str | Path,
    n: int = 256,
    split: str = "val",
    seed: int = 0,
    *,
    scoring: str,
) -> dict[str, Any]:
    """``real_vs_blank`` on ``n`` held-out questions, scored by ``scoring`` (the top-level keys,
    with ``scoring`` itself; ``uses_image``: the paired-bootstrap 95% CI of real - blank accuracy
    lies above 0) and by each other scoring (the same keys under its name). ``scoring`` has no
    default: a study passes its ``suite.scoring``, so the check reads as its suite scores."""
    items = heldout_items(data, n, vlm.tower.image_size, split, seed)
    images = torch.stack([item["image"] for item, _ in items])
    questions = [q for _, q in items]
    return with_other_scorings(lambda how: real_vs_blank(vlm, images, questions, how), scoring)


def with_other_scorings(check: Callable[[str], dict[str, Any]], scoring: str) -> dict[str, Any]:
    """``check(scoring)`` at the top level (with ``scoring``), every other scoring's result
    under its name: the study's checks are read in the suite's scoring, the other beside it."""
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; known: {', '.join(SCORINGS)}")
    result = {"scoring": scoring, **check(scoring)}
    for other in SCORINGS:
        if other != scoring:
            result[other] = check(other)
    return result
