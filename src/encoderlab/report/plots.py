"""The report's own figures (the analysis stage draws the embedding ones): control accuracies,
VLM category scores with CIs in both category views, pre-training loss curves, the control's
learning curves.

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

__all__ = ["control_columns", "plot_control", "plot_curves", "plot_losses", "plot_vlm_categories"]


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


def plot_curves(curves: Mapping[str, Any], path: Path) -> Path:
    """The control's learning curves (``curves.json``): category accuracy (%) against samples
    seen, linear probe (95% Wilson band) and kNN side by side, one line per objective. Dashed:
    chance (the majority class); dotted: the power bar; in the linear panel, a thin line at the
    weakest objective's final accuracy and rings on each objective's accuracy-matched
    checkpoint."""
    chance = 100 * curves["chance"]
    bars = {
        k: 100 * (curves["chance"] + t * (1 - curves["chance"]))
        for k, t in curves["thresholds"].items()
    }
    matched = (curves.get("matched") or {}).get("encoders") or {}
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.6), sharey=True)
    for ax, key, title in ((axes[0], "linear", "linear probe"), (axes[1], "knn", "kNN")):
        for i, (name, curve) in enumerate(curves["encoders"].items()):
            colour = f"C{i}"
            pts = curve["points"]
            x = [p["samples_seen"] for p in pts]
            ys = [100 * p[key] for p in pts]
            ax.plot(x, ys, marker="o", markersize=3.5, linewidth=1.4, color=colour, label=name)
            if key == "linear" and all("linear_low" in p for p in pts):
                low = [100 * p["linear_low"] for p in pts]
                high = [100 * p["linear_high"] for p in pts]
                ax.fill_between(x, low, high, color=colour, alpha=0.12, linewidth=0)
            if key == "linear" and name in matched:
                m = matched[name]
                ring = {
                    "markerfacecolor": "none",
                    "markeredgecolor": colour,
                    "markeredgewidth": 1.5,
                }
                ax.plot([m["samples_seen"]], [100 * m["linear"]], marker="o", markersize=10, **ring)
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.axhline(bars[key], color="black", linestyle=":", linewidth=1, label="power bar")
        if key == "linear" and curves.get("matched"):
            target = 100 * curves["matched"]["target"]
            ax.axhline(target, color="grey", linewidth=0.6, label="accuracy-matched target")
        ax.set_title(f"category {title}", fontsize=10)
        ax.set_xlabel("samples seen", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)", fontsize=8)
    axes[0].set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()  # the linear panel has every line
    axes[1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)
