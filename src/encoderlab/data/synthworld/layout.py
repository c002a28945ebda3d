"""Sampling object scenes (non-overlapping layout) and single-factor counterfactuals.

Python's ``random.Random`` drives sampling: a scene takes ~60 draws, and numpy's per-call
overhead would dominate the 64 px budget. Callers may pass a numpy ``Generator`` instead; it
seeds a ``random.Random``.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import numpy as np

from encoderlab.data.synthworld import vocab
from encoderlab.data.synthworld.fonts import FONTS
from encoderlab.data.synthworld.raster import text_layer
from encoderlab.data.synthworld.scene import EXTRA_FACTORS, FACTORS, Obj, Scene, Text
from encoderlab.errors import EncoderlabError

Rng = random.Random | np.random.Generator
FBox = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the image side

GAP = 0.03  # free space kept between objects (and the text), fraction of the side
TEXT_FONTS: tuple[str, ...] = tuple(FONTS)


def as_random(rng: Rng) -> random.Random:
    """A ``random.Random``: as is, or seeded from a numpy Generator."""
    if isinstance(rng, random.Random):
        return rng
    return random.Random(int(rng.integers(0, 2**63)))


# How far a style's pixels reach beyond the pictogram's box, as a fraction of the object's
# side (blur halo, pixel blocks, sketch jitter; all styles: stroke widths and contour).
STYLE_REACH: dict[str, float] = {
    "flat": 0.05,
    "outline": 0.05,
    "sketch": 0.08,
    "pixel": 0.11,
    "blur": 0.17,
}


def reach(size_name: str, style: str) -> float:
    """Half-extent of an object's pixels around its centre, as a fraction of the image side."""
    return vocab.SIZES[size_name] * (0.5 + STYLE_REACH[style])


def _obj_box(obj: Obj) -> FBox:
    h = reach(obj.size, obj.style)
    x, y = obj.position
    return (x - h, y - h, x + h, y + h)


def _overlaps(a: FBox, b: FBox, gap: float = GAP) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _text_box(text: Text, size: int) -> FBox:
    x0, y0, x1, y1 = text_layer(text, size).bbox
    return (x0 / size, y0 / size, x1 / size, y1 / size)


_GRID = 64  # candidate centres per axis


def _span(lo: float, hi: float) -> tuple[int, int]:
    """Grid indices k whose centre (k + 0.5) / _GRID lies strictly between lo and hi."""
    k0 = max(0, math.floor(lo * _GRID - 0.5) + 1)
    k1 = min(_GRID, math.ceil(hi * _GRID - 0.5))
    return k0, k1


def _free_cells(h: float, blocked: list[FBox]) -> np.ndarray:
    """Grid cells where a box of half-extent ``h`` can be centred, inside the image and clear
    of ``blocked`` by ``GAP``."""
    free = np.zeros((_GRID, _GRID), dtype=bool)
    k0, k1 = _span(min(h, 0.5) - 0.001, 1.001 - min(h, 0.5))
    free[k0:k1, k0:k1] = True
    for b in blocked:
        x0, x1 = _span(b[0] - h - GAP, b[2] + h + GAP)
        y0, y1 = _span(b[1] - h - GAP, b[3] + h + GAP)
        free[y0:y1, x0:x1] = False
    return free


