"""Counterfactual sensitivity: how far an embedding moves when exactly one factor changes.

For N held-out SynthWorld object scenes, each factor (category, text, colour, texture, style,
background, position, size) gets one variant per scene from ``counterfactual``, which changes
that factor alone. An encoder's sensitivity to a factor is

    mean_i (1 - cos(e(scene_i), e(variant_i)))  /  mean_i (1 - cos(e(scene_i), e(partner_i)))

over L2-normalised embeddings, where partners are random other scenes of the set: 1.0 means
"as different as two random images", 0 "invariant". The text factor uses the scenes that have
text (changing text on a scene without any would add text, a different factor). Intervals and
paired comparisons resample scenes (``encoderlab.evaluate.stats``); numerator and denominator
are resampled together, so the interval includes the baseline's own uncertainty.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from encoderlab.config import config_hash
from encoderlab.data.synthworld import (
    FACTORS,
    Scene,
    WorldConfig,
    counterfactual,
    render,
    sample_rngs,
    sample_scene,
)
from encoderlab.errors import ConfigError
from encoderlab.evaluate.embeddings import ImageSet
from encoderlab.evaluate.stats import (
    Difference,
    Estimate,
    bootstrap,
    paired_difference,
    ratio_of_means,
)

__all__ = [
    "CounterfactualSet",
    "FactorDistances",
    "build_counterfactual_set",
    "compare_sensitivity",
    "factor_distances",
    "random_partners",
    "render_scenes",
    "sensitivity",
]

SET_VERSION = 1  # part of the image-set key: bump when the construction below changes


@dataclass
class CounterfactualSet:
    """Originals and their single-factor variants, rendered lazily into one ``ImageSet``.

    Rows of ``images`` (and of any embedding of it): the N originals, then each factor's
    variants in ``factors`` order; ``rows[f]`` selects factor ``f``'s variants and
    ``source[f]`` gives, per variant, the position of its original.
    """

    world: WorldConfig
    split: str
    factors: tuple[str, ...]
    scenes: list[Scene]
    sample_indices: list[int]
    variants: dict[str, list[Scene]]
    source: dict[str, np.ndarray]
    rows: dict[str, slice]
    images: ImageSet

    @property
    def all_scenes(self) -> list[Scene]:
        return [*self.scenes, *(s for f in self.factors for s in self.variants[f])]

    def metas(self) -> list[dict]:
        """``scene.to_meta()`` of each original (the labels for probes and pair mining)."""
        return [s.to_meta() for s in self.scenes]


def _render_chunk(scenes: list[Scene]) -> np.ndarray:
    return np.stack([np.asarray(render(s), dtype=np.uint8) for s in scenes])


def render_scenes(scenes: Sequence[Scene], workers: int = 1, chunk: int = 500) -> torch.Tensor:
    """Render scenes into ``uint8 [N, 3, H, W]`` (in order), with ``workers`` processes."""
    parts = [list(scenes[i : i + chunk]) for i in range(0, len(scenes), chunk)]
    if workers > 1 and len(parts) > 1:
        # fork: workers inherit the loaded fonts and modules (spawn re-imports torch, seconds).
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(min(workers, len(parts))) as pool:
            arrays = pool.map(_render_chunk, parts, chunksize=1)
    else:
        arrays = [_render_chunk(p) for p in parts]
    return torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()


def build_counterfactual_set(
    world: WorldConfig,
    num_scenes: int,
    factors: Sequence[str] = FACTORS,
    split: str = "analysis",
    workers: int = 2,
) -> CounterfactualSet:
    """The first ``num_scenes`` object scenes of ``split`` and one variant per applicable
    factor. Scenes and variants depend only on (world seed, split, sample index, factor), so a
    larger set extends a smaller one."""
    unknown = [f for f in factors if f not in FACTORS]
    if unknown:
        raise ConfigError(f"unknown factor {unknown[0]!r}; known: {', '.join(FACTORS)}")
    if num_scenes < 2:
        raise ConfigError(f"scenes: need at least 2 scenes, got {num_scenes}")
    if world.doc_share >= 1.0:
        raise ConfigError("world.doc_share is 1: the world has no object scenes to vary")
    scenes: list[Scene] = []
    indices: list[int] = []
    index = 0
    while len(scenes) < num_scenes:
        scene = sample_scene(world, sample_rngs(world.seed, split, index)[0])
        if isinstance(scene, Scene):
            scenes.append(scene)
            indices.append(index)
        index += 1
    variants: dict[str, list[Scene]] = {}
    source: dict[str, np.ndarray] = {}
    rows: dict[str, slice] = {}
    start = len(scenes)
    for factor in factors:
        applies = [i for i, s in enumerate(scenes) if factor != "text" or s.text.content]
        variants[factor] = [
            counterfactual(
                scenes[i], factor, sample_rngs(world.seed, f"{split}:{factor}", indices[i])[0]
            )
            for i in applies
        ]
        source[factor] = np.asarray(applies, dtype=np.int64)
        rows[factor] = slice(start, start + len(applies))
        start += len(applies)
    everything = [*scenes, *(s for f in factors for s in variants[f])]
    # The key names the set by what defines it, plus the bytes of a few renders so that a
    # renderer change invalidates cached embeddings without rendering the whole set.
    probe = [scenes[0], *(variants[f][0] for f in factors if variants[f])]
    key = config_hash(
        {
            "version": SET_VERSION,
            "world": world.model_dump(mode="json"),
            "split": split,
            "scenes": num_scenes,
            "factors": list(factors),
            "probe": hashlib.sha256(_render_chunk(probe).tobytes()).hexdigest(),
        },
        length=16,
    )
    images = ImageSet(
        f"cf-{key}",
        len(everything),
        lambda: render_scenes(everything, workers),
        lambda idx: render_scenes([everything[i] for i in idx]),
    )
    return CounterfactualSet(world, split, tuple(factors), scenes, indices, variants, source, rows, images)  # fmt: skip


def random_partners(n: int, k: int = 4, seed: int = 0) -> np.ndarray:
    """``[n, k]`` random partners, never the scene itself: column ``j`` pairs each scene with
    its successor in the ``j``-th random cyclic order."""
    if n < 2:
        raise ValueError("random pairs need at least 2 scenes")
    rng = np.random.default_rng(seed)
    out = np.empty((n, k), dtype=np.int64)
    for j in range(k):
        order = rng.permutation(n)
        out[order, j] = np.roll(order, -1)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class FactorDistances:
    """Per-scene cosine distances of one encoder: ``factor[f][i]`` between scene ``i`` and its
    ``f``-variant (NaN where ``f`` does not apply), ``baseline[i]`` to its random partners."""

    factor: dict[str, np.ndarray]
    baseline: np.ndarray


def factor_distances(
    embeddings: np.ndarray, cset: CounterfactualSet, partners: np.ndarray
) -> FactorDistances:
    """Distances from the embedding rows of ``cset.images`` (``[rows, D]``)."""
    unit = _unit(embeddings)
    n = len(cset.scenes)
    originals = unit[:n]
    baseline = 1.0 - np.einsum("nd,nkd->nk", originals, originals[partners]).mean(axis=1)
    out: dict[str, np.ndarray] = {}
    for factor in cset.factors:
        d = np.full(n, np.nan)
        src = cset.source[factor]
        d[src] = 1.0 - np.einsum("nd,nd->n", originals[src], unit[cset.rows[factor]])
        out[factor] = d
    return FactorDistances(out, baseline)


def sensitivity(
    dist: FactorDistances, indices: np.ndarray, level: float = 0.95
) -> dict[str, Estimate]:
    """Normalised sensitivity per factor with bootstrap intervals (``indices``: the resampled
    scenes, from ``bootstrap_indices``; share them across encoders)."""
    return {
        f: bootstrap(d, dist.baseline, statistic=ratio_of_means, indices=indices, level=level)
        for f, d in dist.factor.items()
    }


def compare_sensitivity(
    a: FactorDistances, b: FactorDistances, indices: np.ndarray, level: float = 0.95
) -> dict[str, Difference]:
    """Sensitivity of A minus B per factor, resampling the same scenes for both."""
    return {
        f: paired_difference(
            (a.factor[f], a.baseline),
            (b.factor[f], b.baseline),
            statistic=ratio_of_means,
            indices=indices,
            level=level,
        )
        for f in a.factor
    }
