"""Question generators: SynthWorld sample metadata -> questions with a short answer and 4 options.

Every generator reads one sample's ``meta`` (the factors SynthWorld recorded) and returns a
``Question`` or ``None`` when the sample cannot support that question (no text, one object...).
Distractors come from the same closed vocabulary as the answer (``synthworld.vocab``) and are
built so that the question text and the options alone do not reveal the answer: the correct
option sits at a uniformly random letter, and where options are perturbations of the answer
(captions, numbers) they form a symmetric set (every option differs from the others in the same
way), so no "odd one out" or "majority vote" over the options points to the answer.

The same generators feed the benchmarks (``suite.benchmarks``) and the VLM's stage-2 training
conversations (``training_conversation``), on disjoint SynthWorld splits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import numpy as np

from encoderlab.data.synthworld import vocab

__all__ = [
    "COUNT_OPTIONS",
    "LETTERS",
    "MC_SUFFIX",
    "QUESTION_TYPES",
    "SCORINGS",
    "SHORT_SUFFIX",
    "TEXTURELESS_STYLES",
    "Question",
    "QuestionMix",
    "Scoring",
    "attribute_phrase",
    "count_question",
    "format_options",
    "generate",
    "mc_prompt",
    "short_prompt",
    "training_conversation",
    "type_order",
]

LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
SHORT_SUFFIX = "\nAnswer the question using a single word or phrase."
MC_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
# How a multiple-choice question is scored: the likeliest option letter after the options, or
# (cloze) the likeliest option text after the short-answer prompt. The study's choice is its
# ``suite.scoring`` (``suite.harness.EvalConfig``, which holds the one default); the VLM checks
# and the suite all read that one value.
Scoring = Literal["letter", "cloze"]
SCORINGS: tuple[str, ...] = get_args(Scoring)

# Readable names for factor values that are code words in the vocabulary.
TEXTURE_WORDS: dict[str, str] = {
    "solid": "solid",
    "stripes": "stripes",
    "dots": "dots",
    "checker": "checkerboard",
    "noise": "speckles",
}
STYLE_WORDS: dict[str, str] = {
    "flat": "flat",
    "outline": "outline",
    "sketch": "sketch",
    "pixel": "pixelated",
    "blur": "blurred",
}
SUPERCLASS_WORDS: dict[str, str] = {
    "animal": "animal",
    "vehicle": "vehicle",
    "food": "food",
    "object": "everyday object",
    "shape": "symbol or shape",
    "nature": "nature or building",
}
RELATIONS: tuple[str, ...] = ("left", "right", "above", "below")
COUNT_OPTIONS: tuple[str, ...] = ("0", "1", "2", "3")


@dataclass(frozen=True)
class Question:
    """One question about one image: its text, short answer and 4 options (one correct)."""

    qtype: str
    question: str
    answer: str
    options: tuple[str, ...]
    answer_index: int
    short_ok: bool = True  # False when the question only makes sense with its options
    label: str = ""  # answer class for balancing (fixed-scale types); "" = the answer itself

    @property
    def letter(self) -> str:
        return LETTERS[self.answer_index]

    @property
    def answer_class(self) -> str:
        return self.label or self.answer

    def mc_prompt(self) -> str:
        return mc_prompt(self.question, self.options)

    def short_prompt(self) -> str:
        return short_prompt(self.question)


def format_options(options: Sequence[str]) -> str:
    """``A. x\\nB. y\\nC. z\\nD. w`` (LLaVA / VMCBench layout)."""
    return "\n".join(f"{letter}. {opt}" for letter, opt in zip(LETTERS, options, strict=False))


def mc_prompt(question: str, options: Sequence[str]) -> str:
    """The multiple-choice user text with LLaVA-1.5's instruction suffix."""
    return f"{question}\n{format_options(options)}{MC_SUFFIX}"


def short_prompt(question: str) -> str:
    """The short-answer user text with LLaVA-1.5's instruction suffix."""
    return f"{question}{SHORT_SUFFIX}"


# --- helpers ---------------------------------------------------------------------------------


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _plural(category: str) -> str:
    return vocab.CATEGORIES[category][1]


