"""The control check of a study: do the encoders classify the world's objects equally well?

The paper's premise is that CLIP and DINO, trained alike, reach similar ImageNet accuracy. Here:
object category (and superclass) of held-out images from the last-layer CLS feature, by weighted
kNN (k=20, T=0.07) and a linear probe (standardised features, small lr x wd sweep), for every
encoder; zero-shot from class prompts for the language-supervised ones.

Only the labelled images (one-object scenes) are embedded: the others carry no label a probe
could use. Whether the control is *powered* (every encoder far enough above chance for
"matched" to mean something) is ``evaluate.power``'s rule, with this config's thresholds.
The same check at every snapshot of the runs gives the learning curves (``evaluate.curves``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from encoderlab.config import StrictModel
from encoderlab.data.augment import normalize
from encoderlab.evaluate.classify import knn_accuracy, linear_probe, zero_shot_accuracy
from encoderlab.evaluate.embeddings import ImageSet, device_of, embed
from encoderlab.evaluate.imagesets import LabelledSet, load_labelled
from encoderlab.evaluate.power import (
    POWER_KNN,
    POWER_LINEAR,
    gap_matched,
    power_check,
    power_note,
)
from encoderlab.evaluate.stats import paired_difference
from encoderlab.files import write_json
from encoderlab.precision import precision_record
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
        5.0, gt=0, description="matched: the CLIP - DINO gap's 95% CI lies within +-max_gap points"
    )
    powered_linear: float = Field(
        POWER_LINEAR,
        ge=0,
        lt=1,
        description="the control is powered when every encoder's category linear probe is at "
        "least this share of the way from chance (majority class) to 100%: 0.48 is 50% on "
        "SynthWorld's 36 categories (evaluate.power says why)",
    )
    powered_knn: float = Field(
        POWER_KNN, ge=0, lt=1, description="... and its kNN accuracy (0.27: 30% there)"
    )
    matched_scenes: int = Field(
        500,
        ge=2,
        description="SynthWorld scenes of the accuracy-matched sensitivity analysis (its own "
        "stage; fewer than the analysis' to bound the cost of embedding extra checkpoints)",
    )

    @property
    def check_key(self) -> dict[str, Any]:
        """What the control check's results depend on (not the matched analysis' scenes)."""
        return self.model_dump(mode="json", exclude={"matched_scenes"})


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


def _labelled_only(labelled: LabelledSet) -> LabelledSet:
    """Category / superclass labels of one-object scenes only (SynthWorld: with 2-3 objects,
    which one is "the" category is not in the pixels), and only the rows that have a label:
    the others would be embedded for nothing."""
    labels = dict(labelled.labels)
    counts = labels.get(SINGLE)
    if counts is not None:
        for target in TARGETS:
            labels[target] = [
                v if n == 1 else None for v, n in zip(labels[target], counts, strict=True)
            ]
    n = len(labelled.images)
    rows = [i for i in range(n) if any(labels[t][i] is not None for t in TARGETS if t in labels)]
    if len(rows) == n:
        return LabelledSet(labelled.images, labels, labelled.source, labelled.world)
    full, index = labelled.images, torch.as_tensor(rows, dtype=torch.long)
    digest = hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:12]
    images = ImageSet(f"{full.key}-rows-{digest}", len(rows), lambda: full.tensor()[index])
    labels = {k: [v[i] for i in rows] for k, v in labels.items()}
    return LabelledSet(images, labels, labelled.source, labelled.world, labelled.skipped)


def labelled_sets(
    train_data: Path, test_data: Path, image_size: int, train_samples: int
) -> tuple[LabelledSet, LabelledSet]:
    """The control's training and test images with their labels (one-object scenes)."""
    wanted = (*TARGETS, SINGLE)
    train = load_labelled(train_data, image_size, wanted, split="train", max_images=train_samples)
    test = load_labelled(test_data, image_size, wanted, split="test")
    return _labelled_only(train), _labelled_only(test)


