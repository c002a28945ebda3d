"""Metrics against hand-worked examples, including the normalisation edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from encoderlab.suite.metrics import (
    OPEN_METRICS,
    anls,
    circular_correct,
    circular_orders,
    levenshtein,
    mc_accuracy,
    normalize_vqa_answer,
    pair_correct,
    relaxed_accuracy,
    vqa_accuracy,
)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("Two", "2"),  # number words -> digits, lower case
        ("the cat", "cat"),  # articles dropped
        ("A dog.", "dog"),  # trailing period stripped
        ("3.5", "3.5"),  # a period followed by a digit stays
        ("1,000", "1000"),  # digit comma digit: punctuation deleted, not spaced
        ("red-blue", "red blue"),  # a mark inside a word becomes a space
        ("red - blue", "red blue"),  # a mark next to a space is deleted
        ("dont", "don't"),  # contractions restored
        ("Yes!\n", "yes"),  # newline and exclamation mark
        ("none", "0"),
        ("an  apple ", "apple"),  # repeated spaces collapse
    ],
)
def test_vqa_normalisation(raw: str, norm: str) -> None:
    assert normalize_vqa_answer(raw) == norm


def test_vqa_accuracy_hand_worked() -> None:
    answers = ["two", "2", "2", "two", "3", "three", "2", "2", "3", "2"]
    assert vqa_accuracy("2", answers) == 1.0  # 7 matches after normalisation -> min(1, 7/3)
    assert vqa_accuracy("Three.", answers) == 1.0  # "3" x3 -> 3/3
    assert vqa_accuracy("4", answers) == 0.0
    assert vqa_accuracy("the cat", ["cat", "a cat", "dog"]) == pytest.approx(2 / 3)
    assert vqa_accuracy("cat", ["cat"]) == pytest.approx(1 / 3)


def test_levenshtein() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("same", "same") == 0


def test_anls_hand_worked() -> None:
    assert anls("Hello World", ["hello  world"]) == 1.0  # case and whitespace normalised
    assert anls("helo world", ["hello world"]) == pytest.approx(1 - 1 / 11)
    # NL = 2/4 = 0.5 is not < 0.5: scored 0 (ST-VQA's threshold rule)
    assert anls("abcd", ["abef"]) == 0.0
    # NL = 1/3 < 0.5 -> 2/3; the best ground truth counts
    assert anls("abc", ["xyz", "abd"]) == pytest.approx(2 / 3)
    assert anls("", [""]) == 1.0
    assert anls("totally different", ["abc"]) == 0.0


def test_relaxed_accuracy_hand_worked() -> None:
    assert relaxed_accuracy("104", "100") == 1.0  # 4% off
    assert relaxed_accuracy("105", "100") == 1.0  # exactly 5%
    assert relaxed_accuracy("106", "100") == 0.0
    assert relaxed_accuracy("12%", "0.12") == 1.0  # percent -> fraction
    assert relaxed_accuracy("0", "0") == 1.0  # zero target: exact match
    assert relaxed_accuracy("0.01", "0") == 0.0
    assert relaxed_accuracy("Apple", "apple") == 1.0  # non-numeric: case-insensitive match
    assert relaxed_accuracy("apples", "apple") == 0.0
    assert OPEN_METRICS["relaxed"]("52", ["70", "50"]) == 1.0  # best of several targets


def test_mc_and_circular() -> None:
    assert mc_accuracy(["A", "b", "C"], ["A", "B", "D"]).tolist() == [1, 1, 0]
    orders = circular_orders(4)
    assert orders[0] == [0, 1, 2, 3] and orders[1] == [1, 2, 3, 0] and orders[3] == [3, 0, 1, 2]
    # every option is shown once at every letter across the passes
    assert all(sorted(col) == [0, 1, 2, 3] for col in zip(*orders, strict=True))
    assert circular_orders(2) == [[0, 1], [1, 0]]
    passes = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 0, 0]])
    assert circular_correct(passes).tolist() == [1, 0, 0]


def test_circular_catches_a_letter_biased_model() -> None:
    """A model that always answers "A" is right 25% of the time, 0% under circular evaluation."""
    rng = np.random.default_rng(0)
    answers = rng.integers(4, size=400)
    plain = np.mean(answers == 0)
    per_pass = np.array(
        [[order[0] == a for order in circular_orders(4)] for a in answers], dtype=float
    )
    assert 0.2 < plain < 0.3
    assert circular_correct(per_pass).mean() == 0.0


def test_pair_accuracy() -> None:
    correct = [1, 1, 1, 0, 0, 0, 1, 1]
    pairs = ["a", "a", "b", "b", "c", "c", "d", "d"]
    assert pair_correct(correct, pairs).tolist() == [1, 0, 0, 1]
