"""Rendering: a pure function from a scene to an RGB image.

Each object is drawn into its own small RGBA layer (label image -> palette -> texture -> style),
the text into another; layers are pasted over a cached background. Because a layer only covers
its object (or text), every factor owns a well-defined pixel region, and the layer's alpha gives
exact bounding boxes. Layers are memoised on the (frozen, hashable) object, so ``to_meta`` after
``render`` costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from encoderlab.data.synthworld import vocab
from encoderlab.data.synthworld.documents import DocScene, render_document
from encoderlab.data.synthworld.fonts import text_mask, text_width
from encoderlab.data.synthworld.pictograms import PAINTS, Pictogram, pictogram
from encoderlab.data.synthworld.scene import Obj, Scene, Text

Box = tuple[int, int, int, int]

EDGE_DARK = (30, 30, 30)
EDGE_LIGHT = (120, 120, 120)  # edge of black objects
SKETCH_INK = (45, 45, 55)
SKETCH_JITTER = 0.045  # vertex jitter, fraction of the object's half side


@dataclass(frozen=True)
class Layer:
    """An RGBA patch, where it goes on the canvas, and its ink box clipped to the canvas."""

    image: Image.Image
    offset: tuple[int, int]
    bbox: Box


def luminance(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


# Label values beyond the pictogram paints: texture tone, contour ink, sketch hatching.
TONE2 = len(PAINTS)
EDGE = TONE2 + 1
HATCH = TONE2 + 2


@cache
def _palette(colour: str, sketch: bool) -> np.ndarray:
    """RGBA per label value for an object of ``colour``: the paints, the texture's second tone,
    the contour and the hatching (sketches wash out the paints and hatch in full colour)."""
    c = vocab.COLOURS[colour]
    lum = luminance(c)
    dark = lum < 90
    tones = {
        "hole": c,  # transparent; colour only matters for blur bleeding
        "body": c,
        "detail": (235, 235, 235) if dark else (25, 25, 25),
        "light": (175, 205, 235) if lum > 200 else (250, 250, 245),
        "wood": (140, 90, 45) if colour != "brown" else (90, 55, 25),
        "metal": (150, 155, 165) if colour != "gray" else (90, 95, 105),
        "leaf": (45, 150, 50) if colour != "green" else (20, 85, 25),
        "accent": (250, 170, 30) if colour not in ("orange", "yellow") else (220, 50, 30),
        "shade": tuple(int(v * 0.7) for v in c),
        "wafer": (225, 180, 110),
    }
    second = tuple(int(v * 0.55) if lum > 110 else int(v + (255 - v) * 0.5) for v in c)
    rgb = [*(tones[p] for p in PAINTS), second]
    if sketch:
        rgb = [tuple(v // 2 + 128 for v in t) for t in rgb]
    rgb += [SKETCH_INK if sketch else EDGE_LIGHT if colour == "black" else EDGE_DARK, c]
    alpha = [0 if p == "hole" else 255 for p in PAINTS] + [255, 255, 255]
    return np.array([(*t, a) for t, a in zip(rgb, alpha, strict=True)], dtype=np.uint8)


@lru_cache(maxsize=64)
def _pattern(name: str, size: int) -> np.ndarray:
    """Boolean pattern tile (2*size + 64 square) for textures and the sketch hatching."""
    n = 2 * size + 64
    y, x = np.mgrid[0:n, 0:n]
    period = max(4, round(size / 13))
    if name == "stripes":
        return ((x + y) % period) < period // 2
    if name == "dots":
        d = max(2, round(period * 0.45))
        shift = (y // period % 2) * (period // 2)
        return ((x + shift) % period < d) & (y % period < d)
    if name == "checker":
        c = max(2, round(size / 22))
        return ((x // c) + (y // c)) % 2 == 0
    if name == "noise":
        b = max(1, size // 64)
        rng = np.random.default_rng(1234)
        cells = rng.random((n // b + 1, n // b + 1)) < 0.4
        return np.repeat(np.repeat(cells, b, 0), b, 1)[:n, :n]
    if name == "hatch":
        p = max(3, round(size / 20))
        return ((x - y) % p) == 0
    raise ValueError(name)


def _boundary(lab: np.ndarray, width: int, outside: bool = False) -> np.ndarray:
    """Pixels of non-zero ``lab`` within ``width`` px of a different label; with ``outside``,
    instead the transparent pixels within ``width`` px of the object (a contour ring that
    leaves thin strokes their colour).

    Layers keep a transparent margin, so the array border needs no special case."""
    near = np.zeros(lab.shape, dtype=bool)
    if outside:
        nz = lab > 0
        for d in range(1, width + 1):
            near[d:] |= nz[:-d]
            near[:-d] |= nz[d:]
            near[:, d:] |= nz[:, :-d]
            near[:, :-d] |= nz[:, d:]
        return near & ~nz
    for d in range(1, width + 1):
        dy = lab[d:] != lab[:-d]
        dx = lab[:, d:] != lab[:, :-d]
        near[d:] |= dy
        near[:-d] |= dy
        near[:, d:] |= dx
        near[:, :-d] |= dx
    return near & (lab > 0)


def _edge_px(size: int) -> int:
    return max(1, round(size / 80))


def _finish(img: Image.Image, offset: tuple[int, int], size: int) -> Layer:
    box = img.getbbox()
    if box is None:
        return Layer(img, offset, (0, 0, 0, 0))
    x0, y0 = offset
    bbox = (
        max(0, box[0] + x0),
        max(0, box[1] + y0),
        min(size, box[2] + x0),
        min(size, box[3] + y0),
    )
    return Layer(img, offset, bbox)


@lru_cache(maxsize=1)
def _jitter_bank() -> np.ndarray:
    """Fixed standard-normal offsets; an object's sketch jitter is a seed-chosen slice of it
    (a fresh numpy Generator per object would cost more than drawing it)."""
    return np.random.default_rng(7).standard_normal((8192, 2))


class _Raster:
    """A pictogram's label image at one size and sub-pixel offset, with its contour masks
    memoised. Objects at 64 px sit on whole-pixel centres, so most objects reuse a raster."""

    def __init__(self, lab: np.ndarray) -> None:
        lab.setflags(write=False)
        self.lab = lab
        self.body = lab == 1
        self._masks: dict[tuple[int, bool], np.ndarray] = {}

    def boundary(self, width: int, outside: bool = False) -> np.ndarray:
        key = (width, outside)
        if key not in self._masks:
            self._masks[key] = _boundary(self.lab, width, outside)
        return self._masks[key]


def _draw_label(pic: Pictogram, pts: np.ndarray, side: float, w: int, h: int) -> np.ndarray:
    label = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(label)
    for kind, paint, a, b, width in pic.ops:
        seg = pts[a:b].ravel().tolist()
        if kind == "poly":
            draw.polygon(seg, fill=paint)
        else:
            draw.line(seg, fill=paint, width=max(1, round(width * side)), joint="curve")
    return np.frombuffer(label.tobytes(), dtype=np.uint8).reshape(h, w)


@lru_cache(maxsize=1024)
def _raster(
    category: str, flip: bool, side: float, dx: float, dy: float, w: int, h: int
) -> _Raster:
    pic = pictogram(category, flip)
    pts = pic.points * (side / 2) + (dx, dy)
    return _Raster(_draw_label(pic, pts, side, w, h).copy())


@lru_cache(maxsize=512)
def object_layer(obj: Obj, size: int) -> Layer:
    """Draw one object: label image of paints, colours, texture, then its rendering style."""
    side = vocab.SIZES[obj.size] * size
    half = side / 2
    cx, cy = obj.position[0] * size, obj.position[1] * size
    style = obj.style
    margin = _edge_px(size) + 2
    radius = max(1.0, side / 24)
    block = max(2, round(side / 14))
    if style == "blur":
        margin += math.ceil(3 * radius)
    elif style == "sketch":
        margin += math.ceil(3 * SKETCH_JITTER * half)
    x0, y0 = math.floor(cx - half) - margin, math.floor(cy - half) - margin
    w = h = math.ceil(side) + 2 * margin + 1
    if style == "pixel":
        w = h = math.ceil(w / block) * block

    if style == "sketch":  # jittered vertices: a raster of its own
        pic = pictogram(obj.category, obj.flip)
        pts = pic.points * half + (cx - x0, cy - y0)
        start = obj.seed % (8192 - len(pts))
        pts = pts + _jitter_bank()[start : start + len(pts)] * (SKETCH_JITTER * half)
        raster = _Raster(_draw_label(pic, pts, side, w, h).copy())
    else:
        raster = _raster(obj.category, obj.flip, side, cx - x0, cy - y0, w, h)
    # Everything below edits a copy of the label image; one palette lookup then colours it.
    lab = raster.lab.copy()
    body = raster.body
    if style == "outline":
        lab[~raster.boundary(max(1, round(side / 14)))] = 0
        if luminance(vocab.COLOURS[obj.colour]) > 180:  # pale strokes vanish: dark rim
            lab[raster.boundary(1)] = EDGE
    else:
        sketch = style == "sketch"
        if obj.texture != "solid":
            ox, oy = obj.seed % 31, (obj.seed // 31) % 31
            lab[body & _pattern(obj.texture, size)[oy : oy + h, ox : ox + w]] = TONE2
        if sketch:  # pencil look: washed-out fill, full-colour hatching, wobbly contours
            lab[body & _pattern("hatch", size)[:h, :w]] = HATCH
        lab[raster.boundary(1 if sketch else _edge_px(size), outside=not sketch)] = EDGE
    rgba = _palette(obj.colour, style == "sketch").take(lab, axis=0)
    img = Image.frombuffer("RGBA", (w, h), rgba, "raw", "RGBA", 0, 1)
    # Transparent pixels carry the body colour (palette entry 0), so filtering RGBA without
    # premultiplying only bleeds the object's own colour.
    if style == "pixel":
        # box-average each block, then make alpha binary like real pixel art
        img = img.resize((w // block, h // block), Image.Resampling.BOX)
        img.putalpha(img.getchannel("A").convert("1", dither=Image.Dither.NONE).convert("L"))
        img = img.resize((w, h), Image.Resampling.NEAREST)
    elif style == "blur":
        img = img.filter(ImageFilter.GaussianBlur(radius))
    return _finish(img, (x0, y0), size)


def text_px(text: Text, size: int) -> int:
    """Font size in px: the text's size class, shrunk until the line fits the image."""
    px = max(7, round(vocab.TEXT_SIZES[text.size] * size))
    limit = size * 0.94
    while px > 7 and text_width(text.content or "", text.font, px) > limit:
        px -= 1
    return px


