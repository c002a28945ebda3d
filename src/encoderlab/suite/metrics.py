"""Rule-based, deterministic VQA metrics as the field defines them.

- multiple choice: letter accuracy, and MMBench's circular evaluation (correct only if right
  under every rotation of the options);
- VQA accuracy: ``min(1, #matching human answers / 3)`` after the official VQA normalisation
  (punctuation, lower case, number words, articles, contractions);
- ANLS (DocVQA / InfoVQA, ST-VQA's definition): ``1 - NL`` if the normalised Levenshtein
  distance ``NL < 0.5``, else 0, maximised over the ground-truth answers;
- relaxed accuracy (ChartQA / pix2struct): numbers within 5% relative error, else exact match;
- MMVP pair accuracy: a pair counts only if both of its questions are right.

These are written out here because the tools that ship them (lmms-eval, VLMEvalKit) are heavy
optional installs and differ among themselves in details; the definitions below follow the
original evaluation scripts and each quirk is noted where it matters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence

import numpy as np

__all__ = [
    "OPEN_METRICS",
    "anls",
    "circular_correct",
    "circular_orders",
    "levenshtein",
    "mc_accuracy",
    "normalize_vqa_answer",
    "pair_correct",
    "relaxed_accuracy",
    "vqa_accuracy",
]

# --- VQA normalisation (the official VQA v2 evaluation script, vqaEval.py) ---------------------

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
          "`", ",", "?", "!")  # fmt: skip
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a (typo'd, always true)
# lookahead, so in effect a period is removed unless a digit follows ("3.5" keeps its point).
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def _process_punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        # A mark next to a space (or any text with a "1,000"-style number) is deleted; otherwise
        # it becomes a space ("red-blue" -> "red blue").
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out)


def _process_digit_article(text: str) -> str:
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa_answer(text: str) -> str:
    """The official VQA answer normalisation (punctuation, case, number words, articles...)."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(text))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """``min(1, #answers equal to the prediction / 3)`` after normalising both sides.

    (The official script further averages this over the 10 leave-one-annotator-out subsets of
    VQA v2's answers; with fewer answers, as in synthetic items, the plain form is the metric.)
    """
    pred = normalize_vqa_answer(prediction)
    matches = sum(normalize_vqa_answer(a) == pred for a in answers)
    return min(1.0, matches / 3.0)


# --- ANLS ---------------------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), row-by-row dynamic programming.

    Hand-written: answers are short and no edit-distance package is among the dependencies.
    """
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _anls_norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """Best ``1 - NL`` over the answers, 0 where ``NL >= threshold`` (ST-VQA's definition).

    ``NL`` = edit distance / length of the longer string, after lower-casing and collapsing
    whitespace. (lmms-eval keeps a score of exactly 0.5; ST-VQA's ``NL < threshold`` drops it.)
    """
    pred = _anls_norm(prediction)
    best = 0.0
    for answer in answers:
        gt = _anls_norm(answer)
        length = max(len(pred), len(gt))
        nl = levenshtein(pred, gt) / length if length else 0.0
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return best


# --- relaxed accuracy ---------------------------------------------------------------------------


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_accuracy(prediction: str, target: str, tolerance: float = 0.05) -> float:
    """ChartQA's relaxed correctness (pix2struct's definition).

    Numbers: correct if ``|pred - target| / |target| <= tolerance`` ("%" divides by 100). A zero
    or non-numeric target falls back to case-insensitive exact match.
    """
    pred, tgt = prediction.strip(), target.strip()
    p, t = _to_float(pred), _to_float(tgt)
    if p is not None and t:
        return float(abs(p - t) / abs(t) <= tolerance)
    return float(pred.lower() == tgt.lower())


def _best_of(metric: Callable[[str, str], float]) -> Callable[[str, Sequence[str]], float]:
    def scored(prediction: str, answers: Sequence[str]) -> float:
        return max((metric(prediction, a) for a in answers), default=0.0)

    return scored


def _exact(prediction: str, answer: str) -> float:
    return float(prediction.strip().lower() == answer.strip().lower())


# Open-ended metrics by name: ``metric(prediction, answers) -> score in [0, 1]``.
OPEN_METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "vqa": vqa_accuracy,
    "anls": anls,
    "relaxed": _best_of(relaxed_accuracy),
    "exact": _best_of(_exact),
}


# --- multiple choice ----------------------------------------------------------------------------


def mc_accuracy(predictions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """Per-item 0/1 letter correctness."""
    return np.array(
        [p.strip().upper() == a.strip().upper() for p, a in zip(predictions, answers, strict=True)],
        dtype=np.float64,
    )


def circular_orders(n_options: int) -> list[list[int]]:
    """MMBench's circular passes: pass ``r`` shows the options shifted left by ``r``.

    ``order[i]`` is the index (in the original options) of the option shown at letter ``i``.
    """
    return [[(i + r) % n_options for i in range(n_options)] for r in range(n_options)]


def circular_correct(correct: np.ndarray) -> np.ndarray:
    """``[items, passes]`` 0/1 correctness -> per item 1 only if every pass is right."""
    return np.asarray(correct, dtype=np.float64).min(axis=1)


def pair_correct(correct: Sequence[float], pair_ids: Sequence[Hashable]) -> np.ndarray:
    """MMVP pair accuracy: per pair (in first-seen order) 1 only if all its items are right."""
    groups: dict[Hashable, list[float]] = {}
    for c, pid in zip(correct, pair_ids, strict=True):
        groups.setdefault(pid, []).append(float(c))
    return np.array([min(v) for v in groups.values()], dtype=np.float64)
