"""The report's own figures (the analysis stage draws the embedding ones): control accuracies,
VLM category scores with CIs in both category views, pre-training loss curves.

Bars reuse ``evaluate.figures.plot_grouped_bars`` so every bar chart of the project looks alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from encoderlab.evaluate.figures import plot_grouped_bars, save_figure

__all__ = ["control_columns", "plot_control", "plot_losses", "plot_vlm_categories"]


def control_columns(control: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(target, key, label)`` of the control accuracies some encoder has (zero-shot only
    exists for language-supervised encoders, and not at all in a DINO-only study)."""
    encoders = control["encoders"].values()
    return [
        (target, key, label)
        for target in ("category", "superclass")
        for key, label in (("knn", "kNN"), ("linear", "linear"), ("zero_shot", "zero-shot"))
        if any(e[target].get(key) is not None for e in encoders)
    ]


def _bars(
    values: dict[str, dict[str, dict[str, float]]], path: Path, title: str, ylabel: str, **kw: Any
) -> Path:
    """``plot_grouped_bars`` with head-room above the bars, where its legend goes (by default
    the legend sits on top of bars as soon as every slot is filled)."""
    with plt.rc_context({"axes.ymargin": 0.35, "legend.loc": "upper left"}):
        return plot_grouped_bars(values, path, title, ylabel, **kw)


def plot_control(control: Mapping[str, Any], path: Path) -> Path:
    """Accuracy (%) per encoder for category / superclass x kNN / linear / zero-shot; a dash
    marks the majority-class chance level."""
    values: dict[str, dict[str, dict[str, float]]] = {}
    chance: dict[str, dict[str, float]] = {}
    for name, res in control["encoders"].items():
        values[name], chance[name] = {}, {}
        for target, key, label in control_columns(control):
            group = f"{target}\n{label}"
            acc = res[target].get(key)
            values[name][group] = {"value": math.nan if acc is None else 100 * acc}
            chance[name][group] = 100 * res[target]["chance"]
    title = "Control: classification from frozen CLS features (dash: chance)"
    return _bars(values, path, title, "accuracy (%)", markers=chance)


def plot_vlm_categories(
    suite: Mapping[str, Mapping[str, Any]], view: str, title: str, path: Path
) -> Path:
    """Score (%) per category of one view (``vmc`` or ``cambrian``) per VLM, with 95% CIs."""
    values = {
        name: {
            cat: {"value": 100 * r["score"], "low": 100 * r["lo"], "high": 100 * r["hi"]}
            for cat, r in res["categories"].get(view, {}).items()
        }
        for name, res in suite.items()
    }
    return _bars(values, path, title, "score (%)")


def plot_losses(losses: Mapping[str, list[dict[str, Any]]], path: Path) -> Path:
    """One small panel per objective: the losses differ in kind and scale, so they do not share
    an axis."""
    n = len(losses)
    fig, axes = plt.subplots(1, n, figsize=(min(12.0, 3.0 * n), 2.6), squeeze=False)
    for ax, (name, rows) in zip(axes.flat, losses.items(), strict=True):
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("training loss", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
