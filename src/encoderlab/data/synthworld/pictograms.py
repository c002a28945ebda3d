"""Procedural pictograms: each category is a few filled polygons and stroked lines.

Shapes are written in a 0..100 box (y down) for readability and compiled once into unit
coordinates ([-1, 1]^2) so the renderer only scales, shifts and rasterises them. Every primitive
carries a *paint*: ``body`` takes the object's colour and texture, the others are fixed or derived
tones (details, windows, wood...), ``hole`` cuts back to transparent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from encoderlab.data.synthworld.vocab import CATEGORIES

# Paint indices double as values in the renderer's label image (0 = transparent).
PAINTS: tuple[str, ...] = (
    "hole",
    "body",
    "detail",
    "light",
    "wood",
    "metal",
    "leaf",
    "accent",
    "shade",
    "wafer",
)
PAINT_INDEX: dict[str, int] = {p: i for i, p in enumerate(PAINTS)}

Point = tuple[float, float]


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> list[Point]:
    """Polygon approximating an ellipse (polygons can be jittered by the sketch style)."""
    return [
        (cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n))
        for k in range(n)
    ]


def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 12) -> list:
    """Points along an elliptic arc from angle ``a0`` to ``a1`` (degrees, y down)."""
    return [
        (
            cx + rx * math.cos(math.radians(a0 + (a1 - a0) * k / n)),
            cy + ry * math.sin(math.radians(a0 + (a1 - a0) * k / n)),
        )
        for k in range(n + 1)
    ]


def rect(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def star(cx: float, cy: float, r_out: float, r_in: float, points: int = 5) -> list[Point]:
    out = []
    for k in range(2 * points):
        r = r_out if k % 2 == 0 else r_in
        a = -math.pi / 2 + math.pi * k / points
        out.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return out


def heart(n: int = 28) -> list[Point]:
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((50 + 2.9 * x, 46 - 3.1 * y))
    return pts


def _sun() -> list[tuple]:
    prims: list[tuple] = []
    for k in range(8):
        a = math.pi * k / 4
        tip = (50 + 50 * math.cos(a), 50 + 50 * math.sin(a))
        left = (50 + 26 * math.cos(a - 0.2), 50 + 26 * math.sin(a - 0.2))
        right = (50 + 26 * math.cos(a + 0.2), 50 + 26 * math.sin(a + 0.2))
        prims.append(("poly", "body", [left, tip, right]))
    prims.append(("poly", "body", ellipse(50, 50, 27, 27)))
    return prims


def _flower() -> list[tuple]:
    prims: list[tuple] = [
        ("line", "leaf", 7, [(50, 50), (50, 99)]),
        ("poly", "leaf", [(50, 86), (68, 70), (80, 70), (58, 90)]),
    ]
    for k in range(6):
        a = math.pi * k / 3
        prims.append(
            ("poly", "body", ellipse(50 + 20 * math.cos(a), 34 + 20 * math.sin(a), 14, 14))
        )
    prims.append(("poly", "accent", ellipse(50, 34, 10, 10)))
    return prims


def _umbrella() -> list[tuple]:
    canopy = arc(50, 54, 48, 44, 180, 360, 16)
    scallops = [(86, 47), (74, 54), (62, 47), (50, 54), (38, 47), (26, 54), (14, 47)]
    return [
        ("line", "detail", 5, [(50, 50), (50, 88), (54, 95), (61, 94), (64, 87)]),
        ("poly", "body", canopy + scallops),
        ("line", "detail", 4, [(50, 11), (50, 3)]),
    ]


def _banana() -> list[tuple]:
    outer = arc(50, 18, 47, 62, 12, 168, 14)
    inner = arc(50, 8, 40, 50, 168, 12, 14)
    return [("poly", "body", outer + inner), ("line", "wood", 7, [(95, 31), (99, 22)])]


def _mushroom() -> list[tuple]:
    return [
        ("poly", "light", [(38, 50), (62, 50), (67, 95), (33, 95)]),
        ("poly", "body", arc(50, 58, 49, 50, 180, 360, 16)),
        ("poly", "light", ellipse(30, 40, 7, 6)),
        ("poly", "light", ellipse(58, 24, 8, 6)),
        ("poly", "light", ellipse(74, 44, 6, 5)),
    ]


def _turtle() -> list[tuple]:
    shell = arc(48, 68, 40, 42, 180, 360, 14)
    return [
        ("poly", "body", ellipse(28, 74, 9, 11)),
        ("poly", "body", ellipse(68, 74, 9, 11)),
        ("poly", "body", ellipse(88, 60, 11, 10)),
        ("poly", "body", [(10, 64), (1, 72), (14, 70)]),
        ("poly", "body", shell),
        ("line", "detail", 4, [(8, 68), (88, 68)]),
        ("line", "detail", 3, [(27, 68), (36, 44), (60, 44), (69, 68)]),
        ("line", "detail", 3, [(48, 44), (48, 27)]),
        ("poly", "detail", ellipse(92, 57, 2.5, 2.5, 8)),
    ]


# Each entry: ("poly", paint, points) or ("line", paint, width, points), in a 0..100 box.
SHAPES: dict[str, list[tuple]] = {
    "fish": [
        ("poly", "body", [(66, 50), (97, 24), (90, 50), (97, 76)]),
        ("poly", "body", [(34, 32), (50, 16), (62, 34)]),
        ("poly", "body", ellipse(42, 50, 36, 24)),
        ("line", "detail", 3, [(36, 34), (31, 50), (36, 66)]),
        ("poly", "detail", ellipse(20, 44, 5, 5, 10)),
    ],
    "bird": [
        ("poly", "body", [(72, 50), (99, 36), (97, 54), (76, 64)]),
        ("poly", "body", ellipse(54, 60, 29, 20)),
        ("poly", "body", ellipse(28, 36, 16, 16)),
        ("poly", "accent", [(14, 30), (0, 39), (14, 44)]),
        ("line", "detail", 4, [(42, 56), (58, 70), (78, 58)]),
        ("poly", "detail", ellipse(25, 33, 4, 4, 10)),
        ("line", "detail", 4, [(48, 78), (45, 97)]),
        ("line", "detail", 4, [(60, 78), (63, 97)]),
    ],
    "cat": [
        ("poly", "body", [(12, 50), (16, 4), (48, 28)]),
        ("poly", "body", [(88, 50), (84, 4), (52, 28)]),
        ("poly", "body", ellipse(50, 58, 42, 36)),
        ("poly", "detail", ellipse(33, 52, 6, 8, 12)),
        ("poly", "detail", ellipse(67, 52, 6, 8, 12)),
        ("poly", "accent", [(44, 65), (56, 65), (50, 72)]),
        ("line", "detail", 2, [(30, 70), (4, 65)]),
        ("line", "detail", 2, [(30, 76), (4, 82)]),
        ("line", "detail", 2, [(70, 70), (96, 65)]),
        ("line", "detail", 2, [(70, 76), (96, 82)]),
        ("line", "detail", 3, [(40, 80), (50, 74), (60, 80)]),
    ],
    "butterfly": [
        ("poly", "body", ellipse(28, 32, 25, 24)),
        ("poly", "body", ellipse(72, 32, 25, 24)),
        ("poly", "body", ellipse(32, 70, 18, 18)),
        ("poly", "body", ellipse(68, 70, 18, 18)),
        ("poly", "light", ellipse(24, 30, 8, 8, 12)),
        ("poly", "light", ellipse(76, 30, 8, 8, 12)),
        ("poly", "detail", ellipse(50, 52, 6, 32, 14)),
        ("line", "detail", 3, [(47, 22), (36, 4)]),
        ("line", "detail", 3, [(53, 22), (64, 4)]),
    ],
    "snail": [
        ("poly", "light", [(2, 86), (8, 66), (18, 60), (28, 70), (96, 72), (96, 86)]),
        ("line", "detail", 3, [(12, 64), (6, 42)]),
        ("line", "detail", 3, [(20, 64), (22, 42)]),
        ("poly", "detail", ellipse(6, 42, 4, 4, 8)),
        ("poly", "detail", ellipse(22, 42, 4, 4, 8)),
        ("poly", "body", ellipse(60, 46, 32, 30)),
        ("line", "detail", 4, [*arc(60, 46, 20, 19, 0, 300, 10), *arc(62, 48, 9, 9, 300, 660, 8)]),
    ],
    "turtle": _turtle(),
    "car": [
        (
            "poly",
            "body",
            [(3, 68), (3, 50), (22, 45), (34, 24), (70, 24), (84, 45), (97, 50), (97, 68)],
        ),
        ("poly", "light", [(37, 30), (50, 30), (50, 44), (27, 44)]),
        ("poly", "light", [(55, 30), (67, 30), (77, 44), (55, 44)]),
        ("poly", "detail", ellipse(25, 68, 13, 13)),
        ("poly", "detail", ellipse(75, 68, 13, 13)),
        ("poly", "metal", ellipse(25, 68, 5, 5, 10)),
        ("poly", "metal", ellipse(75, 68, 5, 5, 10)),
    ],
    "bicycle": [
        ("line", "body", 7, [*ellipse(21, 66, 19, 19), (40, 66)]),
        ("line", "body", 7, [*ellipse(79, 66, 19, 19), (98, 66)]),
        ("line", "body", 7, [(21, 66), (44, 66), (66, 40), (36, 40), (21, 66)]),
        ("line", "body", 7, [(44, 66), (32, 28)]),
        ("line", "body", 7, [(79, 66), (64, 28), (76, 24)]),
        ("line", "detail", 8, [(24, 28), (40, 28)]),
    ],
    "boat": [
        ("line", "detail", 4, [(50, 66), (50, 4)]),
        ("poly", "light", [(54, 8), (54, 58), (90, 58)]),
        ("poly", "light", [(46, 16), (46, 58), (16, 58)]),
        ("poly", "body", [(2, 62), (98, 62), (82, 88), (18, 88)]),
    ],
    "airplane": [
        (
            "poly",
            "body",
            [(46, 36), (54, 36), (98, 58), (98, 67), (54, 56), (46, 56), (2, 67), (2, 58)],
        ),
        ("poly", "body", [(46, 82), (54, 82), (72, 96), (28, 96)]),
        ("poly", "body", ellipse(50, 50, 9, 48)),
        ("poly", "light", ellipse(50, 14, 4, 7, 10)),
    ],
    "rocket": [
        ("poly", "accent", [(38, 76), (62, 76), (56, 90), (50, 99), (44, 90)]),
        ("poly", "body", [(34, 50), (14, 84), (34, 76)]),
        ("poly", "body", [(66, 50), (86, 84), (66, 76)]),
        ("poly", "body", [(50, 1), (62, 14), (67, 30), (67, 78), (33, 78), (33, 30), (38, 14)]),
        ("poly", "light", ellipse(50, 38, 9, 9, 14)),
        ("line", "detail", 3, [*ellipse(50, 38, 9, 9, 14), (59, 38)]),
    ],
    "truck": [
        ("poly", "body", [(3, 72), (3, 52), (12, 36), (34, 36), (34, 72)]),
        ("poly", "light", [(14, 40), (29, 40), (29, 52), (8, 52)]),
        ("poly", "body", rect(37, 16, 97, 72)),
        ("poly", "detail", ellipse(20, 74, 11, 11)),
        ("poly", "detail", ellipse(78, 74, 11, 11)),
        ("poly", "metal", ellipse(20, 74, 4, 4, 10)),
        ("poly", "metal", ellipse(78, 74, 4, 4, 10)),
    ],
    "apple": [
        ("poly", "body", ellipse(36, 60, 31, 36)),
        ("poly", "body", ellipse(64, 60, 31, 36)),
        ("line", "wood", 6, [(50, 32), (55, 8)]),
        ("poly", "leaf", [(56, 18), (72, 4), (90, 8), (72, 22)]),
        ("poly", "light", ellipse(28, 46, 5, 9, 10)),
    ],
    "banana": _banana(),
    "mushroom": _mushroom(),
    "carrot": [
        ("poly", "leaf", [(44, 32), (26, 2), (38, 2), (52, 28)]),
        ("poly", "leaf", [(48, 32), (50, 0), (60, 2), (56, 32)]),
        ("poly", "leaf", [(54, 32), (72, 4), (82, 10), (60, 34)]),
        ("poly", "body", [(28, 30), (72, 30), (69, 48), (53, 98), (47, 98), (31, 48)]),
        ("line", "detail", 3, [(37, 46), (47, 46)]),
        ("line", "detail", 3, [(55, 60), (63, 60)]),
        ("line", "detail", 3, [(42, 74), (50, 74)]),
    ],
    "cherry": [
        ("line", "wood", 5, [(30, 58), (44, 22), (56, 6)]),
        ("line", "wood", 5, [(70, 60), (60, 24), (56, 6)]),
        ("poly", "leaf", [(56, 8), (76, 2), (92, 10), (72, 18)]),
        ("poly", "body", ellipse(29, 72, 22, 22)),
        ("poly", "body", ellipse(71, 74, 22, 22)),
        ("poly", "light", ellipse(22, 65, 4, 6, 8)),
        ("poly", "light", ellipse(64, 67, 4, 6, 8)),
    ],
    "ice cream": [
        ("poly", "wafer", [(27, 48), (73, 48), (50, 99)]),
        ("line", "wood", 3, [(34, 58), (60, 84)]),
        ("line", "wood", 3, [(66, 58), (40, 84)]),
        ("poly", "body", ellipse(50, 32, 30, 27)),
        ("poly", "body", ellipse(28, 48, 9, 7, 10)),
        ("poly", "body", ellipse(50, 52, 9, 7, 10)),
        ("poly", "body", ellipse(72, 48, 9, 7, 10)),
    ],
    "hammer": [
        ("poly", "wood", rect(42, 30, 58, 98)),
        ("poly", "body", [(4, 8), (72, 4), (96, 10), (96, 32), (72, 38), (4, 34)]),
    ],
    "key": [
        ("line", "body", 14, [*ellipse(24, 50, 16, 16, 16), (40, 50)]),
        ("poly", "body", rect(38, 43, 98, 57)),
        ("poly", "body", rect(70, 57, 79, 72)),
        ("poly", "body", rect(86, 57, 94, 68)),
    ],
    "cup": [
        ("line", "body", 10, [*ellipse(76, 54, 16, 19, 16), (92, 54)]),
        ("poly", "body", [(10, 20), (76, 20), (70, 92), (16, 92)]),
        ("poly", "detail", ellipse(43, 22, 31, 5, 16)),
    ],
    "umbrella": _umbrella(),
    "bell": [
        ("line", "detail", 4, [*ellipse(50, 8, 6, 6, 10), (56, 8)]),
        ("poly", "detail", ellipse(50, 86, 9, 9, 12)),
        (
            "poly",
            "body",
            [
                (50, 12),
                (64, 16),
                (72, 28),
                (74, 48),
                (78, 64),
                (94, 80),
                (6, 80),
                (22, 64),
                (26, 48),
                (28, 28),
                (36, 16),
            ],
        ),
        ("line", "detail", 4, [(6, 80), (94, 80)]),
    ],
    "light bulb": [
        ("poly", "body", ellipse(50, 36, 33, 33)),
        ("poly", "body", [(32, 56), (68, 56), (63, 74), (37, 74)]),
        ("poly", "metal", rect(37, 74, 63, 92)),
        ("line", "detail", 3, [(37, 80), (63, 80)]),
        ("line", "detail", 3, [(37, 86), (63, 86)]),
        ("poly", "detail", [(44, 92), (56, 92), (50, 99)]),
        ("line", "detail", 3, [(42, 58), (44, 38), (50, 48), (56, 38), (58, 58)]),
    ],
    "star": [("poly", "body", star(50, 54, 52, 21))],
    "heart": [("poly", "body", heart())],
    "arrow": [
        ("poly", "body", [(2, 36), (56, 36), (56, 12), (98, 50), (56, 88), (56, 64), (2, 64)])
    ],
    "moon": [
        ("poly", "body", ellipse(46, 50, 42, 46, 24)),
        ("poly", "hole", ellipse(68, 40, 36, 40, 24)),
    ],
    "lightning bolt": [
        ("poly", "body", [(62, 0), (18, 58), (46, 58), (32, 100), (84, 38), (55, 38), (76, 0)]),
    ],
    "diamond": [
        ("poly", "body", [(24, 12), (76, 12), (97, 38), (50, 96), (3, 38)]),
        ("line", "light", 2, [(3, 38), (97, 38)]),
        ("line", "light", 2, [(24, 12), (36, 38), (50, 96), (64, 38), (76, 12)]),
        ("line", "light", 2, [(36, 38), (50, 12), (64, 38)]),
    ],
    "house": [
        ("poly", "body", rect(66, 12, 80, 40)),
        ("poly", "body", [(2, 52), (50, 6), (98, 52)]),
        ("poly", "body", rect(14, 50, 86, 97)),
        ("poly", "detail", rect(42, 66, 58, 97)),
        ("poly", "light", rect(20, 58, 35, 72)),
        ("poly", "light", rect(65, 58, 80, 72)),
    ],
    "tree": [
        ("poly", "wood", [(41, 99), (43, 58), (57, 58), (59, 99)]),
        ("poly", "body", ellipse(50, 28, 28, 27)),
        ("poly", "body", ellipse(28, 50, 24, 21)),
        ("poly", "body", ellipse(72, 50, 24, 21)),
        ("poly", "body", ellipse(50, 58, 26, 17)),
    ],
    "flower": _flower(),
    "cloud": [
        ("poly", "body", ellipse(26, 62, 22, 20)),
        ("poly", "body", ellipse(50, 44, 27, 27)),
        ("poly", "body", ellipse(74, 58, 22, 22)),
        ("poly", "body", ellipse(50, 70, 44, 14)),
    ],
    "sun": _sun(),
    "mountain": [
        ("poly", "shade", [(38, 96), (72, 30), (100, 96)]),
        ("poly", "body", [(0, 96), (36, 14), (76, 96)]),
        ("poly", "light", [(36, 14), (25, 38), (32, 33), (37, 40), (43, 33), (48, 38)]),
    ],
}
assert set(SHAPES) == set(CATEGORIES), "every category needs a pictogram"


@dataclass(frozen=True)
class Pictogram:
    """A compiled pictogram: all points in one array (unit coordinates) plus draw ops.

    ``ops`` rows are (kind, paint index, start, stop, width) where ``start:stop`` slices
    ``points`` and ``width`` is a stroke width as a fraction of the object's side.
    """

    points: np.ndarray
    ops: tuple[tuple[str, int, int, int, float], ...]


@cache
def pictogram(category: str, flip: bool = False) -> Pictogram:
    """Compiled pictogram of ``category``, mirrored left-right when ``flip``."""
    chunks: list[list[Point]] = []
    ops: list[tuple[str, int, int, int, float]] = []
    start = 0
    for prim in SHAPES[category]:
        if prim[0] == "poly":
            _, paint, pts = prim
            width = 0.0
        else:
            _, paint, width, pts = prim
        chunks.append(pts)
        ops.append((prim[0], PAINT_INDEX[paint], start, start + len(pts), width / 100.0))
        start += len(pts)
    points = (np.asarray([p for c in chunks for p in c], dtype=np.float64) - 50.0) / 50.0
    if flip:
        points[:, 0] = -points[:, 0]
    points.setflags(write=False)
    return Pictogram(points=points, ops=tuple(ops))
