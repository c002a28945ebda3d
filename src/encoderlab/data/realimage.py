"""Real images into the trainer's format: one RGB square per file, or a counted skip.

What a real file needs before it can sit in a shard next to SynthWorld's renders:

- **EXIF orientation applied** (``ImageOps.exif_transpose``): a phone JPEG stored sideways with
  ``Orientation = 6`` is turned upright, as every viewer shows it.
- **Modes converted to RGB**: greyscale (``L``, ``I;16``), palette (``P``, with or without a
  transparent index), CMYK JPEGs (PIL's conversion; Adobe's inverted CMYK is handled by PIL's
  JPEG decoder) and alpha modes.
- **Alpha composited onto white** (``RGBA``, ``LA``, ``PA``, palette transparency): clip-art
  and icons are drawn on a transparent canvas meant to be shown on a page; dropping the alpha
  channel instead would show whatever colour the transparent pixels happen to store (often
  black).
- **Aspect handled as training does**: ``pad`` (the default) fits the whole image into the
  square and fills the rest with white (``ImageOps.pad``), so no later crop can cut the object
  out; ``crop`` is the reader's own centre crop to the aspect ratio (``ImageOps.fit``, as
  ``SampleDataset`` does for non-square images). Either way the stored image is square at
  ``image_size``, so the reader's centre crop is a no-op and training sees what was stored.

A file that cannot become such an image raises ``ImageSkip`` with a short, countable reason
(``empty file``, ``truncated``, ``undecodable``, ``too large``, ``too small``, ``blank``); the
importer counts skips per reason and never stops on one.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "BACKGROUND",
    "ImageSkip",
    "ink_fraction",
    "load_image",
    "prepare_image",
    "to_rgb",
]

BACKGROUND = (255, 255, 255)  # what transparent pixels and padding become
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
INK_LEVEL = 16  # a pixel is ink when some channel is this far from the white background
Aspect = Literal["pad", "crop"]


class ImageSkip(Exception):
    """A file the importer skips: ``reason`` is a short countable label, ``detail`` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB: alpha (and palette transparency) composited onto white, greyscale,
    16-bit, palette and CMYK converted."""
    if image.mode == "P" or (image.mode in ("L", "RGB") and "transparency" in image.info):
        image = image.convert("RGBA")  # a palette's transparent index becomes alpha 0
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit greyscale: PIL's convert("L") clips at 255; scale the range instead.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def load_image(
    source: str | Path | bytes, draft_size: int | None = None, info: dict | None = None
) -> Image.Image:
    """Decode a file (or its bytes) upright and in RGB; raise ``ImageSkip`` if it cannot be.

    ``draft_size`` lets the JPEG decoder downscale by a power of two while decoding (never below
    that size), which makes large photos several times cheaper to import. ``info``, if given,
    receives the file's ``original_size``, ``original_mode`` and ``format``. Images over PIL's
    decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, ~89 megapixels) are ``too large``.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if not data:
        raise ImageSkip("empty file", "0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                if info is not None:
                    info.update(
                        original_size=list(opened.size),
                        original_mode=opened.mode,
                        format=opened.format,
                    )
                if draft_size is not None and opened.format == "JPEG":
                    opened.draft(None, (draft_size, draft_size))
                image = ImageOps.exif_transpose(opened)  # a copy, loaded and upright
                image.load()
    except UnidentifiedImageError:
        raise ImageSkip("undecodable", "not an image format PIL knows") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageSkip("too large", str(err).split(".")[0]) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        text = str(err) or type(err).__name__
        reason = "truncated" if "truncated" in text.lower() else "undecodable"
        raise ImageSkip(reason, f"{type(err).__name__}: {text}") from None
    return to_rgb(image)


def ink_fraction(image: Image.Image) -> float:
    """Share of pixels that differ from the white background (by more than ``INK_LEVEL``)."""
    array = np.asarray(image.convert("RGB"), dtype=np.int16)
    return float((np.abs(array - 255).max(axis=2) > INK_LEVEL).mean())


def prepare_image(
    source: str | Path | bytes,
    image_size: int,
    aspect: Aspect = "pad",
    min_side: int = 16,
    min_ink: float = 0.001,
    info: dict | None = None,
) -> Image.Image:
    """Decode, convert and square a file at ``image_size`` (see the module doc); images with a
    side under ``min_side`` pixels or less than ``min_ink`` of their area drawn are skipped."""
    image = load_image(source, draft_size=image_size * 2, info=info)
    if min(image.size) < min_side:
        raise ImageSkip("too small", f"{image.size[0]}x{image.size[1]} < {min_side} px")
    size = (image_size, image_size)
    if aspect == "pad":
        image = ImageOps.pad(image, size, Image.Resampling.BICUBIC, color=BACKGROUND)
    else:
        image = ImageOps.fit(image, size, Image.Resampling.BICUBIC)
    if ink_fraction(image) < min_ink:
        raise ImageSkip("blank", f"under {min_ink:.1%} of the image differs from white")
    return image
