"""Alt-text-like captions: each factor is mentioned with its own probability.

Real alt-text names the main object most of the time and the embedded text often, but rarely
colours, textures or styles; ``CaptionPolicy`` defaults mirror that, and the study can turn any
knob to 0 or 1 to ask what language supervision needs to contain. Every decision is drawn in a
fixed order from the caption's own rng, so captions are deterministic and changing one
probability does not reshuffle the others.
"""

from __future__ import annotations

import random
from typing import Annotated

from pydantic import Field

from encoderlab.config import StrictModel
from encoderlab.data.synthworld.documents import DocScene
from encoderlab.data.synthworld.scene import Obj, Scene, Text

Prob = Annotated[float, Field(ge=0.0, le=1.0)]

MENTION_ORDER: tuple[str, ...] = (
    "category",
    "text",
    "count",
    "spatial",
    "colour",
    "texture",
    "style",
    "background",
    "size",
)


class CaptionPolicy(StrictModel):
    """Probability that a caption mentions each factor (defaults mirror web alt-text)."""

    category: Prob = 0.9
    text: Prob = 0.8  # when the image has text
    count: Prob = 0.3
    spatial: Prob = 0.2  # when there are 2+ objects
    colour: Prob = 0.1
    texture: Prob = 0.05
    style: Prob = 0.05
    background: Prob = 0.05
    size: Prob = 0.05
    doc_values: Prob = 0.3  # charts/tables/documents: list values, columns or the first line


TEXTURE_WORDS: dict[str, str] = {
    "solid": "solid",
    "stripes": "striped",
    "dots": "dotted",
    "checker": "checkered",
    "noise": "speckled",
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little"),
    "medium": ("medium-sized",),
    "large": ("large", "big"),
}
STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "flat": ("flat illustration", "flat icon", "flat vector graphic"),
    "outline": ("line drawing", "outline drawing", "outline icon"),
    "sketch": ("pencil sketch", "sketch", "rough sketch"),
    "pixel": ("pixel art", "pixelated image", "8-bit pixel art"),
    "blur": ("blurry image", "blurred picture", "out-of-focus picture"),
}
BACKGROUND_PHRASES: dict[str, tuple[str, ...]] = {
    "plain": ("a plain background", "a blank background"),
    "gradient": ("a gradient background", "a colour gradient"),
    "grid": ("grid paper", "a grid background"),
    "noise": ("a grainy background", "a noisy background"),
    "landscape": ("a landscape", "an outdoor backdrop"),
}
GENERIC_NOUNS: tuple[str, ...] = ("object", "thing", "item", "figure")
COUNT_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four"}

# Frames around the subject phrase ``{s}``: 16 plain ones and 4 that name the style ``{y}``
# (``{a_y}``: with its article).
TEMPLATES: tuple[str, ...] = (
    "{s}",
    "a picture of {s}",
    "an image of {s}",
    "photo of {s}",
    "an illustration of {s}",
    "clipart of {s}",
    "{s} clipart",
    "icon of {s}",
    "{s}, digital art",
    "graphic of {s}",
    "stock image of {s}",
    "{s} in the picture",
    "here we see {s}",
    "this image shows {s}",
    "cartoon of {s}",
    "artwork showing {s}",
)
STYLE_TEMPLATES: tuple[str, ...] = ("{a_y} of {s}", "{s}, {y}", "{y} showing {s}", "{y}: {s}")
# Clauses appended for the embedded text ``{t}`` (already phrased, e.g. 'the word "SALE"').
TEXT_CLAUSES: tuple[str, ...] = (
    " with {t}",
    " and {t}",
    ", {t}",
    " next to {t}",
    " alongside {t}",
    " together with {t}",
)
TEXT_PHRASES: dict[str, tuple[str, ...]] = {
    "word": ('the word "{c}"', 'the text "{c}"', 'a sign that says "{c}"', 'a label reading "{c}"'),
    "number": ('the number "{c}"', 'the digits "{c}"'),
    "price": ('the price "{c}"', 'a price tag of "{c}"'),
}
BACKGROUND_CLAUSES: tuple[str, ...] = (" on {b}", " against {b}", " in front of {b}")
DOC_TEMPLATES: dict[str, tuple[str, ...]] = {
    "bar": ("a bar chart of {t}", "bar graph showing {t}", "{t} bar chart", "chart of {t}"),
    "line": (
        "a line chart of {t}",
        "line graph of {t}",
        "{t} line chart",
        "a line graph showing {t}",
    ),
    "pie": ("a pie chart of {t}", "pie chart showing {t}", "{t} pie chart"),
    "table": ("a table of {t}", "{t} table", "a small table listing {t}", "spreadsheet of {t}"),
    "document": (
        'a document titled "{t}"',
        'a page of text titled "{t}"',
        'a note with the heading "{t}"',
    ),
}


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou8" else "a ") + phrase