@lru_cache(maxsize=256)
def text_layer(text: Text, size: int) -> Layer:
    """Draw the embedded text (on its plate, if any), centred on its position, kept inside."""
    assert text.content is not None
    px = text_px(text, size)
    mask, _ = text_mask(text.content, text.font, px)
    colour = vocab.TEXT_COLOUR_RGB[text.colour]
    if text.plate is not None:
        pad = max(1, round(px * 0.2))
        img = Image.new("RGBA", (mask.width + 2 * pad, mask.height + 2 * pad))
        img.paste((*vocab.PLATES[text.plate], 255), (0, 0, *img.size))
        img.paste((*colour, 255), (pad, pad, pad + mask.width, pad + mask.height), mask)
    else:
        img = Image.new("RGBA", mask.size, (*colour, 0))
        img.putalpha(mask)
    cx, cy = text.position[0] * size, text.position[1] * size
    x0 = min(max(0, round(cx - img.width / 2)), max(0, size - img.width))
    y0 = min(max(0, round(cy - img.height / 2)), max(0, size - img.height))
    return _finish(img, (x0, y0), size)


_PALE: tuple[tuple[int, int, int], ...] = (
    (250, 246, 235),
    (235, 242, 250),
    (238, 250, 236),
    (252, 238, 238),
    (244, 238, 252),
    (248, 248, 248),
    (232, 232, 232),
    (255, 248, 218),
    (228, 245, 245),
    (250, 234, 222),
    (236, 244, 226),
    (242, 236, 230),
)
_VARIANTS = 48


