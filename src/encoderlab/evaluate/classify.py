"""Classification on frozen features: weighted kNN, a linear probe, zero-shot.

These are the control check of a study: encoders compared downstream should classify the
world's objects about equally well. Hand-written in torch (a few dozen lines) rather than
adding scikit-learn, with the paper's protocol: features standardised with training
statistics, a small regularisation sweep picked on a held-out part of the training features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def knn_accuracy(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> float:
    """DINO's weighted kNN: cosine neighbours vote with weight exp(sim / T)."""
    train = F.normalize(train.float(), dim=1)
    test = F.normalize(test.float(), dim=1)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    k = min(k, len(train))
    correct = 0
    for start in range(0, len(test), chunk):
        sims = test[start : start + chunk] @ train.T
        top, idx = sims.topk(k, dim=1)
        votes = torch.zeros(len(top), num_classes)
        votes.scatter_add_(1, train_labels[idx], (top / temperature).exp())
        correct += int((votes.argmax(1) == test_labels[start : start + chunk]).sum())
    return correct / len(test)


@dataclass
class ProbeResult:
    accuracy: float
    weight_decay: float
    val_accuracy: float
    correct: torch.Tensor  # bool per test item: paired comparisons of two encoders need it


def _fit_linear(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, max_iter: int
) -> torch.nn.Linear:
    """Multinomial logistic regression, full batch, to convergence with L-BFGS.

    The problem is convex, so a second-order full-batch solver (what scikit-learn's
    LogisticRegression does) replaces the paper's SGD lr sweep: no learning rate to tune, and
    an under-trained probe can't masquerade as a weak encoder.
    """
    head = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(
        head.parameters(), lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head(x), y) + 0.5 * weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return head


def _correct(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return head(x).argmax(1) == y


def _accuracy(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(_correct(head, x, y).float().mean())


def linear_probe(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    weight_decays: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2),
    max_iter: int = 100,
    val_frac: float = 0.2,
    seed: int = 0,
) -> ProbeResult:
    """Logistic regression on standardised features; the L2 strength is chosen on a held-out
    fraction of the training features, then the probe is refit on all of them and scored on
    ``test``."""
    train, test = train.float(), test.float()
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    train, test = (train - mean) / std, (test - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(val_frac * len(train)))
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    scores = []
    for wd in weight_decays:
        head = _fit_linear(train[fit_idx], train_labels[fit_idx], num_classes, wd, max_iter)
        scores.append((_accuracy(head, train[val_idx], train_labels[val_idx]), -wd, wd))
    val_acc, _, wd = max(scores)  # ties go to the stronger regulariser
    head = _fit_linear(train, train_labels, num_classes, wd, max_iter)
    correct = _correct(head, test, test_labels)
    return ProbeResult(float(correct.float().mean()), wd, val_acc, correct)


def zero_shot_accuracy(
    image_embeddings: torch.Tensor, class_embeddings: torch.Tensor, labels: torch.Tensor
) -> float:
    """Accuracy of the nearest class-prompt embedding (both sides L2-normalised)."""
    logits = (
        F.normalize(image_embeddings.float(), dim=1)
        @ F.normalize(class_embeddings.float(), dim=1).T
    )
    return float((logits.argmax(1) == labels).float().mean())
