"""The control check of a study: do the encoders classify the world's objects equally well?

The paper's premise is that CLIP and DINO, trained alike, reach similar ImageNet accuracy. Here:
object category (and superclass) of held-out images from the last-layer CLS feature, by weighted
kNN (k=20, T=0.07) and a linear probe (standardised features, small lr x wd sweep), for every
encoder; zero-shot from class prompts for the language-supervised ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from encoderlab.config import StrictModel
from encoderlab.data.augment import normalize
from encoderlab.evaluate.classify import knn_accuracy, linear_probe, zero_shot_accuracy
from encoderlab.evaluate.embeddings import embed
from encoderlab.evaluate.imagesets import load_labelled
from encoderlab.evaluate.stats import paired_difference
from encoderlab.files import write_json
from encoderlab.progress import make_progress
from encoderlab.train.pretrain import load_encoder, load_objective, run_names

TARGETS = ("category", "superclass")
# Only one-object scenes: with 2-3 objects, which one is "the" category is not in the pixels.
SINGLE = "num_objects"


class ControlConfig(StrictModel):
    """The control check: classification of held-out images from frozen CLS features."""

    train_samples: int = Field(10_000, gt=0, description="training images used to fit probes")
    knn_k: int = Field(20, gt=0)
    knn_temperature: float = Field(0.07, gt=0)
    max_iter: int = Field(100, gt=0, description="L-BFGS iterations of each linear probe")
    max_gap: float = Field(
        5.0, gt=0, description="CLIP-DINO gap (points) that still counts as matched"
    )


PROMPTS = ("a picture of a {}", "photo of a {}", "an illustration of a {}", "icon of a {}")


def _encode(train: list, test: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    """Rows with a label on both sides, and labels as shared integer ids."""
    classes = sorted({v for v in train + test if v is not None})
    ids = {c: i for i, c in enumerate(classes)}
    tr = np.array([i for i, v in enumerate(train) if v is not None])
    te = np.array([i for i, v in enumerate(test) if v is not None])
    ytr = np.array([ids[train[i]] for i in tr])
    yte = np.array([ids[test[i]] for i in te])
    return tr, te, ytr, yte, classes


@torch.no_grad()
def _zero_shot(run: Path, images: torch.Tensor, classes: list[str], y: np.ndarray) -> float | None:
    if not (Path(run) / "objective.safetensors").is_file():
        return None  # an encoder without its objective (e.g. a baseline): no text tower
    objective = load_objective(run)
    prompts = [p.format(c) for c in classes for p in PROMPTS]
    text = objective.embed_text(prompts)
    if text is None:
        return None
    class_emb = text.float().view(len(classes), len(PROMPTS), -1).mean(1)
    feats = torch.cat(
        [
            objective.embed_image(normalize(images[i : i + 256])).float()
            for i in range(0, len(images), 256)
        ]
    )
    return zero_shot_accuracy(feats, class_emb, torch.from_numpy(y))


def control_check(
    runs: list[Path],
    train_data: Path,
    test_data: Path,
    cfg: ControlConfig,
    out: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every run; write ``control.json`` and ``control.md`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoders = {name: load_encoder(r) for name, r in zip(run_names(runs), runs, strict=True)}
    size = next(iter(encoders.values())).cfg.image_size
    wanted = (*TARGETS, SINGLE)
    train = load_labelled(train_data, size, wanted, split="train", max_images=cfg.train_samples)
    test = load_labelled(test_data, size, wanted, split="test")
    for labelled in (train, test):
        counts = labelled.labels.get(SINGLE)
        if counts is not None:  # SynthWorld: keep the labels of one-object scenes only
            for target in TARGETS:
                values = labelled.labels[target]
                labelled.labels[target] = [
                    v if n == 1 else None for v, n in zip(values, counts, strict=True)
                ]
    results: dict[str, Any] = {}
    correct: dict[str, np.ndarray] = {}
    with make_progress(progress) as bar:
        for (name, encoder), run in zip(encoders.items(), runs, strict=True):
            kw = {"cache_dir": out / "cache", "progress": bar}
            ftr = embed(encoder, train.images, description=f"{name} train", **kw)
            fte = embed(encoder, test.images, description=f"{name} test", **kw)
            res: dict[str, Any] = {}
            for target in TARGETS:
                tr, te, ytr, yte, classes = _encode(train.labels[target], test.labels[target])
                xtr, xte = torch.from_numpy(ftr[tr]), torch.from_numpy(fte[te])
                ytr_t, yte_t = torch.from_numpy(ytr), torch.from_numpy(yte)
                probe = linear_probe(xtr, ytr_t, xte, yte_t, max_iter=cfg.max_iter)
                if target == "category":
                    correct[name] = probe.correct.numpy().astype(np.float64)
                res[target] = {
                    "classes": len(classes),
                    "chance": float(np.bincount(yte).max() / len(yte)),
                    "knn": knn_accuracy(xtr, ytr_t, xte, yte_t, cfg.knn_k, cfg.knn_temperature),
                    "linear": probe.accuracy,
                    "linear_wd": probe.weight_decay,
                    "zero_shot": _zero_shot(run, test.images.tensor()[te], classes, yte),
                    "n_train": len(tr),
                    "n_test": len(te),
                }
            results[name] = res
    summary: dict[str, Any] = {"encoders": results}
    if "clip" in results and "dino" in results:
        gap = 100 * (results["clip"]["category"]["linear"] - results["dino"]["category"]["linear"])
        summary["clip_minus_dino_linear_points"] = gap
        summary["max_gap_points"] = cfg.max_gap
        diff = paired_difference(100 * correct["clip"], 100 * correct["dino"], seed=0)
        summary["paired"] = {"clip_minus_dino": diff.to_dict()}
        # Matched: the gap is within tolerance; its 95% CI is reported beside it.
        summary["matched"] = abs(gap) <= cfg.max_gap
    write_json(summary, out / "control.json")
    (out / "control.md").write_text(control_markdown(summary))
    return summary


def control_markdown(summary: dict[str, Any]) -> str:
    """The control table: one row per encoder, accuracies in per cent."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    lines = [
        "| encoder | category kNN | category linear | category zero-shot | superclass kNN | superclass linear | superclass zero-shot |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res in summary["encoders"].items():
        cells = [pct(res[t][m]) for t in TARGETS for m in ("knn", "linear", "zero_shot")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    first = next(iter(summary["encoders"].values()))
    lines.append(
        f"\nOne-object scenes only. Chance (majority class): category {pct(first['category']['chance'])}, "
        f"superclass {pct(first['superclass']['chance'])}; "
        f"{first['category']['n_train']} training / {first['category']['n_test']} test images."
    )
    if "matched" in summary:
        verdict = "matched" if summary["matched"] else "NOT matched"
        ci = summary["paired"]["clip_minus_dino"]
        lines.append(
            f"CLIP - DINO linear-probe category accuracy: {summary['clip_minus_dino_linear_points']:+.1f} "
            f"points, 95% CI [{ci['low']:+.1f}, {ci['high']:+.1f}] ({verdict}; tolerance "
            f"{summary['max_gap_points']:.0f})."
        )
    return "\n".join(lines) + "\n"


def load_control(out: Path) -> dict[str, Any]:
    return json.loads((Path(out) / "control.json").read_text())
