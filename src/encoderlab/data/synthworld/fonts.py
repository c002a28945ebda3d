"""TrueType fonts shipped with matplotlib, loaded once per (font, size) and process.

The fonts come with the install (``matplotlib/mpl-data/fonts/ttf``), so rendering never depends
on system font folders. ``ImageFont.truetype`` and glyph rasterisation are slow, hence the caches.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw, ImageFont

from encoderlab.errors import DataError

# font name (as stored in metadata) -> file in matplotlib's ttf folder
FONTS: dict[str, str] = {
    "DejaVuSans": "DejaVuSans.ttf",
    "DejaVuSans-Bold": "DejaVuSans-Bold.ttf",
    "DejaVuSerif": "DejaVuSerif.ttf",
    "DejaVuSerif-Bold": "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono": "DejaVuSansMono.ttf",
    "STIXGeneral": "STIXGeneral.ttf",
}


def font_dir() -> Path:
    """Folder of matplotlib's bundled TrueType fonts."""
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_path(name: str) -> Path:
    """Path of a known font; a missing file is a one-line ``DataError``."""
    if name not in FONTS:
        raise DataError(f"unknown font {name!r}; known fonts: {', '.join(FONTS)}")
    path = font_dir() / FONTS[name]
    if not path.is_file():
        raise DataError(f"{path}: font file not found (is matplotlib installed?)")
    return path


@lru_cache(maxsize=512)
def font(name: str, px: int) -> ImageFont.FreeTypeFont:
    """The font at ``px`` pixels; BASIC layout is enough for Latin text and avoids raqm."""
    return ImageFont.truetype(str(font_path(name)), px, layout_engine=ImageFont.Layout.BASIC)


@lru_cache(maxsize=16384)
def glyph(ch: str, name: str, px: int) -> tuple[Image.Image | None, int, int, int]:
    """Ink mask of one character, its top-left relative to the pen on the baseline, and the
    pen advance (integer: the hinted advances of these fonts are whole pixels)."""
    f = font(name, px)
    left, top, right, bottom = f.getbbox(ch, anchor="ls")
    advance = round(f.getlength(ch))
    if right <= left or bottom <= top:
        return None, 0, 0, advance
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), ch, fill=255, font=f, anchor="ls")
    return mask, left, top, advance


def _placed(content: str, name: str, px: int) -> list[tuple[Image.Image, int, int]]:
    pen, out = 0, []
    for ch in content:
        mask, left, top, advance = glyph(ch, name, px)
        if mask is not None:
            out.append((mask, pen + left, top))
        pen += advance
    return out


@lru_cache(maxsize=32768)
def text_mask(content: str, name: str, px: int) -> tuple[Image.Image, tuple[int, int]]:
    """Anti-aliased ink mask of one line of text, cropped to its ink, and the mask's top-left
    relative to the pen origin on the baseline.

    Lines are composed from cached glyph masks: Pillow's own ``text`` re-rasterises every
    glyph on every call (~10x slower). These fonts have no kerning under BASIC layout and
    whole-pixel advances, so glyph placement matches Pillow's; glyph edges can differ by a
    pixel of anti-aliasing.
    """
    placed = _placed(content, name, px)
    if not placed:
        return Image.new("L", (1, 1), 0), (0, 0)
    x0 = min(x for _, x, _ in placed)
    y0 = min(y for _, _, y in placed)
    x1 = max(x + m.width for m, x, _ in placed)
    y1 = max(y + m.height for m, _, y in placed)
    out = Image.new("L", (x1 - x0, y1 - y0), 0)
    for m, x, y in placed:
        out.paste(255, (x - x0, y - y0, x - x0 + m.width, y - y0 + m.height), m)
    return out, (x0, y0)


def text_width(content: str, name: str, px: int) -> int:
    """Ink width of a line without composing its mask (for fitting text to a width)."""
    placed = _placed(content, name, px)
    if not placed:
        return 0
    return max(x + m.width for m, x, _ in placed) - min(x for _, x, _ in placed)


@lru_cache(maxsize=1024)
def line_extent(name: str, px: int) -> tuple[int, int]:
    """Top and bottom of a text line relative to the baseline (cap top of "H", foot of "g"),
    so that labels in one row share a baseline."""
    return glyph("H", name, px)[2], glyph("g", name, px)[2] + glyph("g", name, px)[0].height
