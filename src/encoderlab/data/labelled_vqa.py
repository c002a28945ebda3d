"""Questions about any labelled image set (real images: no SynthWorld factors needed).

SynthWorld's question generators (``suite.questions``) read the factors the renderer recorded;
a real image set has labels instead (an imported clip-art set: ``category``, ``superclass``).
Each label with at least four values becomes one question type:

- ``category``: "What is shown in the image?" (short answer: the category);
- ``superclass``: "What kind of thing is shown in the image?";
- any other label ``L``: "What is the L of the image?".

Multiple-choice options are the answer and three distractors drawn from the label's other
values in the set (the vocabulary), in a random order, so the correct letter is uniform over
A-D and the options alone do not reveal the answer (every option is a value the label takes).
The same questions feed stage-2 training conversations (``labelled_conversation``, on the
train split), VLMEvalKit / VMCBench tables (``vmcbench_items``, on a held-out split) and
LLaVA-format instruction JSON (``vlm.llava_json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from encoderlab.suite.formats import MCItem
from encoderlab.suite.questions import LETTERS, Question

__all__ = [
    "DEFAULT_LABELS",
    "MIN_VALUES",
    "export_vmcbench",
    "heldout_label_items",
    "label_question",
    "labelled_conversation",
    "vmcbench_items",
    "vocabulary",
]

DEFAULT_LABELS = ("category", "superclass")
MIN_VALUES = len(LETTERS)  # a label needs an answer and three distinct distractors
QUESTIONS = {
    "category": "What is shown in the image?",
    "superclass": "What kind of thing is shown in the image?",
}


def vocabulary(
    metas: Sequence[dict[str, Any]], labels: Sequence[str] = DEFAULT_LABELS
) -> dict[str, list[str]]:
    """Each label's sorted distinct values in ``metas``; labels with fewer than four values
    (no three distractors) are left out."""
    vocab = {}
    for label in labels:
        values = sorted({str(m[label]) for m in metas if m.get(label) is not None})
        if len(values) >= MIN_VALUES:
            vocab[label] = values
    return vocab


def label_question(
    label: str, meta: dict[str, Any], rng: np.random.Generator, vocab: dict[str, list[str]]
) -> Question | None:
    """One question about ``label`` of a sample, or None (no such label, too few values)."""
    values = vocab.get(label)
    answer = meta.get(label)
    if values is None or answer is None or str(answer) not in values:
        return None
    answer = str(answer)
    others = [v for v in values if v != answer]
    distractors = [others[i] for i in rng.choice(len(others), size=3, replace=False)]
    options = [answer, *distractors]
    order = rng.permutation(len(options))
    text = QUESTIONS.get(label, f"What is the {label.replace('_', ' ')} of the image?")
    return Question(
        f"label-{label}",
        text,
        answer,
        tuple(options[i] for i in order),
        int(np.flatnonzero(order == 0)[0]),
    )


def _conversation(
    meta: dict[str, Any],
    rng: np.random.Generator,
    n_turns: int,
    vocab: dict[str, list[str]],
    mc_fraction: float,
) -> list[tuple[str, str]]:
    turns: list[tuple[str, str]] = []
    labels = list(vocab)
    for i in rng.permutation(len(labels)):
        if len(turns) >= n_turns:
            break
        q = label_question(labels[int(i)], meta, rng, vocab)
        if q is None:
            continue
        if rng.random() < 1.0 - mc_fraction:  # as suite.questions.training_conversation
            turns.append((q.short_prompt(), q.answer))
        else:
            turns.append((q.mc_prompt(), q.letter))
    return turns


def labelled_conversation(vocab: dict[str, list[str]], mc_fraction: float):
    """A ``vlm.data.ConversationFn`` over labels: up to ``n_turns`` questions (one per label,
    in random order), each a short answer or, with probability ``mc_fraction``, a
    multiple-choice letter, formatted as SynthWorld's training conversations are
    (``mc_fraction``: the VLM recipe's, no default here)."""
    return partial(_conversation, vocab=vocab, mc_fraction=mc_fraction)


def vmcbench_items(
    samples: Sequence[tuple[str, bytes, dict[str, Any]]],
    vocab: dict[str, list[str]],
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> list[MCItem]:
    """One multiple-choice item per (sample, label): ``samples`` are ``(key, image bytes,
    meta)``; items are seeded by ``(seed, sample number)``; ``category`` is the label asked
    about (the table's category column), ``extra`` keeps the sample key."""
    items = []
    for n, (key, image, meta) in enumerate(samples):
        rng = np.random.default_rng([seed, n])
        for label in labels or list(vocab):
            q = label_question(label, meta, rng, vocab)
            if q is None:
                continue
            items.append(
                MCItem(
                    index=f"{key}-{label}",
                    question=q.question,
                    options=q.options,
                    answer=q.letter,
                    image=image,
                    category=label,
                    answers=(q.answer,),
                    extra={"key": key},
                )
            )
    return items


def export_vmcbench(
    split: str | Path, out: str | Path, n: int | None = None, seed: int = 0
) -> tuple[Path, int]:
    """A VMCBench / VLMEvalKit TSV of label questions about the first ``n`` readable samples of
    a labelled shard split (distractors: the split's other label values); returns the path and
    the number of items. ``encoderlab eval --suite PATH.tsv`` scores a VLM on it."""
    from encoderlab.data.reader import SampleDataset, index_source
    from encoderlab.errors import DataError
    from encoderlab.suite.formats import write_table

    split = Path(split)
    refs, _ = index_source(split, require_text=False)
    dataset = SampleDataset(refs)
    samples = []
    for i, ref in enumerate(refs):
        if n is not None and len(samples) >= n:
            break
        item = dataset[i]
        if "skip" not in item:
            samples.append((ref.key, dataset._payload(ref.image), item["meta"]))
    vocab = vocabulary([m for _, _, m in samples])
    if not vocab:
        raise DataError(
            f"{split}: no label with {MIN_VALUES}+ values ({', '.join(DEFAULT_LABELS)}) to ask about"
        )
    items = vmcbench_items(samples, vocab, seed)
    write_table(items, Path(out))
    return Path(out), len(items)


def heldout_label_items(
    dataset: Any, n: int, seed: int = 0
) -> list[tuple[dict[str, Any], Question]]:
    """Up to ``n`` readable items of a ``SampleDataset`` with one label question each (the
    VLM sanity check's held-out questions on real data), seeded by ``(seed, item index)``;
    distractors come from these items' label values."""
    samples = []
    for i in range(len(dataset)):
        if len(samples) >= n:
            break
        item = dataset[i]
        if "skip" not in item:
            samples.append((i, item))
    vocab = vocabulary([item["meta"] for _, item in samples])
    out = []
    for i, item in samples:
        rng = np.random.default_rng([seed, i])
        for k in rng.permutation(len(vocab)):
            q = label_question(list(vocab)[int(k)], item["meta"], rng, vocab)
            if q is not None:
                out.append((item, q))
                break
    return out
