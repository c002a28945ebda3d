"""Charts, tables and short documents: the Doc&Chart part of SynthWorld.

A ``DocScene`` stores the full content (title, header, rows); ``doc_layout`` turns it into draw
operations and the boxes of every item, so that ``render_document`` and ``to_meta`` agree by
construction. Sizes scale with the image: at 64 px a chart has 3 bars with 3-letter labels.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw

from encoderlab.data.synthworld import vocab
from encoderlab.data.synthworld.fonts import FONTS, line_extent, text_mask, text_width

Box = tuple[int, int, int, int]
INK = (25, 25, 25)
AXIS = (90, 90, 90)
CHART_COLOURS: tuple[str, ...] = ("red", "orange", "green", "blue", "purple", "brown", "cyan")
PIE_COLOURS: dict[str, tuple[int, int, int]] = {
    "yellow": (252, 220, 90),
    "cyan": (120, 215, 235),
    "pink": (248, 160, 205),
    "orange": (250, 170, 90),
    "green": (150, 215, 130),
    "purple": (195, 165, 235),
}
DOC_TITLES: tuple[str, ...] = (
    *("Notes", "Menu", "Report", "Recipe", "Memo", "Letter", "Diary", "Story", "News", "Poem"),
    *("Plan", "List", "Guide", "Rules", "Todo"),
)


@dataclass(frozen=True)
class DocScene:
    """A chart (``bar``, ``line``, ``pie``), a ``table`` or a ``document``.

    Charts keep ``rows`` as (label, value) pairs; tables as cells under ``header``; documents
    as one-cell rows, one per line of text.
    """

    size: int
    kind: str
    title: str
    font: str
    paper: str
    colour: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def to_meta(self) -> dict[str, Any]:
        """JSON-able content and layout (pixel boxes ``[x0, y0, x1, y1)``)."""
        meta: dict[str, Any] = {
            "kind": self.kind,
            "image_size": self.size,
            "title": self.title,
            "font": self.font,
            "paper": self.paper,
            "colour": self.colour,
            "header": list(self.header),
            "rows": [list(r) for r in self.rows],
        }
        meta.update(_deep_list(doc_layout(self)[1]))
        return meta


def _deep_list(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_list(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_deep_list(v) for v in obj]
    return obj


def _bold(name: str) -> str:
    return f"{name}-Bold" if f"{name}-Bold" in FONTS else name


def font_px(size: int) -> int:
    """Base font size of documents: legible at 64 px, not huge at 224 px."""
    return max(9, round(6 + size / 16))


def _margin(size: int) -> int:
    return max(2, size // 32)


def _line_h(font: str, px: int) -> int:
    top, bottom = line_extent(font, px)
    return bottom - top


def _fit(texts: list[str], font: str, px: int, width: float, min_px: int = 7) -> int:
    """Largest px <= ``px`` at which every text is at most ``width`` wide."""
    while px > min_px and max(text_width(t, font, px) for t in texts) > width:
        px -= 1
    return px


def text_box(content: str, font: str, px: int, x: float, y: float, anchor: str = "lt") -> Box:
    """Ink box of ``content`` anchored at (x, y): horizontally by its ink (``l``eft/``m``iddle),
    vertically by its line box (``t``op/``m``iddle/``b``ottom, cap top to descender), so that
    texts in a row share a baseline."""
    mask, (_, oy) = text_mask(content, font, px)
    top, bottom = line_extent(font, px)
    x -= {"l": 0.0, "m": mask.width / 2}[anchor[0]]
    base = y - {"t": top, "m": (top + bottom) / 2, "b": bottom}[anchor[1]]
    x0, y0 = round(x), round(base + oy)
    return (x0, y0, x0 + mask.width, y0 + mask.height)


class _Ops:
    """Draw operations plus the boxes of the text drawn, for rendering and metadata."""

    def __init__(self) -> None:
        self.ops: list[tuple] = []

    def text(self, content: str, font: str, px: int, x: float, y: float, rgb=INK, anchor="lt"):
        """Draw ``content`` anchored at (x, y) (see ``text_box``); -> its ink box."""
        box = text_box(content, font, px, x, y, anchor)
        self.ops.append(("text", box[0], box[1], content, font, px, rgb))
        return box

    def rect(self, box: Box, rgb) -> Box:
        self.ops.append(("rect", box, rgb))
        return box

    def line(self, pts: list[tuple[float, float]], rgb, width: int) -> None:
        self.ops.append(("line", pts, rgb, width))

    def pie(self, box: Box, start: float, end: float, rgb) -> None:
        self.ops.append(("pie", box, start, end, rgb))


def _title(ops: _Ops, doc: DocScene, centred: bool) -> tuple[Box, int]:
    """Draw the title at the top; -> its ink box and the y just below its line."""
    s, m = doc.size, _margin(doc.size)
    font = _bold(doc.font)
    px = _fit([doc.title], font, font_px(s), s - 2 * m)
    x = s / 2 if centred else m
    box = ops.text(doc.title, font, px, x, m, anchor="mt" if centred else "lt")
    return box, m + _line_h(font, px)


def _chart(ops: _Ops, doc: DocScene) -> dict[str, Any]:
    s, m = doc.size, _margin(doc.size)
    labels = [r[0] for r in doc.rows]
    values = [int(r[1]) for r in doc.rows]
    n = len(values)
    top = _title(ops, doc, centred=True)[1] + 2
    slot = (s - 2 * m) / n
    lab_px = _fit(labels, doc.font, font_px(s) - 1, slot - 1)
    val_px = _fit([str(v) for v in values], doc.font, font_px(s) - 1, slot - 1)
    lift = 2 if doc.kind == "bar" else 4  # value labels sit this far above bars / points
    base = s - m - _line_h(doc.font, lab_px) - 2
    plot_top = top + _line_h(doc.font, val_px) + lift
    plot_h = base - plot_top
    vmax = max(values)
    colour = vocab.COLOURS[doc.colour]
    marks = []
    for i, value in enumerate(values):
        cx = m + (i + 0.5) * slot
        y = base - max(1, round(value / vmax * plot_h))
        if doc.kind == "bar":
            bw = max(3, round(slot * 0.62))
            marks.append((cx, y, (round(cx - bw / 2), y, round(cx - bw / 2) + bw, base)))
        else:
            r = max(1, round(s / 64))
            marks.append((cx, y, (round(cx) - r - 1, y - r - 1, round(cx) + r + 2, y + r + 2)))
    ops.line([(m, base), (s - m, base)], AXIS, 1)
    if doc.kind == "line":
        ops.line([(cx, y) for cx, y, _ in marks], colour, max(1, round(s / 64)))
    paper = vocab.DOC_PAPERS[doc.paper]
    items = []
    for (cx, y, mark), label, value in zip(marks, labels, values, strict=True):
        ops.rect(mark, colour)
        vbox = text_box(str(value), doc.font, val_px, cx, y - lift, "mb")
        if doc.kind == "line":  # keep the value readable where the line passes behind it
            ops.rect((vbox[0] - 1, vbox[1] - 1, vbox[2] + 1, vbox[3] + 1), paper)
        ops.text(str(value), doc.font, val_px, cx, y - lift, anchor="mb")
        lbox = ops.text(label, doc.font, lab_px, cx, base + 2, anchor="mt")
        items.append(
            {"label": label, "value": value, "bbox": mark, "label_bbox": lbox, "value_bbox": vbox}
        )
    return {"items": items}


def _pie(ops: _Ops, doc: DocScene) -> dict[str, Any]:
    s, m = doc.size, _margin(doc.size)
    labels = [r[0] for r in doc.rows]
    values = [int(r[1]) for r in doc.rows]
    top = _title(ops, doc, centred=True)[1] + 2
    px = font_px(s) - 1
    lh = _line_h(doc.font, px)
    sq = max(4, lh - 2)
    lw = sq + 2 + max(text_width(t, doc.font, px) for t in labels)
    d = max(8, min(s - m - top, s - 2 * m - lw - 3))
    y0 = top + (s - m - top - d) // 2
    box = (m, y0, m + d, y0 + d)
    names = list(PIE_COLOURS)
    start = names.index(doc.colour)
    val_px = _fit([str(v) for v in values], doc.font, px, d * 0.4)
    angle, items = -90.0, []
    ly = top + max(0, (s - m - top - len(values) * (lh + 2)) // 2)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        name = names[(start + i) % len(names)]
        end = angle + 360.0 * value / 100.0
        ops.pie(box, angle, end, PIE_COLOURS[name])
        sbox = ops.rect((s - m - lw, ly + 1, s - m - lw + sq, ly + 1 + sq), PIE_COLOURS[name])
        lbox = ops.text(label, doc.font, px, s - m - lw + sq + 2, ly)
        items.append(
            {
                "label": label,
                "value": value,
                "colour": name,
                "angles": [round(angle, 2), round(end, 2)],
                "bbox": box,
                "label_bbox": lbox,
                "legend_bbox": sbox,
            }
        )
        angle = end
        ly += lh + 2
    r = d / 2
    for item in items:  # values last, so no slice covers a neighbour's number
        mid = math.radians(sum(item["angles"]) / 2)
        cx, cy = m + r + 0.58 * r * math.cos(mid), y0 + r + 0.58 * r * math.sin(mid)
        item["value_bbox"] = ops.text(str(item["value"]), doc.font, val_px, cx, cy, anchor="mm")
    return {"items": items}


def table_px(size: int, header: tuple[str, ...], rows: tuple[tuple[str, ...], ...], font: str):
    """Font size at which the table's columns fit the width, and each column's width."""
    s, m = size, _margin(size)
    px = font_px(s)
    while True:
        pad = max(1, px // 4)
        widths = [
            max(
                text_width(t, f, px)
                for t, f in [(header[c], _bold(font))] + [(r[c], font) for r in rows]
            )
            + 2 * pad
            for c in range(len(header))
        ]
        if sum(widths) <= s - 2 * m or px <= 7:
            return px, widths
        px -= 1


def table_row_h(size: int, font: str) -> int:
    px = font_px(size)
    return _line_h(font, px) + 2 * max(1, px // 4)


def _table(ops: _Ops, doc: DocScene) -> dict[str, Any]:
    s, m = doc.size, _margin(doc.size)
    px, widths = table_px(s, doc.header, doc.rows, doc.font)
    pad = max(1, px // 4)
    rh = _line_h(doc.font, px) + 2 * pad
    n = len(doc.rows) + 1
    x0 = m + (s - 2 * m - sum(widths)) // 2
    y0 = m + max(0, (s - 2 * m - n * rh) // 2)
    x1, y1 = x0 + sum(widths), y0 + n * rh
    ops.rect((x0, y0, x1, y0 + rh), (225, 228, 235))
    boxes = []
    for r, row in enumerate([doc.header, *doc.rows]):
        font = _bold(doc.font) if r == 0 else doc.font
        cx, cy = x0, y0 + r * rh
        row_boxes = []
        for c, cell in enumerate(row):
            row_boxes.append(ops.text(cell, font, px, cx + pad, cy + rh / 2, anchor="lm"))
            cx += widths[c]
        boxes.append(row_boxes)
    for r in range(n + 1):
        ops.line([(x0, y0 + r * rh), (x1, y0 + r * rh)], AXIS, 1)
    cx = x0
    for w in [0, *widths]:
        cx += w
        ops.line([(cx, y0), (cx, y1)], AXIS, 1)
    return {"cell_boxes": boxes, "table_bbox": (x0, y0, x1 + 1, y1 + 1)}


def document_line_h(size: int, font: str) -> int:
    px = font_px(size)
    return _line_h(font, px) + max(1, px // 4)


def _document(ops: _Ops, doc: DocScene) -> dict[str, Any]:
    s, m = doc.size, _margin(doc.size)
    title_bbox, title_bottom = _title(ops, doc, centred=False)
    px = font_px(s)
    lh = document_line_h(s, doc.font)
    y = title_bottom + max(2, lh // 3)
    lines = []
    for i, (line,) in enumerate(doc.rows):
        box = ops.text(line, doc.font, _fit([line], doc.font, px, s - 2 * m), m, y)
        lines.append({"line": i + 1, "text": line, "bbox": box})
        y += lh
    return {"title_bbox": title_bbox, "lines": lines}


@lru_cache(maxsize=256)
def doc_layout(doc: DocScene) -> tuple[tuple, dict[str, Any]]:
    """Draw operations and layout metadata of a doc scene (pure, memoised)."""
    ops = _Ops()
    if doc.kind in ("bar", "line"):
        meta = _chart(ops, doc)
    elif doc.kind == "pie":
        meta = _pie(ops, doc)
    elif doc.kind == "table":
        meta = _table(ops, doc)
    elif doc.kind == "document":
        meta = _document(ops, doc)
    else:
        raise ValueError(f"unknown doc kind {doc.kind!r}")
    return tuple(ops.ops), meta


def render_document(doc: DocScene) -> Image.Image:
    """Rasterise a doc scene on its paper colour."""
    img = Image.new("RGB", (doc.size, doc.size), vocab.DOC_PAPERS[doc.paper])
    draw = ImageDraw.Draw(img)
    for op in doc_layout(doc)[0]:
        if op[0] == "text":
            _, x, y, content, font, px, rgb = op
            mask, _ = text_mask(content, font, px)
            img.paste(rgb, (x, y, x + mask.width, y + mask.height), mask)
        elif op[0] == "rect":
            x0, y0, x1, y1 = op[1]
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=op[2])
        elif op[0] == "line":
            draw.line(op[1], fill=op[2], width=op[3])
        elif op[0] == "pie":
            x0, y0, x1, y1 = op[1]
            draw.pieslice(
                (x0, y0, x1 - 1, y1 - 1), op[2], op[3], fill=op[4], outline=(255, 255, 255)
            )
    return img


# --- sampling -------------------------------------------------------------------------------


def _pools(size: int) -> list[str]:
    """Label pools whose words fit under a bar: 3-letter ones on small images."""
    return [p for p, words in vocab.LABEL_POOLS.items() if size >= 112 or max(map(len, words)) <= 3]


def _capacity(size: int) -> int:
    return max(3, min(6, size // 20))  # bar and line charts need 3 values


def sample_document(rng: random.Random, size: int, kind: str | None = None) -> DocScene:
    """A random chart, table or document sized to stay legible at ``size`` px."""
    kind = kind or rng.choice(vocab.DOC_KINDS)
    font = rng.choice(("DejaVuSans", "DejaVuSerif", "DejaVuSansMono", "STIXGeneral"))
    paper = rng.choice(tuple(vocab.DOC_PAPERS))
    header: tuple[str, ...] = ()
    if kind in ("bar", "line", "pie"):
        pools = _pools(size)
        topics = [
            t
            for t, p in vocab.CHART_TOPICS.items()
            if p in pools and (kind != "line" or p in vocab.ORDERED_POOLS)
        ]
        title = rng.choice(topics)
        pool = vocab.LABEL_POOLS[vocab.CHART_TOPICS[title]]
        n = rng.randint(2 if kind == "pie" else 3, _capacity(size))
        n = min(n, len(pool))
        if kind == "line":
            i = rng.randrange(len(pool) - n + 1)
            labels = list(pool[i : i + n])
        else:
            labels = rng.sample(pool, n)
        values = _pie_values(rng, n) if kind == "pie" else rng.sample(range(1, 100), n)
        rows = tuple((lab, str(v)) for lab, v in zip(labels, values, strict=True))
        header = ("label", "value")
        colour = rng.choice(tuple(PIE_COLOURS) if kind == "pie" else CHART_COLOURS)
    elif kind == "table":
        schemas = [t for t, (_, cols) in vocab.TABLE_SCHEMAS.items() if cols[0] in _pools(size)]
        title = rng.choice(schemas)
        head, cols = vocab.TABLE_SCHEMAS[title]
        ncols = 2 if size < 112 else 3
        header = head[:ncols]
        nrows = max(2, min(6, (size - 2 * _margin(size)) // table_row_h(size, font) - 1))
        firsts = rng.sample(vocab.LABEL_POOLS[cols[0]], nrows)
        rows = tuple((first, *(_cell(rng, cols[c]) for c in range(1, ncols))) for first in firsts)
        colour = "gray"
    elif kind == "document":
        title = rng.choice(DOC_TITLES)
        m = _margin(size)
        lh = document_line_h(size, font)
        title_h = _line_h(_bold(font), font_px(size))
        nlines = max(2, (size - 2 * m - title_h - max(2, lh // 3)) // lh)
        px = font_px(size)
        rows = tuple((_line(rng, font, px, size - 2 * m),) for _ in range(nlines))
        colour = "black"
    else:
        raise ValueError(f"unknown doc kind {kind!r}")
    return DocScene(size, kind, title, font, paper, colour, header, rows)


def _pie_values(rng: random.Random, n: int) -> list[int]:
    """Percentages (multiples of 5, each >= 10, one clear maximum) summing to 100."""
    while True:
        cuts = sorted(rng.sample(range(5, 100, 5), n - 1))
        parts = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
        if min(parts) >= 10 and parts.count(max(parts)) == 1:
            return parts


def _cell(rng: random.Random, kind: str) -> str:
    if kind == "int":
        return str(rng.randint(1, 99))
    if kind == "price":
        return f"${rng.randint(1, 99)}"
    if kind == "word":
        return rng.choice(_SHORT_WORDS)
    return rng.choice(vocab.LABEL_POOLS[kind])


_SHORT_WORDS = tuple(w for w in vocab.WORDS if len(w) <= 5)


def _line(rng: random.Random, font: str, px: int, width: float) -> str:
    """1+ words that fit ``width`` at ``px``; stops at the first word that would overflow."""
    words = [rng.choice(_SHORT_WORDS)]
    for _ in range(5):
        nxt = rng.choice(vocab.WORDS)
        if text_width(" ".join([*words, nxt]), font, px) > width:
            break
        words.append(nxt)
    return " ".join(words)
