"""Pair mining as in Liu et al. 2025: image pairs one encoder finds similar and the other not.

Cosine similarities of L2-normalised embeddings under encoders A and B over a pool of pairs
(random pairs plus each image's nearest neighbour under A and under B); pairs "high A / low B"
(default A > 0.7 and B < 0.5) and "high B / low A" (B > 0.8 and A < 0.5) are the thresholds of
the authors' code. Fresh or weakly trained encoders may have no pair past absolute thresholds;
then per-encoder quantiles of the random-pair similarities stand in ("quantile": A at or above
its q_high quantile, B at or below its q_low quantile), and if even that selects nothing
(encoders that agree closely), the pairs with the largest quantile gap ("rank": the top
``rank_pairs`` by A's quantile minus B's). The report says which mode and thresholds were used.
What a mined pair shares (same category, word, colour...) is compared with the base rate over
random pairs: a lift above 1 says the encoder that found the pair similar follows that
attribute.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from encoderlab.config import StrictModel

__all__ = [
    "MinedPairs",
    "PairConfig",
    "PairReport",
    "mine_pairs",
    "nearest_neighbours",
    "pair_pool",
    "random_pairs",
    "shared_attributes",
]


class PairConfig(StrictModel):
    """Thresholds (the paper's defaults) and the pool of candidate pairs."""

    random_pairs: int = 20_000
    a_high: float = 0.7
    b_low: float = 0.5
    b_high: float = 0.8
    a_low: float = 0.5
    q_high: float = 0.95
    q_low: float = 0.5
    rank_pairs: int = 50
    grid_pairs: int = 8


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def random_pairs(n: int, num: int, seed: int = 0) -> np.ndarray:
    """``[num, 2]`` distinct random pairs ``(i, j)``, ``i < j`` (all pairs if fewer exist)."""
    total = n * (n - 1) // 2
    rng = np.random.default_rng(seed)
    if num >= total:
        i, j = np.triu_indices(n, k=1)
        return np.stack([i, j], axis=1).astype(np.int64)
    seen: set[int] = set()
    out: list[int] = []
    while len(out) < num:
        a = rng.integers(0, n, size=2 * (num - len(out)))
        b = rng.integers(0, n, size=len(a))
        for x, y in zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True):
            code = x * n + y
            if x != y and code not in seen:
                seen.add(code)
                out.append(code)
                if len(out) == num:
                    break
    codes = np.asarray(out, dtype=np.int64)
    return np.stack([codes // n, codes % n], axis=1)


def nearest_neighbours(embeddings: np.ndarray, chunk: int = 512) -> np.ndarray:
    """``[n, 2]`` pairs ``(i, nn(i))``: each image's most cosine-similar other image."""
    unit = _unit(embeddings)
    nn = np.empty(len(unit), dtype=np.int64)
    for start in range(0, len(unit), chunk):
        sims = unit[start : start + chunk] @ unit.T
        sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
        nn[start : start + chunk] = sims.argmax(axis=1)
    return np.stack([np.arange(len(unit)), nn], axis=1)


def pair_pool(random: np.ndarray, nn_a: np.ndarray, nn_b: np.ndarray, n: int) -> np.ndarray:
    """The random pairs, then the nearest-neighbour pairs under A and under B that are not
    among them (deduplicated, ``i < j``); ``pool[:len(random)]`` is the base-rate sample."""
    codes = random[:, 0] * n + random[:, 1]
    nn = np.sort(np.concatenate([nn_a, nn_b]), axis=1)
    nn_codes = nn[:, 0] * n + nn[:, 1]
    _, first = np.unique(nn_codes, return_index=True)
    first = np.sort(first)
    extra = nn[first][~np.isin(nn_codes[first], codes)]
    return np.concatenate([random, extra])


def _cosines(emb: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    unit = _unit(emb)
    return np.einsum("nd,nd->n", unit[pairs[:, 0]], unit[pairs[:, 1]]).astype(np.float64)


@dataclass
class MinedPairs:
    """Pairs one encoder (``high``) finds similar and the other (``low``) does not."""

    high: str
    low: str
    mode: str  # "absolute", "quantile" or "rank"
    threshold_high: float
    threshold_low: float
    pairs: np.ndarray  # [m, 2], sorted by margin (sim_high - sim_low), largest first
    sim_high: np.ndarray
    sim_low: np.ndarray
    shared: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self, top: int = 8) -> dict[str, Any]:
        return {
            "high": self.high,
            "low": self.low,
            "thresholds": {
                "mode": self.mode,
                f"{self.high}_above": self.threshold_high,
                f"{self.low}_below": self.threshold_low,
            },
            "count": len(self.pairs),
            "shared": self.shared,
            "top": [
                {"pair": [int(i), int(j)], self.high: float(sh), self.low: float(sl)}
                for (i, j), sh, sl in zip(
                    self.pairs[:top], self.sim_high[:top], self.sim_low[:top], strict=True
                )
            ],
        }


@dataclass
class PairReport:
    """Mining of one encoder pair (A, B), both directions, and the similarity statistics."""

    a: str
    b: str
    num_pool: int
    num_random: int
    random_sim: dict[str, dict[str, float]]
    correlation: float
    directions: list[MinedPairs]

    def to_dict(self, top: int = 8) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "pool": self.num_pool,
            "random_pairs": self.num_random,
            "random_similarity": self.random_sim,
            "spearman_random": self.correlation,
            "directions": [d.to_dict(top) for d in self.directions],
        }


def _select(
    sim_hi: np.ndarray, sim_lo: np.ndarray, t_hi: float, t_lo: float, inclusive: bool
) -> np.ndarray:
    """Pairs past both thresholds, largest margin first. Quantile thresholds are inclusive:
    an encoder whose similarities pile up at 1.0 (duplicates) has its q95 *at* 1.0."""
    inside = (sim_hi >= t_hi) & (sim_lo <= t_lo)
    mask = inside if inclusive else inside & (sim_hi != t_hi) & (sim_lo != t_lo)
    idx = np.flatnonzero(mask)
    return idx[np.argsort(-(sim_hi[idx] - sim_lo[idx]), kind="stable")]


def _quantile_of(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where each value falls in the distribution of ``reference`` (0..1)."""
    return np.searchsorted(np.sort(reference), values, side="right") / len(reference)


def _rank(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)


def shared_attributes(
    labels: dict[str, Sequence[Hashable | None]], mined: np.ndarray, base: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per attribute: the fraction of mined pairs whose two images share its value, the same
    over the base pairs, and their ratio (lift). Pairs where either value is missing (e.g. no
    word on one image) are left out of both fractions."""
    out: dict[str, dict[str, float]] = {}
    for name, values in labels.items():
        codes = _codes(values)
        rates = []
        counts = []
        for pairs in (mined, base):
            if len(pairs) == 0:
                rates.append(float("nan"))
                counts.append(0)
                continue
            a, b = codes[pairs[:, 0]], codes[pairs[:, 1]]
            ok = (a >= 0) & (b >= 0)
            counts.append(int(ok.sum()))
            rates.append(float(np.mean(a[ok] == b[ok])) if ok.any() else float("nan"))
        lift = rates[0] / rates[1] if rates[1] and np.isfinite(rates[1]) else float("nan")
        out[name] = {"mined": rates[0], "base": rates[1], "lift": lift, "n_mined": counts[0]}
    return out


def _codes(values: Sequence[Hashable | None]) -> np.ndarray:
    table: dict[Hashable, int] = {}
    return np.asarray(
        [-1 if v is None else table.setdefault(v, len(table)) for v in values], dtype=np.int64
    )


def mine_pairs(
    name_a: str,
    emb_a: np.ndarray,
    name_b: str,
    emb_b: np.ndarray,
    labels: dict[str, Sequence[Hashable | None]],
    cfg: PairConfig,
    seed: int = 0,
    precomputed: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> PairReport:
    """Mine both directions for encoders A and B over the same images.

    ``precomputed``: (random pairs, nearest neighbours under A, under B), when mining many
    encoder pairs over one image set (each is then computed once per encoder)."""
    n = len(emb_a)
    if precomputed is None:
        precomputed = (
            random_pairs(n, cfg.random_pairs, seed),
            nearest_neighbours(emb_a),
            nearest_neighbours(emb_b),
        )
    rand, nn_a, nn_b = precomputed
    pool = pair_pool(rand, nn_a, nn_b, n)
    num_random = len(rand)
    sa, sb = _cosines(emb_a, pool), _cosines(emb_b, pool)
    base = pool[:num_random]
    ra, rb = sa[:num_random], sb[:num_random]
    directions = []
    for hi_name, lo_name, s_hi, s_lo, r_hi, r_lo, t_hi, t_lo in (
        (name_a, name_b, sa, sb, ra, rb, cfg.a_high, cfg.b_low),
        (name_b, name_a, sb, sa, rb, ra, cfg.b_high, cfg.a_low),
    ):
        mode = "absolute"
        idx = _select(s_hi, s_lo, t_hi, t_lo, inclusive=False)
        if len(idx) == 0:
            mode = "quantile"
            t_hi, t_lo = float(np.quantile(r_hi, cfg.q_high)), float(np.quantile(r_lo, cfg.q_low))
            idx = _select(s_hi, s_lo, t_hi, t_lo, inclusive=True)
        if len(idx) == 0:
            mode = "rank"
            gap = _quantile_of(r_hi, s_hi) - _quantile_of(r_lo, s_lo)
            order = np.argsort(-gap, kind="stable")
            idx = order[: cfg.rank_pairs][gap[order[: cfg.rank_pairs]] > 0]
            idx = idx[np.argsort(-(s_hi[idx] - s_lo[idx]), kind="stable")]
            if len(idx):
                t_hi, t_lo = float(s_hi[idx].min()), float(s_lo[idx].max())
        mined = MinedPairs(hi_name, lo_name, mode, t_hi, t_lo, pool[idx], s_hi[idx], s_lo[idx])
        mined.shared = shared_attributes(labels, mined.pairs, base)
        directions.append(mined)
    stats = {
        name: {
            "mean": float(r.mean()),
            "std": float(r.std()),
            "q05": float(np.quantile(r, 0.05)),
            "q50": float(np.quantile(r, 0.5)),
            "q95": float(np.quantile(r, 0.95)),
        }
        for name, r in ((name_a, ra), (name_b, rb))
    }
    corr = float(np.corrcoef(_rank(ra), _rank(rb))[0, 1]) if num_random > 2 else float("nan")
    return PairReport(name_a, name_b, len(pool), num_random, stats, corr, directions)
