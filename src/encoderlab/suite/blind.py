"""Text-only ("blind") baselines: how far the question text and options alone get.

A suite whose questions can be answered without the image measures language priors, not
vision. These two models see only the prompt (the image is ignored) and follow the same VLM
protocol as real models, so the harness scores them like any checkpoint:

- ``OptionPrior``: picks the option that was most often correct when offered, in training
  questions (the "answer frequency" shortcut);
- ``NGramBlind``: the same, conditioned on each unigram / bigram of the question ("How many
  objects" never has answer 0...), averaged in log-odds over the question's n-grams.

Both are trained on questions from the TRAINING split and should score ~25% on the suite.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from encoderlab.data.synthworld import WorldConfig, sample_rngs, sample_scene
from encoderlab.suite.questions import (
    LETTERS,
    MC_SUFFIX,
    QUESTION_TYPES,
    SHORT_SUFFIX,
    Question,
    generate,
)

__all__ = ["NGramBlind", "OptionPrior", "parse_mc_prompt", "train_blind", "training_questions"]


def parse_mc_prompt(prompt: str) -> tuple[str, list[str]]:
    """Split a multiple-choice prompt (``questions.mc_prompt`` layout) into question, options."""
    lines = prompt.removesuffix(MC_SUFFIX).split("\n")
    for start in range(len(lines) - 1, -1, -1):
        tail = lines[start:]
        if len(tail) > len(LETTERS):
            break
        if all(line.startswith(f"{LETTERS[i]}. ") for i, line in enumerate(tail)):
            return "\n".join(lines[:start]), [line[3:] for line in tail]
    return "\n".join(lines), []


def _ngrams(text: str) -> list[str]:
    words = "".join(c.lower() if c.isalnum() else " " for c in text).split()
    return ["<bias>", *words, *(f"{a}_{b}" for a, b in itertools.pairwise(words))]


class NGramBlind:
    """P(option correct | question n-gram, option text), with add-``alpha`` smoothing to 1/4."""

    def __init__(self, questions: Iterable[Question], alpha: float = 2.0, ngrams: bool = True):
        self.alpha = alpha
        self.ngrams = ngrams
        self.correct: Counter[tuple[str, str]] = Counter()
        self.offered: Counter[tuple[str, str]] = Counter()
        digest = hashlib.sha256()
        for q in questions:
            feats = self._features(q.question)
            for i, option in enumerate(q.options):
                for f in feats:
                    self.offered[f, option] += 1
                    self.correct[f, option] += i == q.answer_index
            digest.update(f"{q.question}|{q.options}|{q.answer_index}".encode())
        kind = "ngram" if ngrams else "prior"
        self.checkpoint_hash = f"blind-{kind}-{digest.hexdigest()[:12]}"

    def _features(self, question: str) -> list[str]:
        return _ngrams(question) if self.ngrams else ["<bias>"]

    def option_scores(self, question: str, options: Sequence[str]) -> list[float]:
        """Mean log-odds of "this option is correct" over the question's features."""
        feats = self._features(question)
        prior = 1.0 / len(LETTERS)
        scores = []
        for option in options:
            total = 0.0
            for f in feats:
                c, n = self.correct[f, option], self.offered[f, option]
                p = (c + self.alpha * prior) / (n + self.alpha)
                total += math.log(p / (1 - p))
            scores.append(total / len(feats))
        return scores

    def score_choices(
        self, images: torch.Tensor, prompts: list[str], letters: Sequence[str] = LETTERS
    ) -> torch.Tensor:
        """Log-softmax over the options' scores (the images are ignored)."""
        rows = []
        for prompt in prompts:
            question, options = parse_mc_prompt(prompt)
            scores = self.option_scores(question, options)
            scores += [-math.inf] * (len(letters) - len(scores))
            rows.append(scores[: len(letters)])
        return torch.log_softmax(torch.tensor(rows, dtype=torch.float64), dim=1)

    def score_options(
        self, images: torch.Tensor, prompts: list[str], options: Sequence[Sequence[str]]
    ) -> torch.Tensor:
        """Cloze scoring: the same option scores, from the short-answer prompt's question."""
        rows = []
        width = max(len(o) for o in options)
        for prompt, opts in zip(prompts, options, strict=True):
            scores = self.option_scores(prompt.removesuffix(SHORT_SUFFIX), list(opts))
            rows.append(scores + [-math.inf] * (width - len(scores)))
        return torch.log_softmax(torch.tensor(rows, dtype=torch.float64), dim=1)

    def generate(
        self, images: torch.Tensor, prompts: list[str], max_new_tokens: int = 16
    ) -> list[str]:
        """Blind short answers are not modelled: an empty answer (scores 0)."""
        return ["" for _ in prompts]


class OptionPrior(NGramBlind):
    """The option-frequency baseline: ``NGramBlind`` without question features."""

    def __init__(self, questions: Iterable[Question], alpha: float = 2.0):
        super().__init__(questions, alpha=alpha, ngrams=False)


def training_questions(world: WorldConfig, n_samples: int, split: str = "train") -> list[Question]:
    """Every applicable question type on the first ``n_samples`` samples of a split (metadata
    only: no image is rendered)."""
    out = []
    for index in range(n_samples):
        scene_rng, question_rng = sample_rngs(world.seed, split, index)
        meta = sample_scene(world, scene_rng).to_meta()
        rng = np.random.default_rng(question_rng.getrandbits(128))
        out += [q for q in (generate(t, meta, rng) for t in QUESTION_TYPES) if q is not None]
    return out


def train_blind(world: WorldConfig, n_samples: int = 3000, ngrams: bool = True) -> NGramBlind:
    """The text-only baseline trained on the training split's questions."""
    questions = training_questions(world, n_samples)
    return NGramBlind(questions) if ngrams else OptionPrior(questions)