def relation(a: Obj, b: Obj) -> str:
    """Spatial relation of ``a`` to ``b`` from their centres (y grows downwards)."""
    dx, dy = a.position[0] - b.position[0], a.position[1] - b.position[1]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def _noun_phrase(obj: Obj, said: dict[str, bool], rng: random.Random, seen: set[str]) -> str:
    words = []
    if said["size"]:
        words.append(rng.choice(SIZE_WORDS[obj.size]))
    if said["colour"]:
        words.append(obj.colour)
    if said["texture"]:
        words.append(TEXTURE_WORDS[obj.texture])
    noun = obj.category if said["category"] else rng.choice(GENERIC_NOUNS)
    words.append(noun)
    phrase = " ".join(words)
    if noun in seen:
        return "another " + phrase
    seen.add(noun)
    return _article(phrase)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _text_phrase(text: Text, rng: random.Random) -> str:
    return rng.choice(TEXT_PHRASES[text.kind]).format(c=text.content)


def object_caption(scene: Scene, policy: CaptionPolicy, rng: random.Random):
    """Caption of an object scene and which factors it mentions."""
    draws = {name: rng.random() < getattr(policy, name) for name in MENTION_ORDER}
    n = len(scene.objects)
    said = dict(draws)
    said["text"] = draws["text"] and scene.text.content is not None
    said["spatial"] = draws["spatial"] and n >= 2
    seen: set[str] = set()
    nps = [_noun_phrase(o, said, rng, seen) for o in scene.objects]
    if said["spatial"]:
        subject = f"{nps[0]} {relation(scene.objects[0], scene.objects[1])} {nps[1]}"
        if n == 3:
            subject += f" and {nps[2]}"
    else:
        subject = _join(nps)
    if said["count"]:
        if n == 1:
            subject = rng.choice(("a single ", "one ")) + nps[0].split(" ", 1)[1]
        else:
            subject = f"{COUNT_WORDS[n]} {rng.choice(GENERIC_NOUNS)}s: {subject}"
    if said["style"]:
        frame = rng.choice(STYLE_TEMPLATES)
        style = rng.choice(STYLE_PHRASES[scene.objects[0].style])
        caption = frame.format(s=subject, y=style, a_y=_article(style))
    else:
        caption = rng.choice(TEMPLATES).format(s=subject)
    clauses = []
    if said["text"]:
        clauses.append(rng.choice(TEXT_CLAUSES).format(t=_text_phrase(scene.text, rng)))
    if said["background"]:
        bg = rng.choice(BACKGROUND_PHRASES[scene.background])
        clauses.append(rng.choice(BACKGROUND_CLAUSES).format(b=bg))
    if len(clauses) == 2 and rng.random() < 0.5:
        clauses.reverse()
    caption += "".join(clauses)
    if rng.random() < 0.5:
        caption = caption[0].upper() + caption[1:]
    return caption, said


def doc_caption(doc: DocScene, policy: CaptionPolicy, rng: random.Random):
    """Caption of a chart, table or document; values/columns/first line with ``doc_values``."""
    values = rng.random() < policy.doc_values
    caption = rng.choice(DOC_TEMPLATES[doc.kind]).format(t=doc.title)
    if values:
        if doc.kind in ("bar", "line", "pie"):
            unit = "%" if doc.kind == "pie" else ""
            caption += ": " + ", ".join(f"{lab} {v}{unit}" for lab, v in doc.rows)
        elif doc.kind == "table":
            caption += " with columns " + _join(list(doc.header))
        else:
            caption += f' that begins "{doc.rows[0][0]}"'
    if rng.random() < 0.5:
        caption = caption[0].upper() + caption[1:]
    return caption, {"doc_values": values}


def make_caption(
    scene: Scene | DocScene, policy: CaptionPolicy, rng: random.Random
) -> tuple[str, dict[str, bool]]:
    """Caption and the factors it mentions (for the metadata and mention-rate checks)."""
    if isinstance(scene, DocScene):
        return doc_caption(scene, policy, rng)
    return object_caption(scene, policy, rng)
