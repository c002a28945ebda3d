"""Question generators: answers agree with the metadata, options are well-formed, formats match."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from encoderlab.config import parse_config
from encoderlab.data.synthworld import WorldConfig, generate_sample
from encoderlab.errors import ConfigError
from encoderlab.suite.questions import (
    LETTERS,
    MC_SUFFIX,
    QUESTION_TYPES,
    SHORT_SUFFIX,
    generate,
    training_conversation,
    type_order,
)
from encoderlab.vlm.config import VLMConfig

SCENE = {
    "kind": "objects",
    "image_size": 64,
    "background": {"style": "grid", "seed": 1},
    "num_objects": 3,
    "objects": [
        {"category": "cat", "superclass": "animal", "colour": "red", "texture": "solid",
         "style": "flat", "size": "large", "bbox": [2, 30, 30, 60]},
        {"category": "key", "superclass": "object", "colour": "blue", "texture": "stripes",
         "style": "flat", "size": "small", "bbox": [44, 34, 60, 50]},
        {"category": "apple", "superclass": "food", "colour": "red", "texture": "dots",
         "style": "flat", "size": "medium", "bbox": [32, 0, 50, 18]},
    ],
    "text": {"content": "$12.50", "kind": "price", "bbox": [0, 0, 20, 10]},
}  # fmt: skip
TABLE = {
    "kind": "table",
    "title": "pets",
    "header": ["pet", "age"],
    "rows": [["cat", "3"], ["dog", "12"], ["owl", "7"]],
}
BAR = {
    "kind": "bar",
    "title": "pets",
    "items": [{"label": "cat", "value": 40}, {"label": "dog", "value": 75},
              {"label": "owl", "value": 12}],
}  # fmt: skip


@pytest.fixture(scope="module")
def metas() -> list[dict]:
    cfg = WorldConfig(doc_share=0.5)
    return [generate_sample(cfg, "test-questions", i)["meta"] for i in range(300)]


def _many(qtype: str, meta: dict, n: int = 40) -> list:
    rng = np.random.default_rng(0)
    return [q for q in (generate(qtype, meta, rng) for _ in range(n)) if q is not None]


def test_hand_worked_answers() -> None:
    by_type = {t: _many(t, SCENE) for t in QUESTION_TYPES}
    for q in by_type["colour"]:
        cat = q.question.split("the ")[1].rstrip("?")
        assert q.answer == {"cat": "red", "key": "blue", "apple": "red"}[cat]
    for q in by_type["count"]:
        truth = {"red objects": "2", "blue objects": "1", "objects": "3", "cats": "1", "keys": "1", "apples": "1",
                 "dotted objects": "1", "striped objects": "1", "plain objects": "1"}  # fmt: skip
        phrase = q.question.removeprefix("How many ").removesuffix(" are there in the image?")
        assert q.answer == truth.get(phrase, "0"), q.question
    for q in by_type["spatial"]:  # apple is above the key; cat and key side by side
        pair = q.question.removeprefix("Where is the ").removesuffix("?").split(" relative to the ")
        expected = {("apple", "key"): "above", ("key", "apple"): "below",
                    ("cat", "key"): "left", ("key", "cat"): "right"}  # fmt: skip
        assert q.answer == expected[tuple(pair)]
    for q in by_type["size"]:
        assert q.answer == ("cat" if "largest" in q.question else "key")
    assert {q.answer for q in by_type["odd_one_out"]} == {"key"}  # the one non-red object
    for q in by_type["superclass"]:
        assert "blue" in q.question and q.answer == "everyday object"  # red is not unique
    read = by_type["read_number"]
    assert read and all(q.answer == "$12.50" for q in read)
    for q in read:  # symmetric 2x2 digit design: every option is a well-formed price
        assert all(o.startswith("$") and len(o) == 6 for o in q.options)
    assert not by_type["read_word"] and not by_type["table"]  # not applicable
    table = _many("table", TABLE)
    for q in table:
        key = q.question.split(" of ")[1].rstrip("?")
        assert q.answer == {"cat": "3", "dog": "12", "owl": "7"}[key]
    for q in _many("chart_argmax", BAR):
        assert q.answer == ("dog" if "highest" in q.question else "owl")
    for q in _many("chart_value", BAR):
        label = q.question.split("value of ")[1].split(" in")[0]
        assert q.answer == {"cat": "40", "dog": "75", "owl": "12"}[label]


def test_options_well_formed_and_letters_uniform(metas: list[dict]) -> None:
    rng = np.random.default_rng(1)
    letters: collections.Counter = collections.Counter()
    produced: collections.Counter = collections.Counter()
    for meta in metas:
        for qtype in QUESTION_TYPES:
            q = generate(qtype, meta, rng)
            if q is None:
                continue
            produced[qtype] += 1
            assert len(q.options) == 4 and len(set(q.options)) == 4, q
            assert q.options[q.answer_index] == q.answer
            letters[q.letter] += 1
    assert set(produced) == set(QUESTION_TYPES)  # every type applies to some world sample
    total = sum(letters.values())  # ~1,600 questions: one standard error is ~1.1 points
    for letter in LETTERS:
        assert abs(letters[letter] / total - 0.25) < 0.045, letters


def test_caption_options_are_a_symmetric_2x2_design(metas: list[dict]) -> None:
    rng = np.random.default_rng(2)
    for meta in metas[:100]:
        q = generate("caption", meta, rng)
        if q is None:
            continue
        # each option shares its first or its last word-group with exactly two others
        heads = collections.Counter(o.split(" ")[1] for o in q.options)
        assert sorted(heads.values()) == [2, 2], q.options


def test_deterministic(metas: list[dict]) -> None:
    a = [training_conversation(m, np.random.default_rng(7), 4, 0.5, {}, True) for m in metas[:50]]
    b = [training_conversation(m, np.random.default_rng(7), 4, 0.5, {}, True) for m in metas[:50]]
    assert a == b


def test_training_conversation_formats(metas: list[dict]) -> None:
    rng = np.random.default_rng(3)
    n_mc = n_short = 0
    for meta in metas[:100]:
        turns = training_conversation(meta, rng, 4, 0.5, {}, False)
        assert 1 <= len(turns) <= 4
        assert len({u for u, _ in turns}) == len(turns)
        for user, answer in turns:
            if user.endswith(MC_SUFFIX):
                n_mc += 1
                lines = user.removesuffix(MC_SUFFIX).split("\n")
                assert [ln[:3] for ln in lines[-4:]] == ["A. ", "B. ", "C. ", "D. "]
                assert answer in LETTERS
            else:
                n_short += 1
                assert user.endswith(SHORT_SUFFIX) and answer and answer not in LETTERS
    assert n_mc > 80 and n_short > 80


def test_training_conversation_mc_fraction(metas: list[dict]) -> None:
    """mc_fraction 0: every question that has a short answer is asked for it (only those that
    need their options stay multiple choice, ``short_option_questions`` off); 1: all multiple
    choice. (It has no default here: the VLM recipe's is the one, tests/test_vlm_recipe.py.)"""
    rng = np.random.default_rng(0)
    options_only = {
        q.question
        for meta in metas
        for t in QUESTION_TYPES
        if (q := generate(t, meta, rng)) is not None and not q.short_ok
    }
    n_mc = dict.fromkeys((0.0, 0.5, 1.0), 0)
    for fraction in n_mc:
        for i, meta in enumerate(metas[:100]):
            turns = training_conversation(meta, np.random.default_rng(i), 4, fraction, {}, False)
            for user, _ in turns:
                if user.endswith(MC_SUFFIX):
                    n_mc[fraction] += 1
                    if fraction == 0.0:
                        assert user.split("\n")[0] in options_only, user
                else:
                    assert fraction < 1.0 and user.endswith(SHORT_SUFFIX)
    assert n_mc[0.0] < n_mc[0.5] / 3 and n_mc[1.0] > n_mc[0.5]


# the questions that refer to their options (``Question.short_ok`` false)
OPTION_QUESTIONS = (
    "Which caption describes the image?",
    "Which of these objects can be seen in the image?",
)


def test_short_option_questions_are_answered_by_the_options_text(metas: list[dict]) -> None:
    """With ``short_option_questions`` the questions that refer to their options (which
    caption, which of these objects) are asked without options and answered by the correct
    option's text; without it they keep their letter (the draws then differ: the format draw
    is made only for a question that can be short)."""
    asked = {True: collections.Counter(), False: collections.Counter()}
    for short in asked:
        for i, meta in enumerate(metas[:200]):
            rng = np.random.default_rng(i)
            for user, answer in training_conversation(meta, rng, 4, 0.0, {}, short):
                head = user.split("\n")[0].removesuffix(SHORT_SUFFIX)
                if head not in OPTION_QUESTIONS:
                    continue
                if user.endswith(SHORT_SUFFIX):
                    assert short and answer not in LETTERS
                    present = {o["category"] for o in meta.get("objects", [])}
                    if head.startswith("Which caption"):  # "a red cat", "a cat on a grid ..."
                        assert any(f" {c}" in answer for c in present), answer
                    else:
                        assert answer in present, answer
                    asked[short]["short"] += 1
                else:
                    assert not short and user.endswith(MC_SUFFIX) and answer in LETTERS
                    asked[short]["letter"] += 1
    assert asked[True]["short"] > 30 and asked[True]["letter"] == 0
    assert asked[False]["letter"] > 30 and asked[False]["short"] == 0


def test_type_weights_shift_the_mix(metas: list[dict]) -> None:
    """Weighted types come up in proportion (0: never); no weights is the uniform order; an
    unknown type or no type left is a one-line config error naming the key."""
    rng = np.random.default_rng(0)
    assert type_order(np.random.default_rng(5), {}).tolist() == (
        np.random.default_rng(5).permutation(len(QUESTION_TYPES)).tolist()
    )
    first = collections.Counter(
        list(QUESTION_TYPES)[int(type_order(rng, {"object": 19.0, "caption": 0})[0])]
        for _ in range(2000)
    )
    assert first["caption"] == 0 and 0.45 < first["object"] / 2000 < 0.55  # 19 of 19 + 17

    def asked(weights: dict) -> collections.Counter:
        return collections.Counter(
            q.split("\n")[0]
            for i, meta in enumerate(metas[:200])
            for q, _ in training_conversation(
                meta, np.random.default_rng(i), 2, 0.0, weights, False
            )
        )

    plain, heavy = asked({}), asked({"object": 8.0})
    what = "What object is shown in the image?"
    assert heavy[what] > 2 * plain[what] > 0
    for bad, key in (({"objekt": 1.0}, "objekt"), ({t: 0.0 for t in QUESTION_TYPES}, ">= 0")):
        with pytest.raises(ConfigError) as err:
            parse_config(VLMConfig, {"question_weights": bad}, source="x.yaml", prefix="vlm")
        assert key in str(err.value) and "question_weights" in str(err.value)
        assert "\n" not in str(err.value)