def score_encoder(
    encoder: torch.nn.Module,
    name: str,
    train: LabelledSet,
    test: LabelledSet,
    cfg: ControlConfig,
    cache_dir: Path,
    bar: Any = None,
    run: Path | None = None,
    targets: tuple[str, ...] = TARGETS,
) -> tuple[dict[str, Any], np.ndarray]:
    """kNN and linear probe (and zero-shot, given the ``run`` with its objective) per target;
    and the per-test-image correctness of the category probe (for paired comparisons)."""
    kw = {"cache_dir": cache_dir, "progress": bar}
    ftr = embed(encoder, train.images, description=f"{name} train", **kw)
    fte = embed(encoder, test.images, description=f"{name} test", **kw)
    res: dict[str, Any] = {}
    correct = np.zeros(0)
    for target in targets:
        tr, te, ytr, yte, classes = _encode(train.labels[target], test.labels[target])
        xtr, xte = torch.from_numpy(ftr[tr]), torch.from_numpy(fte[te])
        ytr_t, yte_t = torch.from_numpy(ytr), torch.from_numpy(yte)
        probe = linear_probe(xtr, ytr_t, xte, yte_t, max_iter=cfg.max_iter)
        if target == "category":
            correct = probe.correct.numpy().astype(np.float64)
        zero_shot = None
        if run is not None:
            zero_shot = _zero_shot(run, test.images.tensor()[te], classes, yte)
        res[target] = {
            "classes": len(classes),
            "chance": float(np.bincount(yte).max() / len(yte)),
            "knn": knn_accuracy(xtr, ytr_t, xte, yte_t, cfg.knn_k, cfg.knn_temperature),
            "linear": probe.accuracy,
            "linear_wd": probe.weight_decay,
            "zero_shot": zero_shot,
            "n_train": len(tr),
            "n_test": len(te),
        }
    return res, correct


def control_check(
    runs: list[Path],
    train_data: Path,
    test_data: Path,
    cfg: ControlConfig,
    out: Path,
    progress: bool = True,
    curves: bool = False,
) -> dict[str, Any]:
    """Score every run; write ``control.json`` and ``control.md`` under ``out``. With
    ``curves``, also score every snapshot of every run the same way (``curves.json``:
    ``evaluate.curves``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = run_names(runs)
    encoders = {name: load_encoder(r) for name, r in zip(names, runs, strict=True)}
    size = next(iter(encoders.values())).cfg.image_size
    train, test = labelled_sets(train_data, test_data, size, cfg.train_samples)
    results: dict[str, Any] = {}
    correct: dict[str, np.ndarray] = {}
    with make_progress(progress) as bar:
        for (name, encoder), run in zip(encoders.items(), runs, strict=True):
            results[name], correct[name] = score_encoder(
                encoder, name, train, test, cfg, out / "cache", bar, run
            )
        if curves:
            from encoderlab.evaluate.curves import CURVES_JSON, learning_curves

            finals = {name: (results[name], correct[name]) for name in names}
            found = learning_curves(
                dict(zip(names, runs, strict=True)), finals, train, test, cfg, out / "cache", bar
            )
            write_json(found, out / CURVES_JSON)
    device = device_of(next(iter(encoders.values())))
    summary: dict[str, Any] = {
        "encoders": results,
        # ``embed``'s default, ``auto``: bf16 where the CPU/GPU has it natively; say which it was
        "precision": precision_record("auto", device),
    }
    if "clip" in results and "dino" in results:
        gap = 100 * (results["clip"]["category"]["linear"] - results["dino"]["category"]["linear"])
        summary["clip_minus_dino_linear_points"] = gap
        summary["max_gap_points"] = cfg.max_gap
        diff = paired_difference(100 * correct["clip"], 100 * correct["dino"], seed=0)
        summary["paired"] = {"clip_minus_dino": diff.to_dict()}
        summary["matched"] = gap_matched(diff.low, diff.high, cfg.max_gap)
    # Powered: every encoder far enough above chance for "matched" to mean something.
    summary["power"] = power_check(results, cfg.powered_linear, cfg.powered_knn)
    summary["powered"] = summary["power"]["powered"]
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
    if "power" in summary:
        th = summary["power"]["thresholds"]
        lines.append(
            power_note(summary["power"]) + "."
            if not summary["power"]["powered"]
            else f"Control powered: every encoder's category accuracy at least {th['linear']:.2f} "
            f"(linear probe) and {th['knn']:.2f} (kNN) of the way from chance to 100%."
        )
    if "matched" in summary:
        verdict = "matched" if summary["matched"] else "NOT matched"
        ci = summary["paired"]["clip_minus_dino"]
        lines.append(
            f"CLIP - DINO linear-probe category accuracy: {summary['clip_minus_dino_linear_points']:+.1f} "
            f"points, 95% CI [{ci['low']:+.1f}, {ci['high']:+.1f}] ({verdict}: the CI within "
            f"±{summary['max_gap_points']:g})."
        )
    return "\n".join(lines) + "\n"


def load_control(out: Path) -> dict[str, Any]:
    return json.loads((Path(out) / "control.json").read_text())
