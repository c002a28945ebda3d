"""Learning curves of the control check, and the accuracy-matched comparison they allow.

Curves: the control's category kNN and linear probe (same images, same probes) at every
encoder snapshot a pretraining run kept (``train.snapshots``: the shared initialisation, a few
checkpoint steps) and at its final encoder, against samples seen. The final point *is* the
control's own number (not recomputed), so curve and control table agree. Per objective the
last interval is tested on the same test images (paired bootstrap of the final checkpoint's
per-image correctness minus the previous one's): a CI above 0 means it was still learning.

Accuracy-matched: the compute-matched comparison (same samples seen) sets a weak objective
beside a strong one. The other way to compare is at equal accuracy: for each objective, the
checkpoint whose linear probe is closest to the weakest objective's final accuracy
(``matched_checkpoints``). The study's ``matched`` stage recomputes the embedding
(sensitivity) claims on those checkpoints (``matched_sensitivity``), on fewer scenes than the
analysis, and only when a matched checkpoint is not a final one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoderlab.evaluate.imagesets import LabelledSet
from encoderlab.evaluate.power import wilson_interval
from encoderlab.evaluate.stats import paired_difference
from encoderlab.train.snapshots import list_snapshots, load_snapshot

__all__ = [
    "CURVES_JSON",
    "MATCHED_JSON",
    "learning_curves",
    "matched_checkpoints",
    "matched_encoder",
    "matched_sensitivity",
]

CURVES_JSON = "curves.json"
MATCHED_JSON = "matched.json"


def _point(step: int, batch: int, res: Mapping[str, Any], final: bool) -> dict[str, Any]:
    cat = res["category"]
    low, high = wilson_interval(cat["linear"], cat["n_test"])
    return {
        "step": step,
        "samples_seen": step * batch,
        "linear": cat["linear"],
        "linear_low": low,
        "linear_high": high,
        "knn": cat["knn"],
        "final": final,
    }


def learning_curves(
    runs: Mapping[str, Path],
    finals: Mapping[str, tuple[Mapping[str, Any], np.ndarray]],
    train: LabelledSet,
    test: LabelledSet,
    cfg: Any,
    cache_dir: Path,
    bar: Any = None,
) -> dict[str, Any]:
    """The category accuracies of every snapshot of every run (name -> run directory), with
    ``finals[name]``: the control's (results, per-image correctness) of its final encoder.
    ``cfg``: the ``ControlConfig``. Returns what ``curves.json`` holds."""
    from encoderlab.evaluate.control import score_encoder

    encoders: dict[str, Any] = {}
    for name, run in runs.items():
        record = json.loads((Path(run) / "run.json").read_text())
        steps = int(record["steps"])
        batch = int(record["samples_seen"]) // max(1, steps)
        points, correct = [], []
        for step, path in list_snapshots(run):
            if step >= steps:  # the final encoder is scored by the control itself
                continue
            encoder = load_snapshot(run, path)
            res, right = score_encoder(
                encoder, f"{name} @{step}", train, test, cfg, cache_dir, bar, targets=("category",)
            )
            points.append(_point(step, batch, res, final=False))
            correct.append(right)
        res, right = finals[name]
        points.append(_point(steps, batch, res, final=True))
        correct.append(right)
        curve: dict[str, Any] = {"steps": steps, "batch_size": batch, "points": points}
        if len(points) > 1:  # the last interval, paired on the same test images
            diff = paired_difference(100 * correct[-1], 100 * correct[-2], seed=0).to_dict()
            curve["last_gain"] = {"from_step": points[-2]["step"], **diff}
        encoders[name] = curve
    first = next(iter(finals.values()))[0]["category"]
    return {
        "target": "category",
        "chance": first["chance"],
        "n_train": first["n_train"],
        "n_test": first["n_test"],
        "thresholds": {"linear": cfg.powered_linear, "knn": cfg.powered_knn},
        "encoders": encoders,
        "matched": matched_checkpoints(encoders),
    }


def matched_checkpoints(curves: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """For each objective, the trained checkpoint (step > 0: the step-0 snapshot is the same
    untrained network for every objective) whose linear-probe accuracy is closest to the
    weakest objective's final accuracy (ties: the later step, the nearer to compute-matched).

    ``curves``: name -> ``{"points": [{"step", "linear", "final", ...}]}``, as in
    ``curves.json``. Returns ``{"weakest", "target", "weakest_learned", "untrained",
    "encoders": {name: {"step", "samples_seen", "linear", "final"}}}`` ({} without curves).
    ``weakest_learned`` is False when the weakest objective's final probe (its CI's low end)
    is no better than the untrained network's (``untrained``): matching to it would compare
    encoders that learned nothing, so the comparison has no premise."""
    finals = {
        name: next(p for p in reversed(c["points"]) if p.get("final", True))
        for name, c in curves.items()
        if c.get("points")
    }
    if not finals:
        return {}
    weakest = min(finals, key=lambda n: finals[n]["linear"])
    target = finals[weakest]["linear"]
    start = next((p for p in curves[weakest]["points"] if p["step"] == 0), None)
    untrained = start["linear"] if start is not None else None
    low = finals[weakest].get("linear_low", target)
    chosen = {}
    for name, c in curves.items():
        trained = [p for p in c.get("points", []) if p["step"] > 0]
        if not trained:
            continue
        best = min(trained, key=lambda p: (abs(p["linear"] - target), -p["step"]))
        chosen[name] = {
            "step": best["step"],
            "samples_seen": best.get("samples_seen"),
            "linear": best["linear"],
            "final": bool(best.get("final")),
        }
    return {
        "weakest": weakest,
        "target": target,
        "weakest_learned": untrained is None or low > untrained,
        "untrained": untrained,
        "encoders": chosen,
    }


def matched_encoder(run: Path, step: int) -> torch.nn.Module:
    """The encoder of ``run`` at ``step``: a snapshot, or the final encoder."""
    from encoderlab.train.pretrain import load_encoder

    for found, path in list_snapshots(run):
        if found == step:
            return load_snapshot(run, path)
    return load_encoder(run)


def matched_sensitivity(
    encoders: Mapping[str, torch.nn.Module],
    world: Any,
    cfg: Any,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The counterfactual sensitivity section of ``analysis.json`` (per encoder and factor,
    and paired differences) for ``encoders`` on ``world``; ``cfg``: an ``AnalysisConfig``
    (its ``scenes`` already set to the matched analysis' count)."""
    from encoderlab.evaluate.analyze import _sensitivity_section
    from encoderlab.evaluate.embeddings import embed
    from encoderlab.evaluate.sensitivity import build_counterfactual_set
    from encoderlab.progress import make_progress

    cset = build_counterfactual_set(world, cfg.scenes, cfg.factors, cfg.split, cfg.workers)
    with make_progress(progress) as bar:
        feats = {
            name: embed(
                enc,
                cset.images,
                batch_size=cfg.batch_size,
                precision=cfg.precision,
                cache_dir=cache_dir,
                progress=bar,
                description=f"embed {name}",
            )
            for name, enc in encoders.items()
        }
    return _sensitivity_section(encoders, cset, feats, cfg)
