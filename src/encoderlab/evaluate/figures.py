"""PNG figures of an analysis: sensitivity bars with CIs, probe accuracies, CKA heatmaps, and
grids of mined pairs. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["pair_grid_name", "plot_cka", "plot_grouped_bars", "plot_pair_grid", "save_figure"]


def save_figure(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG (byte-reproducible: no creation date) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fixed creation date keeps the PNG bytes reproducible.
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def plot_grouped_bars(
    values: dict[str, dict[str, dict[str, float]]],
    path: Path,
    title: str,
    ylabel: str,
    reference: float | None = None,
    reference_label: str = "",
    markers: dict[str, dict[str, float]] | None = None,
) -> Path:
    """Bars per group (x axis) and series (colour): ``values[series][group]`` holds ``value``
    and optionally ``low``/``high`` (drawn as a CI). ``markers[series][group]`` draws a dash
    (e.g. chance level); ``reference`` a horizontal line."""
    series = list(values)
    groups = list(dict.fromkeys(g for s in series for g in values[s]))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(groups) * max(1, len(series)) ** 0.5), 4))
    x = np.arange(len(groups))
    for k, name in enumerate(series):
        vals = np.array([values[name].get(g, {}).get("value", np.nan) for g in groups])
        low = np.array([values[name].get(g, {}).get("low", np.nan) for g in groups])
        high = np.array([values[name].get(g, {}).get("high", np.nan) for g in groups])
        pos = x - 0.4 + width * (k + 0.5)
        has_ci = np.isfinite(low) & np.isfinite(high)
        err = np.where(has_ci, [vals - low, high - vals], 0.0) if has_ci.any() else None
        ax.bar(pos, vals, width, label=name, yerr=err, capsize=2 if err is not None else 0)
        if markers and name in markers:
            m = np.array([markers[name].get(g, np.nan) for g in groups])
            ax.hlines(m, pos - width / 2, pos + width / 2, colors="black", linewidth=1)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label=reference_label)
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _heatmap(ax: Any, matrix: np.ndarray, xlabels: Sequence[str], ylabels: Sequence[str]) -> Any:
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", origin="lower")
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=45, ha="right")
    ax.set_yticks(range(len(ylabels)), ylabels)
    if matrix.size <= 256:
        for (i, j), v in np.ndenumerate(matrix):
            if np.isfinite(v):
                colour = "white" if v < 0.6 else "black"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color=colour)
    return im


def plot_cka(
    panels: Sequence[tuple[str, np.ndarray, Sequence[str], Sequence[str], str, str]],
    path: Path,
) -> Path:
    """CKA heatmaps in [0, 1], one panel per ``(title, matrix, xlabels, ylabels, xname,
    yname)``, side by side in one figure."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    side = max(max(m.shape) for _, m, *_ in panels)
    size = 1.2 + 0.42 * side
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    im = None
    for ax, (title, matrix, xlabels, ylabels, xname, yname) in zip(axes.flat, panels, strict=False):
        im = _heatmap(ax, matrix, xlabels, ylabels)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xname, fontsize=8)
        ax.set_ylabel(yname, fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03)
    return save_figure(fig, path)


def pair_grid_name(high: str, low: str) -> str:
    """File name of the pair grid of encoder ``high`` vs ``low`` (the analysis writes it, the
    study report reads it)."""

    def slug(text: str) -> str:
        return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)

    return f"pairs_high_{slug(high)}_low_{slug(low)}.png"


def plot_pair_grid(
    left: torch.Tensor, right: torch.Tensor, captions: Sequence[str], path: Path, title: str
) -> Path:
    """One row per pair: the two images side by side (uint8 ``[n, 3, H, W]`` each, upscaled
    to at least 96 px) and a caption. Composed with PIL: matplotlib takes ~50x longer for a
    grid of many small images."""
    side = max(96, int(left.shape[-1]) if len(left) else 96)
    line = 14
    width = max(2 * side + 12, 6 * max(len(t) for t in (title, *captions)) + 8)
    height = line + 4 + max(1, len(captions)) * (side + line + 6)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((4, 2), title, fill="black", font=font)
    if not captions:
        draw.text((4, line + 8), "no pair passed the thresholds", fill="black", font=font)
    y = line + 4
    for k, caption in enumerate(captions):
        draw.text((4, y), caption, fill="black", font=font)
        for col, images in enumerate((left, right)):
            tile = Image.fromarray(images[k].permute(1, 2, 0).numpy())
            tile = tile.resize((side, side), Image.Resampling.NEAREST)
            canvas.paste(tile, (4 + col * (side + 4), y + line))
        y += side + line + 6
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path