def _cell_centre(k: int) -> tuple[float, float]:
    return ((k % _GRID + 0.5) / _GRID, (k // _GRID + 0.5) / _GRID)


def _free_position(
    rng: random.Random, h: float, blocked: list[FBox], room_for: float | None = None
) -> tuple[float, float] | None:
    """A random centre for a box of half-extent ``h`` clear of ``blocked`` (None if none).

    Candidates are a 64x64 grid: exact and cheap, unlike rejection sampling, which wastes most
    draws once the image is half full. With ``room_for`` (the half-extent of an object still
    to come), the best of 4 random candidates is kept: the one that leaves it most room.
    """
    cells = np.flatnonzero(_free_cells(h, blocked))
    if cells.size == 0:
        return None
    picks = [
        int(cells[int(rng.random() * cells.size)]) for _ in range(1 if room_for is None else 4)
    ]
    if room_for is None:
        return _cell_centre(picks[0])
    later = _free_cells(room_for, blocked)  # where the next object could go

    def lost(k: int) -> int:  # cells the next object could use that this choice would take
        x, y = _cell_centre(k)
        x0, x1 = _span(x - h - room_for - GAP, x + h + room_for + GAP)
        y0, y1 = _span(y - h - room_for - GAP, y + h + room_for + GAP)
        return int(np.count_nonzero(later[y0:y1, x0:x1]))

    return _cell_centre(min(picks, key=lost))


def sample_text_content(rng: random.Random, kind: str) -> str:
    """A word (in some letter case), an integer or a price."""
    if kind == "word":
        word = rng.choice(vocab.WORDS)
        case = rng.choice(vocab.TEXT_CASES)
        return word.upper() if case == "upper" else word.title() if case == "title" else word
    if kind == "number":
        return str(rng.choice((rng.randint(0, 99), rng.randint(100, 9999))))
    dollars = rng.randint(1, 99)
    return f"${dollars}" if rng.random() < 0.3 else f"${dollars}.{rng.randint(0, 99):02d}"


def sample_text(rng: random.Random, present: bool) -> Text:
    """Every text parameter is drawn even when the scene has no text (kept for counterfactuals)."""
    kind = rng.choices(vocab.TEXT_KINDS, weights=(0.7, 0.15, 0.15))[0]
    content = sample_text_content(rng, kind)
    plate = rng.choice((None, None, None, *vocab.PLATES))
    dark_plate = plate in vocab.DARK_PLATES
    colour = rng.choice(vocab.TEXT_COLOURS_LIGHT if dark_plate else vocab.TEXT_COLOURS_DARK)
    return Text(
        content=content if present else None,
        kind=kind,
        font=rng.choice(TEXT_FONTS),
        size=rng.choice(tuple(vocab.TEXT_SIZES)),
        colour=colour,
        plate=plate,
        position=(round(rng.uniform(0.25, 0.75), 4), round(rng.uniform(0.1, 0.9), 4)),
    )


# Sizes an object may take in a scene of n objects: big ones leave no room for others at 64 px.
SIZES_FOR_COUNT: dict[int, tuple[str, ...]] = {
    1: ("small", "medium", "large"),
    2: ("small", "medium"),
    3: ("small",),
}


def _place(rng: random.Random, objs: list[Obj], blocked: list[FBox]) -> list[Obj]:
    """Give each object a free position in turn; one that does not fit is made smaller, or
    left out."""
    blocked, placed = list(blocked), []
    sizes = list(vocab.SIZES)
    for i, obj in enumerate(objs):
        nxt = reach(objs[i + 1].size, obj.style) if i + 1 < len(objs) else None
        for size_name in sizes[sizes.index(obj.size) :: -1]:
            pos = _free_position(rng, reach(size_name, obj.style), blocked, room_for=nxt)
            if pos is not None:
                obj = dataclasses.replace(obj, size=size_name, position=pos)
                placed.append(obj)
                blocked.append(_obj_box(obj))
                break
    return placed


def sample_object_scene(
    rng: random.Random, size: int, num_objects: tuple[int, int] = (1, 3), text_prob: float = 0.5
) -> Scene:
    """Text first, then objects at random free positions (no overlap); an object that does not
    fit shrinks or is left out."""
    background = rng.choice(vocab.BACKGROUNDS)
    bg_seed = rng.getrandbits(31)
    style = rng.choice(vocab.STYLES)
    text = sample_text(rng, present=rng.random() < text_prob)
    n = rng.randint(*num_objects)
    objs = [
        Obj(
            category=rng.choice(tuple(vocab.CATEGORIES)),
            colour=rng.choice(tuple(vocab.COLOURS)),
            texture=rng.choice(vocab.TEXTURES),
            style=style,
            size=rng.choice(SIZES_FOR_COUNT[min(n, 3)]),
            position=(0.5, 0.5),
            flip=rng.random() < 0.5,
            seed=rng.getrandbits(31),
        )
        for _ in range(n)
    ]
    placed = _place(rng, objs, [_text_box(text, size)] if text.content is not None else [])
    if not placed:
        # even a small object does not fit beside the text: move the text to an edge band
        y = 0.1 if text.position[1] < 0.5 else 0.9
        text = dataclasses.replace(text, position=(text.position[0], y))
        first = dataclasses.replace(objs[0], size="small")
        pos = _free_position(rng, reach("small", style), [_text_box(text, size)])
        placed = [dataclasses.replace(first, position=pos or (0.5, 1.0 - y))]
    return Scene(size, background, bg_seed, tuple(placed), text)


def _other(rng: random.Random, values: Any, current: Any) -> Any:
    return rng.choice([v for v in values if v != current])


def counterfactual(scene: Scene, factor: str, rng: Rng, obj: int = 0) -> Scene:
    """``scene`` with one factor changed to a different valid value (object ``obj`` for
    object-level factors). New sizes and positions avoid the other objects and the text when
    possible, so the change stays a change of one factor only."""
    if not isinstance(scene, Scene):
        raise EncoderlabError(f"counterfactuals need an object scene, got a {scene.kind!r} scene")
    known = (*FACTORS, *EXTRA_FACTORS)
    if factor not in known:
        raise EncoderlabError(f"unknown factor {factor!r}; known: {', '.join(known)}")
    if not 0 <= obj < len(scene.objects):
        raise EncoderlabError(f"object index {obj} out of range (scene has {len(scene.objects)})")
    r = as_random(rng)
    target = scene.objects[obj]
    choices = {
        "category": vocab.CATEGORIES,
        "colour": vocab.COLOURS,
        "texture": vocab.TEXTURES,
        "style": vocab.STYLES,
    }
    if factor in choices:
        return scene.replace(
            obj=obj, **{factor: _other(r, tuple(choices[factor]), getattr(target, factor))}
        )
    if factor == "background":
        return scene.replace(background=_other(r, vocab.BACKGROUNDS, scene.background))
    if factor == "font":
        return scene.replace(font=_other(r, TEXT_FONTS, scene.text.font))
    if factor == "text":
        current = scene.text.content
        for _ in range(100):
            new = sample_text_content(r, scene.text.kind)
            if new != current:
                return scene.replace(text=new)
        raise AssertionError("unreachable: the text vocabulary has many values")
    blocked = [_obj_box(o) for i, o in enumerate(scene.objects) if i != obj]
    if scene.text.content is not None:
        blocked.append(_text_box(scene.text, scene.size))
    if factor == "size":
        options = [s for s in vocab.SIZES if s != target.size]

        def fits(s: str, free: bool) -> bool:
            box = _obj_box(dataclasses.replace(target, size=s))
            inside = box[0] >= 0 and box[1] >= 0 and box[2] <= 1 and box[3] <= 1
            return inside and (not free or not any(_overlaps(box, b) for b in blocked))

        best = [s for s in options if fits(s, True)] or [s for s in options if fits(s, False)]
        return scene.replace(obj=obj, size=r.choice(best or options))
    # position: a free spot whose centre moves >= 0.2 of the side, else any free spot, else any
    h = reach(target.size, target.style)
    old = target.position
    d = 0.2 - h - GAP  # a box that, grown by h + GAP, forbids centres closer than 0.2
    near_old = (old[0] - d, old[1] - d, old[0] + d, old[1] + d)
    pos = _free_position(r, h, [*blocked, near_old]) or _free_position(r, h, blocked)
    while pos is None or pos == old:
        lo, hi = min(h, 0.5), max(1 - h, 0.5)
        pos = (round(r.uniform(lo, hi), 4), round(r.uniform(lo, hi), 4))
    return scene.replace(obj=obj, position=pos)
