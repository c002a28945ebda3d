"""The VLM checks per question type (issue #18): the oracle's own − other and each VLM's real −
blank, broken down by the type each question carries, with paired-bootstrap CIs. Known 0/1
answers in, the breakdown checked against the shared bootstrap helper."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from encoderlab.evaluate.stats import paired_difference
from encoderlab.suite.questions import Question
from encoderlab.vlm.sanity import by_question_type, compare_features, paired_accuracy

# 8 questions: colour read perfectly with the image, count not at all, object never right
QTYPES = ["colour", "count", "colour", "object", "count", "colour", "object", "colour"]
REAL = np.array([1, 0, 1, 0, 1, 1, 0, 1], float)
BLANK = np.array([0, 0, 1, 0, 1, 0, 0, 0], float)


def test_each_type_is_its_own_paired_comparison() -> None:
    found = by_question_type(REAL, BLANK, ("real", "blank"), QTYPES)
    assert list(found) == ["object", "count", "colour"]  # the suite's generator order
    assert {t: r["n"] for t, r in found.items()} == {"object": 2, "count": 2, "colour": 4}
    colour = found["colour"]
    assert (colour["real"], colour["blank"], colour["gain"]) == (1.0, 0.25, 0.75)
    rows = np.array(QTYPES) == "colour"
    ci = paired_difference(REAL[rows], BLANK[rows])  # the shared helper on that type alone
    assert (colour["gain_low"], colour["gain_high"]) == (ci.low, ci.high)
    assert colour["gain_low"] > 0
    count = found["count"]
    assert (count["real"], count["blank"], count["gain"]) == (0.5, 0.5, 0.0)
    assert found["object"] == {
        "n": 2,
        "real": 0.0,
        "blank": 0.0,
        "gain": 0.0,
        "gain_low": 0.0,
        "gain_high": 0.0,
    }
    # a real set's label questions (labelled_vqa: "label-<name>") come after the suite's
    kinds = ["label-superclass", "count", "label-category"]
    mixed = by_question_type(REAL[:3], BLANK[:3], ("real", "blank"), kinds)
    assert list(mixed) == ["count", "label-category", "label-superclass"]
    with pytest.raises(ValueError, match="7 question types for 8 questions"):
        by_question_type(REAL, BLANK, ("real", "blank"), QTYPES[:7])


def test_overall_keys_stay_and_by_type_sums_to_them() -> None:
    overall = paired_accuracy(REAL, BLANK, ("real", "blank"))
    both = paired_accuracy(REAL, BLANK, ("real", "blank"), QTYPES)
    assert {k: v for k, v in both.items() if k != "by_type"} == overall
    parts = both["by_type"].values()
    assert sum(r["n"] for r in parts) == both["n"] == 8
    assert sum(r["n"] * r["gain"] for r in parts) / 8 == pytest.approx(both["gain"])


def test_compare_features_uses_the_type_each_question_carries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sanity check and the oracle both go through ``compare_features``: the types come
    from the questions themselves, in the order the answers are scored."""
    questions = [Question(t, f"q{i}", "a", ("a", "b", "c", "d"), 0) for i, t in enumerate(QTYPES)]
    features = {"own": torch.ones(8, 1, 1), "other": torch.zeros(8, 1, 1)}

    def answers(model: Any, template: Any, feats: torch.Tensor, qs: Any, *args: Any) -> Any:
        assert [q.qtype for q in qs] == QTYPES
        return REAL if bool(feats[0].all()) else BLANK

    monkeypatch.setattr("encoderlab.vlm.sanity.answer_correct", answers)
    result = compare_features(None, None, questions, features, "cloze")  # type: ignore[arg-type]
    assert result["by_type"] == by_question_type(REAL, BLANK, ("own", "other"), QTYPES)
    assert result["by_type"]["colour"]["own"] == 1.0 and result["gain"] == pytest.approx(0.375)