def _pick(
    pool: Sequence[str], k: int, rng: np.random.Generator, exclude: Sequence[str] = ()
) -> list[str] | None:
    """``k`` distinct values of ``pool`` not in ``exclude`` (pool order kept deterministic)."""
    excluded = set(exclude)
    candidates = [p for p in dict.fromkeys(pool) if p not in excluded]
    if len(candidates) < k:
        return None
    return [candidates[i] for i in rng.choice(len(candidates), size=k, replace=False)]


def _question(
    qtype: str,
    question: str,
    answer: str,
    distractors: Sequence[str] | None,
    rng: np.random.Generator,
    short_ok: bool = True,
) -> Question | None:
    """Shuffle answer + 3 distractors so that the correct letter is uniform over A-D."""
    if distractors is None:
        return None
    options = [answer, *distractors]
    if len(options) != len(LETTERS) or len(set(options)) != len(options):
        return None
    order = rng.permutation(len(options))
    shuffled = tuple(options[i] for i in order)
    return Question(qtype, question, answer, shuffled, int(np.flatnonzero(order == 0)[0]), short_ok)


def _fixed(
    qtype: str, question: str, answer: str, pool: Sequence[str], rng: np.random.Generator
) -> Question | None:
    """A question whose options are always the same 4 values (counts, relations); its answer
    class is the answer's rank on that scale, so benchmarks can balance it."""
    q = _question(qtype, question, answer, [p for p in pool if p != answer], rng)
    return replace(q, label=str(list(pool).index(answer))) if q else None


def _objects(meta: dict[str, Any]) -> list[dict[str, Any]]:
    return list(meta.get("objects") or [])


# Rendering styles that draw no fill, so an object's texture has no pixels (synthworld.raster).
TEXTURELESS_STYLES: frozenset[str] = frozenset({"outline"})


def _texture_visible(objects: list[dict[str, Any]]) -> bool:
    return all(o["style"] not in TEXTURELESS_STYLES for o in objects)


