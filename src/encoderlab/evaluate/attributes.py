"""Attribute labels of an image set and linear probes for them on frozen features.

Labels are one value (or None: not applicable) per image and attribute. SynthWorld metadata
gives the primary object's category, superclass, colour, texture, style and size, the
background, whether text is present and which word; an image-folder CSV gives its columns.
A probe per attribute (``encoderlab.evaluate.classify.linear_probe``, the study's protocol) on
one fixed train/test split of the images, the same for every encoder, says how linearly
decodable each factor is; chance is the majority class of the test part.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from encoderlab.config import StrictModel
from encoderlab.evaluate.classify import linear_probe

__all__ = [
    "SYNTH_ATTRIBUTES",
    "Labels",
    "ProbeConfig",
    "attribute_probes",
    "encode_labels",
    "split_rows",
    "synth_labels",
]

Labels = dict[str, list[Hashable | None]]

SYNTH_ATTRIBUTES: tuple[str, ...] = (
    "category", "superclass", "colour", "texture", "style", "background", "size", "text_present",
    "word", "num_objects",
)  # fmt: skip


class ProbeConfig(StrictModel):
    """Probe protocol: split, word vocabulary, and ``linear_probe``'s sweep."""

    test_frac: float = 0.3
    top_k_words: int = 10
    min_per_class: int = 2
    max_iter: int = 100
    # A smaller sweep than classify's control check (3 fits per attribute instead of 7): the
    # probes compare encoders with one protocol, and there are ~9 attributes per encoder.
    weight_decays: tuple[float, ...] = (0.0, 1e-3)


def synth_labels(metas: Sequence[dict[str, Any]]) -> Labels:
    """Attribute values of SynthWorld samples from their metadata (``scene.to_meta()`` or a
    shard's ``.json``); charts, tables and documents have no object attributes (None)."""
    out: Labels = {name: [] for name in SYNTH_ATTRIBUTES}
    for meta in metas:
        objects = meta.get("objects") or []
        first = objects[0] if objects else {}
        text = meta.get("text")
        background = meta.get("background")
        if isinstance(background, dict):
            background = background.get("style")
        is_scene = meta.get("kind") == "objects"
        word = None
        if text and text.get("kind") == "word" and text.get("content"):
            word = str(text["content"]).lower()
        for name in ("category", "superclass", "colour", "texture", "style", "size"):
            out[name].append(first.get(name))
        out["background"].append(background if is_scene else None)
        out["text_present"].append(("yes" if text else "no") if is_scene else None)
        out["word"].append(word)
        out["num_objects"].append(len(objects) if is_scene else None)
    return out


def encode_labels(
    values: Sequence[Hashable | None], top_k: int | None = None, fit: np.ndarray | None = None
) -> tuple[np.ndarray, list[Hashable]]:
    """Integer codes (-1 = missing or outside the top ``top_k`` classes) and the classes,
    most frequent first; frequencies are counted on the rows ``fit`` (default: all)."""
    rows = range(len(values)) if fit is None else fit.tolist()
    counts = Counter(values[i] for i in rows if values[i] is not None)
    classes = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]
    if top_k is not None:
        classes = classes[:top_k]
    index = {c: i for i, c in enumerate(classes)}
    codes = np.asarray([index.get(v, -1) if v is not None else -1 for v in values], np.int64)
    return codes, classes


def split_rows(n: int, test_frac: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random train/test split of ``n`` rows (shared by all encoders)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(test_frac * n))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def attribute_probes(
    features: np.ndarray, labels: Labels, cfg: ProbeConfig, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Linear-probe accuracy per attribute (or the reason it was skipped)."""
    train_rows, test_rows = split_rows(len(features), cfg.test_frac, seed)
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    results: dict[str, dict[str, Any]] = {}
    # The probe's ops are tiny: one thread avoids OpenMP hand-off costs (5x faster measured
    # on the 2-core machine when another process is busy).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, values in labels.items():
            top_k = cfg.top_k_words if name == "word" else None
            codes, classes = encode_labels(values, top_k, fit=train_rows)
            if not classes:
                results[name] = {"skipped": "no labelled training rows"}
                continue
            # Classes too rare to be learned and tested are left out of this attribute.
            counts = np.bincount(codes[train_rows][codes[train_rows] >= 0], minlength=len(classes))
            keep = counts >= cfg.min_per_class
            remap = np.where(keep, np.cumsum(keep) - 1, -1)
            codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
            classes = [c for c, k in zip(classes, keep, strict=True) if k]
            tr = train_rows[codes[train_rows] >= 0]
            te = test_rows[codes[test_rows] >= 0]
            if len(classes) < 2 or len(te) == 0:
                results[name] = {"skipped": f"{len(classes)} classes, {len(te)} test rows"}
                continue
            y = torch.from_numpy(codes)
            res = linear_probe(
                x[tr], y[tr], x[te], y[te], cfg.weight_decays, cfg.max_iter, seed=seed
            )
            chance = float(np.bincount(codes[te]).max() / len(te))
            results[name] = {
                "accuracy": res.accuracy,
                "chance": chance,
                "classes": len(classes),
                "n_train": len(tr),
                "n_test": len(te),
                "weight_decay": res.weight_decay,
            }
    finally:
        torch.set_num_threads(threads)
    return results