def background(style: str, seed: int, size: int) -> Image.Image:
    """Background image (shared, do not modify); colours and pattern derive from ``seed``
    modulo a fixed bank of variants, so that backgrounds are cached."""
    return _background(style, seed % _VARIANTS, size)


@lru_cache(maxsize=1024)
def _background(style: str, v: int, size: int) -> Image.Image:
    c1 = np.array(_PALE[v % len(_PALE)], dtype=np.float32)
    c2 = np.array(_PALE[(v * 5 + 3) % len(_PALE)], dtype=np.float32)
    ys = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    if style == "plain":
        arr = np.broadcast_to(c1, (size, size, 3)).copy()
    elif style == "gradient":
        arr = np.broadcast_to(c1 * (1 - ys) + c2 * ys, (size, size, 3)).copy()
        if v % 2:  # horizontal for half the bank
            arr = arr.transpose(1, 0, 2).copy()
    elif style == "grid":
        arr = np.broadcast_to(c1, (size, size, 3)).copy()
        step = max(4, size // (6 + v % 4))
        line = c1 * 0.82
        arr[(step // 2) :: step, :, :] = line
        arr[:, (step // 2) :: step, :] = line
    elif style == "noise":
        rng = np.random.default_rng(v)
        grain = rng.normal(0.0, 10.0, (size, size, 1)).astype(np.float32)
        arr = c1 + grain
    elif style == "landscape":
        sky_top = np.array((190, 220, 250), np.float32)
        sky_low = np.array((235, 244, 255), np.float32)
        ground = np.array(((205, 232, 185), (240, 226, 192), (225, 235, 205))[v % 3], np.float32)
        xs = np.arange(size, dtype=np.float32)[None, :]
        horizon = size * (0.62 + 0.12 * (v % 4) / 3) + size * 0.05 * np.sin(
            xs / size * 2 * np.pi * (1 + v % 2) + v
        )
        rows = np.arange(size, dtype=np.float32)[:, None]
        sky = sky_top * (1 - ys) + sky_low * ys
        arr = np.where((rows >= horizon)[:, :, None], ground, sky)
    else:
        raise ValueError(f"unknown background style {style!r}")
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def render(scene: Scene | DocScene) -> Image.Image:
    """The RGB image of a scene (object scene or chart/table/document); pure and deterministic."""
    if isinstance(scene, DocScene):
        return render_document(scene)
    canvas = background(scene.background, scene.bg_seed, scene.size).copy()
    for obj in scene.objects:
        layer = object_layer(obj, scene.size)
        canvas.paste(layer.image, layer.offset, layer.image)
    if scene.text.content is not None:
        layer = text_layer(scene.text, scene.size)
        canvas.paste(layer.image, layer.offset, layer.image)
    return canvas


def _place(layer: Layer, size: int) -> np.ndarray:
    out = np.zeros((size, size), dtype=np.uint8)
    x0, y0 = layer.offset
    alpha = np.asarray(layer.image.getchannel("A"))
    h, w = alpha.shape
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    dx1, dy1 = min(size, x0 + w), min(size, y0 + h)
    if dx1 > dx0 and dy1 > dy0:
        out[dy0:dy1, dx0:dx1] = alpha[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
    return out


def scene_masks(scene: Scene) -> dict[str, np.ndarray]:
    """Per-element coverage (uint8 alpha, image-sized): ``object0``, ``object1``..., ``text``.

    The alpha is that of the element's own layer (occlusion by later layers is not removed).
    """
    masks = {
        f"object{i}": _place(object_layer(o, scene.size), scene.size)
        for i, o in enumerate(scene.objects)
    }
    if scene.text.content is not None:
        masks["text"] = _place(text_layer(scene.text, scene.size), scene.size)
    return masks