def _unique(objects: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Objects whose value of ``key`` no other object shares (so "the <value>" is unambiguous)."""
    values = [o[key] for o in objects]
    return [o for o in objects if values.count(o[key]) == 1]


def _centre(obj: dict[str, Any]) -> tuple[float, float]:
    x0, y0, x1, y1 = obj["bbox"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def _background(meta: dict[str, Any]) -> str | None:
    return (meta.get("background") or {}).get("style")


def _text(meta: dict[str, Any]) -> dict[str, Any] | None:
    text = meta.get("text")
    return text if isinstance(text, dict) and text.get("content") else None


# --- General -----------------------------------------------------------------------------------


def q_object(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Object recognition: which category is in the image (absent categories as distractors)."""
    objects = _objects(meta)
    if not objects:
        return None
    present = [o["category"] for o in objects]
    answer = present[int(rng.integers(len(present)))]
    if len(set(present)) == 1:
        question = "What object is shown in the image?"
    else:
        question = "Which of these objects can be seen in the image?"
    distractors = _pick(list(vocab.CATEGORIES), 3, rng, exclude=present)
    return _question("object", question, answer, distractors, rng, short_ok=len(set(present)) == 1)


def q_existence(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """POPE-like existence, 4-way: is there an X, a Y, both or neither (outcome drawn first)."""
    objects = _objects(meta)
    if not objects:
        return None
    present = list(dict.fromkeys(o["category"] for o in objects))
    absent = [c for c in vocab.CATEGORIES if c not in present]
    outcome = ("both", "first", "second", "neither")[int(rng.integers(4))]
    if outcome == "both":
        pair = _pick(present, 2, rng)
    elif outcome == "neither":
        pair = _pick(absent, 2, rng)
    else:
        one, other = _pick(present, 1, rng), _pick(absent, 1, rng)
        pair = one + other if outcome == "first" else other + one  # type: ignore[operator]
    if pair is None:
        return None
    x, y = pair
    options = {
        "both": "both",
        "first": f"only {_article(x)}",
        "second": f"only {_article(y)}",
        "neither": "neither",
    }
    answer = options[outcome]
    question = f"Does the image show {_article(x)}, {_article(y)}, both, or neither?"
    q = _question("existence", question, answer, [v for v in options.values() if v != answer], rng)
    return replace(q, label=outcome) if q else None


_TEXTURE_ADJ = {
    "solid": "plain",
    "stripes": "striped",
    "dots": "dotted",
    "checker": "checkered",
    "noise": "speckled",
}


def _count_target(
    objects: list[dict[str, Any]], rng: np.random.Generator, k: int
) -> tuple[str, int] | None:
    """A noun phrase that matches exactly ``k`` objects ("objects", "red objects", "cats"...)."""
    phrases: list[tuple[str, int]] = [("objects", len(objects))]
    for colour in vocab.COLOURS:
        count = sum(o["colour"] == colour for o in objects)
        phrases.append((attribute_phrase("colour", colour), count))
    for cat in vocab.CATEGORIES:
        phrases.append((_plural(cat), sum(o["category"] == cat for o in objects)))
    if _texture_visible(objects):
        for tex in vocab.TEXTURES:
            count = sum(o["texture"] == tex for o in objects)
            phrases.append((attribute_phrase("texture", tex), count))
    matching = [p for p in phrases if p[1] == k]
    if not matching:
        return None
    return matching[int(rng.integers(len(matching)))]


def q_count(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Counting: objects matching a colour / category / texture; answers 0-3 on a fixed scale."""
    objects = _objects(meta)
    if not objects:
        return None
    target = _count_target(objects, rng, int(rng.integers(len(COUNT_OPTIONS))))
    if target is None:
        return None
    return count_question(*target, rng)


def count_question(phrase: str, k: int, rng: np.random.Generator) -> Question | None:
    """``How many <phrase> are there in the image?`` with the fixed options 0-3."""
    return _fixed("count", f"How many {phrase} are there in the image?", str(k), COUNT_OPTIONS, rng)


def attribute_phrase(factor: str, value: str) -> str:
    """The noun phrase for objects with a colour or texture ("red objects", "dotted objects")."""
    return f"{value if factor == 'colour' else _TEXTURE_ADJ[value]} objects"


# factor -> (question template over the category, readable names of the values or None)
ATTRIBUTES: dict[str, tuple[str, dict[str, str]]] = {
    "colour": ("What colour is the {}?", {c: c for c in vocab.COLOURS}),
    "texture": ("What pattern is on the {}?", TEXTURE_WORDS),
    "style": ("In what style is the {} drawn?", STYLE_WORDS),
}


def _attribute_question(
    factor: str, meta: dict[str, Any], rng: np.random.Generator
) -> Question | None:
    """Ask for ``factor`` of an object named by its (unique) category."""
    candidates = _unique(_objects(meta), "category")
    if factor == "texture":
        candidates = [o for o in candidates if _texture_visible([o])]
    if not candidates:
        return None
    obj = candidates[int(rng.integers(len(candidates)))]
    template, words = ATTRIBUTES[factor]
    answer = words[obj[factor]]
    distractors = _pick(list(words.values()), 3, rng, exclude=[answer])
    return _question(factor, template.format(obj["category"]), answer, distractors, rng)


def q_colour(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Colour of a named object."""
    return _attribute_question("colour", meta, rng)


def q_texture(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Surface pattern of a named object."""
    return _attribute_question("texture", meta, rng)


def q_style(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Rendering style of a named object (a low-level factor)."""
    return _attribute_question("style", meta, rng)


def pair_questions(
    meta_a: dict[str, Any], meta_b: dict[str, Any], factor: str, rng: np.random.Generator
) -> tuple[Question, Question] | None:
    """MMVP-like pair: one question, one option order, two images that differ in ``factor`` of
    object 0 (a counterfactual), hence two different answers. None if object 0's category is
    not unique (the question would be ambiguous) or the values do not differ."""
    a, b = _objects(meta_a), _objects(meta_b)
    if not a or a[0] not in _unique(a, "category") or a[0]["category"] != b[0]["category"]:
        return None
    if factor == "texture" and not _texture_visible([a[0], b[0]]):
        return None
    template, words = ATTRIBUTES[factor]
    ans_a, ans_b = words[a[0][factor]], words[b[0][factor]]
    if ans_a == ans_b:
        return None
    fill = _pick(list(words.values()), 2, rng, exclude=[ans_a, ans_b])
    q = _question(f"pair_{factor}", template.format(a[0]["category"]), ans_a, [ans_b, *fill], rng)  # type: ignore[list-item]
    if q is None:
        return None
    return q, replace(q, answer=ans_b, answer_index=q.options.index(ans_b))


def q_caption(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Caption match over a 2x2 design: two factors, the true value and one absent alternative
    each, so every option shares exactly one factor value with two others and none stands out."""
    objects = _objects(meta)
    background = _background(meta)
    if not objects or background not in vocab.BACKGROUNDS:
        return None
    obj = objects[int(rng.integers(len(objects)))]
    cats = [o["category"] for o in objects]
    alt_cat = _pick(list(vocab.CATEGORIES), 1, rng, exclude=cats)
    designs = ["colour", "background"]
    second = designs[int(rng.integers(len(designs)))]
    if second == "colour":
        alt = _pick(list(vocab.COLOURS), 1, rng, exclude=[o["colour"] for o in objects])
        true_val = obj["colour"]

        def fmt(cat: str, val: str) -> str:
            return f"{_article(val)} {cat}"

    else:
        alt = _pick(list(vocab.BACKGROUNDS), 1, rng, exclude=[background])
        true_val = background

        def fmt(cat: str, val: str) -> str:
            return f"{_article(cat)} on a {val} background"

    if alt_cat is None or alt is None:
        return None
    answer = fmt(obj["category"], true_val)
    distractors = [
        fmt(obj["category"], alt[0]),
        fmt(alt_cat[0], true_val),
        fmt(alt_cat[0], alt[0]),
    ]
    return _question(
        "caption", "Which caption describes the image?", answer, distractors, rng, short_ok=False
    )


# --- Reasoning ---------------------------------------------------------------------------------


def _relation(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """Where ``a`` is relative to ``b``: the dominant axis of the centre offset, if clear."""
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    dx, dy = ax - bx, ay - by
    side = min(a["bbox"][2] - a["bbox"][0], b["bbox"][2] - b["bbox"][0])
    if abs(dx) >= 2 * abs(dy) and abs(dx) >= 0.5 * side:
        return "left" if dx < 0 else "right"
    if abs(dy) >= 2 * abs(dx) and abs(dy) >= 0.5 * side:
        return "above" if dy < 0 else "below"
    return None


def q_spatial(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Spatial relation between two named objects (left / right / above / below)."""
    candidates = _unique(_objects(meta), "category")
    if len(candidates) < 2:
        return None
    i, j = rng.choice(len(candidates), size=2, replace=False)
    a, b = candidates[int(i)], candidates[int(j)]
    rel = _relation(a, b)
    if rel is None:
        return None
    question = f"Where is the {a['category']} relative to the {b['category']}?"
    return _fixed("spatial", question, rel, RELATIONS, rng)


def q_size(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Relative size: which object is the largest / smallest (absent categories fill options)."""
    objects = _unique(_objects(meta), "category")
    if len(objects) < 2 or len(objects) != len(_objects(meta)):
        return None
    rank = list(vocab.SIZES)
    ranks = [rank.index(o["size"]) for o in objects]
    largest = bool(rng.integers(2))
    extreme = max(ranks) if largest else min(ranks)
    if ranks.count(extreme) != 1:
        return None
    answer = objects[ranks.index(extreme)]["category"]
    others = [o["category"] for o in objects if o["category"] != answer]
    fill = _pick(list(vocab.CATEGORIES), 3 - len(others), rng, exclude=[answer, *others])
    if fill is None:
        return None
    question = f"Which object is the {'largest' if largest else 'smallest'} in the image?"
    return _question("size", question, answer, others + fill, rng)


def q_superclass(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Knowledge: what kind of thing the object of a given (unique) colour is."""
    candidates = _unique(_objects(meta), "colour")
    if not candidates:
        return None
    obj = candidates[int(rng.integers(len(candidates)))]
    answer = SUPERCLASS_WORDS[obj["superclass"]]
    distractors = _pick(list(SUPERCLASS_WORDS.values()), 3, rng, exclude=[answer])
    question = f"What kind of thing is the {obj['colour']} object?"
    return _question("superclass", question, answer, distractors, rng)


def q_arithmetic(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Count arithmetic: add d to (or remove from) a count; the 4 options are a fixed window."""
    objects = _objects(meta)
    if not objects:
        return None
    if rng.integers(2):
        k = int(rng.integers(len(COUNT_OPTIONS)))
        target = _count_target(objects, rng, k)
        if target is None:
            return None
        phrase, k = target
        d = int(rng.integers(1, 4))
        more = "one more" if d == 1 else f"{d} more"
        question = f"If {more} {phrase} were added, how many {phrase} would there be?"
        pool = [str(d + i) for i in range(4)]
        return _fixed("arithmetic", question, str(k + d), pool, rng)
    n = len(objects)
    left = int(rng.integers(len(COUNT_OPTIONS)))
    target = _count_target(objects, rng, n - left) if n - left >= 0 else None
    if target is None:
        return None
    phrase, k = target
    if phrase == "objects":
        return None
    question = f"How many objects would be left if all the {phrase} were removed?"
    return _fixed("arithmetic", question, str(n - k), COUNT_OPTIONS, rng)


def q_odd_one_out(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Which object differs from the others in colour / pattern / size (3+ objects)."""
    objects = _objects(meta)
    if len(objects) < 3 or len(_unique(objects, "category")) != len(objects):
        return None
    keys = [("colour", "colour"), ("size", "size")]
    if _texture_visible(objects):
        keys.append(("texture", "pattern"))
    order = rng.permutation(len(keys))
    for i in order:
        key, word = keys[int(i)]
        odd = _unique(objects, key)
        if len(odd) == 1:
            answer = odd[0]["category"]
            others = [o["category"] for o in objects if o is not odd[0]]
            fill = _pick(list(vocab.CATEGORIES), 3 - len(others), rng, exclude=[answer, *others])
            if fill is None:
                return None
            question = f"Which object has a different {word} from the others?"
            return _question("odd_one_out", question, answer, others + fill, rng)
    return None


# --- OCR ---------------------------------------------------------------------------------------


def q_read_word(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Read the embedded word (TextVQA-like); distractors are vocabulary words of similar length."""
    text = _text(meta)
    if text is None or text.get("kind") != "word":
        return None
    answer = str(text["content"]).lower()
    near = [w for w in vocab.WORDS if abs(len(w) - len(answer)) <= 1]
    distractors = _pick(near, 3, rng, exclude=[answer])
    return _question("read_word", "What word is written in the image?", answer, distractors, rng)


def _digit_variants(answer: str, rng: np.random.Generator) -> list[str] | None:
    """Three strings that differ from ``answer`` in a 2x2 design over two digit positions (each
    option differs from two others in one digit), or in its only digit for 1-digit numbers.
    A leading digit never becomes 0, so every option is a well-formed number."""
    pos = [i for i, ch in enumerate(answer) if ch.isdigit()]
    if not pos:
        return None

    def alternatives(i: int) -> list[str]:
        lead = i == pos[0] and len(pos) > 1
        return [d for d in "0123456789" if d != answer[i] and not (lead and d == "0")]

    def put(s: str, i: int, d: str) -> str:
        return s[:i] + d + s[i + 1 :]

    if len(pos) == 1:
        return [put(answer, pos[0], d) for d in _pick(alternatives(pos[0]), 3, rng) or []]
    i, j = (int(p) for p in rng.choice(pos, size=2, replace=False))
    di = _pick(alternatives(i), 1, rng)[0]  # type: ignore[index]
    dj = _pick(alternatives(j), 1, rng)[0]  # type: ignore[index]
    return [put(answer, i, di), put(answer, j, dj), put(put(answer, i, di), j, dj)]


def q_read_number(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Read the embedded number or price (OCRVQA-like); distractors differ in the digits."""
    text = _text(meta)
    if text is None or text.get("kind") not in ("number", "price"):
        return None
    answer = str(text["content"])
    what = "price" if text["kind"] == "price" else "number"
    question = f"What {what} is written in the image?"
    return _question("read_number", question, answer, _digit_variants(answer, rng), rng)


# --- Doc & Chart -------------------------------------------------------------------------------
# Doc metadata (``synthworld.documents``): ``kind`` bar/line/pie/table/document, ``title``,
# ``header``, ``rows``; charts also list ``items`` (label, value, colour for pie slices).
# Distractors that must be invented are drawn like the world draws the real values, so a real
# value does not stand out among invented ones.


def _doc(meta: dict[str, Any], *kinds: str) -> dict[str, Any] | None:
    return meta if meta.get("kind") in kinds else None


def _chart_fill(meta: dict[str, Any], rng: np.random.Generator, k: int, exclude: list[str]):
    """``k`` invented chart values: pie shares are multiples of 5 (>= 10), bars 1-99."""
    pool = range(10, 100, 5) if meta["kind"] == "pie" else range(1, 100)
    return _pick([str(v) for v in pool], k, rng, exclude=exclude)


def q_chart_value(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """ChartQA-like: the value of one labelled bar / point / slice; other values as distractors."""
    doc = _doc(meta, "bar", "line", "pie")
    if doc is None:
        return None
    items = doc["items"]
    item = items[int(rng.integers(len(items)))]
    answer = str(item["value"])
    others = [str(it["value"]) for it in items if str(it["value"]) != answer]
    others = _pick(others, min(3, len(set(others))), rng) or []
    fill = _chart_fill(doc, rng, 3 - len(others), exclude=[answer, *others])
    question = f"What is the value of {item['label']} in the chart?"
    return _question("chart_value", question, answer, others + (fill or []), rng)


def _label_pool(doc: dict[str, Any]) -> tuple[str, ...]:
    return vocab.LABEL_POOLS[vocab.CHART_TOPICS[doc["title"]]]


def q_chart_argmax(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """ChartQA-like: which label has the highest / lowest value (other labels, then absent
    labels of the same topic, as distractors)."""
    doc = _doc(meta, "bar", "line", "pie")
    if doc is None:
        return None
    labels = [it["label"] for it in doc["items"]]
    values = [float(it["value"]) for it in doc["items"]]
    highest = bool(rng.integers(2))
    best = max(values) if highest else min(values)
    if values.count(best) != 1:
        return None
    answer = labels[values.index(best)]
    others = [lab for lab in labels if lab != answer][:3]
    fill = _pick(_label_pool(doc), 3 - len(others), rng, exclude=labels)
    word = "highest" if highest else "lowest"
    question = f"Which label has the {word} value in the chart?"
    return _question("chart_argmax", question, answer, others + (fill or []), rng)


def _table_cells(kind: str, rng: np.random.Generator, k: int, exclude: list[str]):
    """``k`` invented cells of a table column kind (as ``synthworld.documents`` samples them)."""
    if kind == "int":
        pool: Sequence[str] = [str(v) for v in range(1, 100)]
    elif kind == "price":
        pool = [f"${v}" for v in range(1, 100)]
    elif kind == "word":
        pool = [w for w in vocab.WORDS if len(w) <= 5]
    else:
        pool = vocab.LABEL_POOLS[kind]
    return _pick(pool, k, rng, exclude=exclude)


def q_table(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """TableVQA-like: the cell at (row key, column); the column's other cells as distractors."""
    doc = _doc(meta, "table")
    if doc is None or len(doc["header"]) < 2:
        return None
    header, rows = doc["header"], doc["rows"]
    r = int(rng.integers(len(rows)))
    c = int(rng.integers(1, len(header)))
    answer = rows[r][c]
    others = list(dict.fromkeys(row[c] for row in rows if row[c] != answer))[:3]
    kind = vocab.TABLE_SCHEMAS[doc["title"]][1][c]
    fill = _table_cells(kind, rng, 3 - len(others), exclude=[answer, *others])
    question = f"In the table, what is the {header[c]} of {rows[r][0]}?"
    return _question("table", question, answer, others + (fill or []), rng)


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
_SHORT_WORDS = tuple(w for w in vocab.WORDS if len(w) <= 5)


def q_document(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """DocVQA-like: what is written on line N; other lines (then invented ones) as distractors."""
    doc = _doc(meta, "document")
    if doc is None:
        return None
    lines = [row[0] for row in doc["rows"]][: len(_ORDINALS)]
    n = int(rng.integers(len(lines)))
    answer = lines[n]
    others = list(dict.fromkeys(x for x in lines if x != answer))
    others = _pick(others, min(3, len(others)), rng) or []
    while len(others) < 3:  # invented lines, word counts like the real ones
        words = len(lines[int(rng.integers(len(lines)))].split())
        first = _SHORT_WORDS[int(rng.integers(len(_SHORT_WORDS)))]
        rest = [vocab.WORDS[int(i)] for i in rng.integers(len(vocab.WORDS), size=words - 1)]
        line = " ".join([first, *rest])
        if line not in (answer, *others):
            others.append(line)
    question = f"What is written on the {_ORDINALS[n]} line of the document?"
    return _question("document", question, answer, others, rng)


def q_diagram(meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """AI2D-like: which label the legend gives to the part of a given colour (pie diagrams)."""
    doc = _doc(meta, "pie")
    if doc is None:
        return None
    items = doc["items"]
    item = items[int(rng.integers(len(items)))]
    labels = [it["label"] for it in items]
    others = [lab for lab in labels if lab != item["label"]][:3]
    fill = _pick(_label_pool(doc), 3 - len(others), rng, exclude=labels)
    question = f"In the diagram, which label belongs to the {item['colour']} part?"
    return _question("diagram", question, item["label"], others + (fill or []), rng)


Generator = Callable[[dict[str, Any], np.random.Generator], "Question | None"]

QUESTION_TYPES: dict[str, Generator] = {
    "object": q_object,
    "existence": q_existence,
    "count": q_count,
    "colour": q_colour,
    "texture": q_texture,
    "style": q_style,
    "caption": q_caption,
    "spatial": q_spatial,
    "size": q_size,
    "superclass": q_superclass,
    "arithmetic": q_arithmetic,
    "odd_one_out": q_odd_one_out,
    "read_word": q_read_word,
    "read_number": q_read_number,
    "chart_value": q_chart_value,
    "chart_argmax": q_chart_argmax,
    "table": q_table,
    "document": q_document,
    "diagram": q_diagram,
}


def generate(qtype: str, meta: dict[str, Any], rng: np.random.Generator) -> Question | None:
    """Generate one question of type ``qtype`` for a sample, or None if it does not apply."""
    return QUESTION_TYPES[qtype](meta, rng)


def type_order(rng: np.random.Generator, weights: Mapping[str, float]) -> np.ndarray:
    """Indices into ``QUESTION_TYPES`` in the order a conversation tries them: a uniform
    permutation (no weights, or all equal), or, with ``weights`` (relative; a type not named
    weighs 1, weight 0 is never asked), drawn without replacement in proportion to them."""
    w = np.array([float(weights.get(t, 1.0)) for t in QUESTION_TYPES])
    if (w == w[0]).all():
        return rng.permutation(len(QUESTION_TYPES))
    return rng.choice(len(w), size=int((w > 0).sum()), replace=False, p=w / w.sum())


def training_conversation(
    meta: dict[str, Any],
    rng: np.random.Generator,
    n_turns: int,
    mc_fraction: float,
    type_weights: Mapping[str, float],
    short_option_questions: bool,
) -> list[tuple[str, str]]:
    """Up to ``n_turns`` (user text, answer) pairs about one sample, of mixed types and formats.

    Each turn is a short-answer question (answer = the phrase) or, with probability
    ``mc_fraction``, a multiple-choice one (answer = the letter). Questions that refer to their
    options (``Question.short_ok`` false: which caption, which of these objects) are always
    multiple choice, unless ``short_option_questions``: then they are asked like the rest and
    answered by the correct option's text, since a model that cannot bind letters learns
    nothing from a letter answer. Types are drawn at random among those the sample supports (in
    proportion to ``type_weights``, ``type_order``), each at most once per conversation. Fewer
    turns come back if the sample supports fewer types. The mix has no default here: it is the
    VLM recipe's (``vlm.config.VLMConfig``), so stage 0, stage 2 and the context check ask the
    same.
    """
    turns: list[tuple[str, str]] = []
    for i in type_order(rng, type_weights):
        if len(turns) >= n_turns:
            break
        q = generate(list(QUESTION_TYPES)[int(i)], meta, rng)
        if q is None:
            continue
        if (q.short_ok or short_option_questions) and rng.random() < 1.0 - mc_fraction:
            turns.append((q.short_prompt(), q.answer))
        else:
            turns.append((q.mc_prompt(), q.letter))
    return turns


@dataclass(frozen=True)
class QuestionMix:
    """How a VLM recipe asks its training questions: ``n_turns`` per conversation and
    ``training_conversation``'s mix. One value (``VLMConfig.question_mix``) that stage 0,
    stage 2, the context check and the LLaVA export all take, so that none can ask differently
    from the others or fall back on a default of its own."""

    n_turns: int
    mc_fraction: float
    type_weights: Mapping[str, float]
    short_option_questions: bool
