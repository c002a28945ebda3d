"""kNN, linear probe and zero-shot on features with known structure."""

from __future__ import annotations

import pytest
import torch

from encoderlab.evaluate.classify import knn_accuracy, linear_probe, zero_shot_accuracy


def _clusters(n_per: int, classes: int, dim: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3
    y = torch.arange(classes).repeat_interleave(n_per)
    x = centres[y] + noise * torch.randn(len(y), dim, generator=g)
    return x, y


def test_knn_separates_clusters_and_is_at_chance_on_noise() -> None:
    xtr, ytr = _clusters(40, 5, 16, 0.5, 0)
    xte, yte = _clusters(20, 5, 16, 0.5, 0)
    assert knn_accuracy(xtr, ytr, xte + 0.01, yte) == 1.0
    g = torch.Generator().manual_seed(3)
    shuffled = ytr[torch.randperm(len(ytr), generator=g)]
    assert abs(knn_accuracy(xtr, shuffled, xte, yte) - 0.2) < 0.15


def test_linear_probe_learns_a_linear_rule_not_noise() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1200, 64, generator=g)  # a random direction in 64-d ~ orthogonal to the rule
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    res = linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], max_iter=50)
    assert res.accuracy > 0.95
    assert res.correct.shape == (200,) and res.correct.dtype == torch.bool
    assert abs(res.correct.float().mean().item() - res.accuracy) < 1e-9
    noise = linear_probe(
        x[:1000], y[torch.randperm(1200, generator=g)][:1000], x[1000:], y[1000:], max_iter=50
    )
    assert noise.accuracy < 0.65


def test_zero_shot_picks_the_nearest_class_prompt() -> None:
    classes = torch.eye(4)
    images = torch.tensor([[0.9, 0.1, 0, 0], [0, 0, 0.2, 1.0], [0, 1, 0, 0.1]])
    assert zero_shot_accuracy(images, classes, torch.tensor([0, 3, 1])) == 1.0
    assert zero_shot_accuracy(images, classes, torch.tensor([1, 3, 1])) == pytest.approx(2 / 3)
