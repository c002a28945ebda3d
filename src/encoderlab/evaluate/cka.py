"""Linear CKA (Kornblith et al. 2019) between representations, layer by layer.

Hand-written (a few lines of numpy) because no installed library has it; computed in float64
in whichever form is cheaper: the feature form ``||Y^T X||_F^2`` when features are fewer than
samples, the Gram form ``<K_X, K_Y>`` otherwise. Both are the same number.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cka_matrix", "linear_cka"]


def _centred(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x - x.mean(axis=0, keepdims=True)


def _self_similarity(x: np.ndarray) -> np.ndarray:
    """The matrix whose squared Frobenius norm CKA uses: ``X^T X`` or ``X X^T``."""
    return x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T


def _cross(x: np.ndarray, y: np.ndarray) -> float:
    """``||Y^T X||_F^2`` (= ``<X X^T, Y Y^T>``) in the cheaper form."""
    if max(x.shape[1], y.shape[1]) <= x.shape[0]:
        return float(np.sum((y.T @ x) ** 2))
    return float(np.sum((x @ x.T) * (y @ y.T)))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same ``n`` inputs (``[n, d_x]``, ``[n, d_y]``):
    1 for representations equal up to rotation and isotropic scaling, near 0 for unrelated."""
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same inputs on both sides, got {len(x)} and {len(y)}")
    xc, yc = _centred(x), _centred(y)
    norm = np.linalg.norm(_self_similarity(xc)) * np.linalg.norm(_self_similarity(yc))
    return _cross(xc, yc) / norm if norm > 0 else float("nan")


def cka_matrix(layers_a: np.ndarray, layers_b: np.ndarray) -> np.ndarray:
    """``[L_a, L_b]`` CKA between every layer of A and every layer of B (``[L, n, d]`` each).

    All cross terms come from one product of the layer-concatenated features (one BLAS call
    instead of ``L_a * L_b`` small ones, ~3x faster), summed block by block.
    """
    if layers_a.shape[1] != layers_b.shape[1]:
        raise ValueError("CKA needs the same inputs on both sides")
    a = [_centred(x) for x in layers_a]
    b = [_centred(y) for y in layers_b]
    norm_a = np.array([np.linalg.norm(_self_similarity(x)) for x in a])
    norm_b = np.array([np.linalg.norm(_self_similarity(y)) for y in b])
    da, db = a[0].shape[1], b[0].shape[1]
    if max(da, db) <= len(a[0]):
        cross = np.concatenate(a, axis=1).T @ np.concatenate(b, axis=1)
        hsic = (cross**2).reshape(len(a), da, len(b), db).sum(axis=(1, 3))
    else:  # more features than inputs: the Gram form, layer pair by layer pair
        hsic = np.array([[_cross(x, y) for y in b] for x in a])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.outer(norm_a, norm_b) > 0, hsic / np.outer(norm_a, norm_b), np.nan)
