"""Preview grid: look at a data set before training on it.

Images are upscaled with nearest-neighbour (so what you see is what the encoder sees) and each
caption is wrapped beneath its image.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from encoderlab.data.synthworld.fonts import font


def preview_grid(
    samples: list[dict[str, Any]], path: str | Path, cols: int = 8, scale: int = 3
) -> Path:
    """Write a PNG grid of ``samples`` (dicts with ``image`` and ``text``) to ``path``."""
    if not samples:
        raise ValueError("preview_grid needs at least one sample")
    side = max(s["image"].width for s in samples) * scale
    px = 11
    f = font("DejaVuSans", px)
    chars = max(8, int(side / (px * 0.6)))
    wrapped = [textwrap.wrap(s.get("text", ""), chars)[:6] for s in samples]
    cap_h = (px + 3) * max(1, *(len(w) for w in wrapped)) + 4
    cols = min(cols, len(samples))
    rows = -(-len(samples) // cols)
    pad = 6
    grid = Image.new("RGB", (cols * (side + pad) + pad, rows * (side + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for i, (sample, lines) in enumerate(zip(samples, wrapped, strict=True)):
        x = pad + (i % cols) * (side + pad)
        y = pad + (i // cols) * (side + cap_h + pad)
        img = sample["image"].convert("RGB")
        grid.paste(
            img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST), (x, y)
        )
        for j, line in enumerate(lines):
            draw.text((x, y + side + 2 + j * (px + 3)), line, fill=(20, 20, 20), font=f)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def preview_source(source: str | Path, path: str | Path, n: int = 32, **grid: Any) -> Path:
    """Grid of the first ``n`` readable samples of any source the reader takes (shard
    directory, ``.tar``, labels ``.csv``); undecodable samples are left out."""
    from encoderlab.data.reader import SampleDataset, index_source

    refs, _ = index_source(source, require_text=False)
    dataset = SampleDataset(refs[:n])
    samples = []
    for i in range(len(dataset)):
        item = dataset[i]
        if "skip" not in item:
            image = Image.fromarray(item["image"].permute(1, 2, 0).numpy())
            samples.append({"image": image, "text": item["text"]})
    return preview_grid(samples, path, **grid)
