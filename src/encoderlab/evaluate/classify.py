"""Classification on frozen features: weighted kNN, a linear probe, zero-shot.

These are the control check of a study: encoders compared downstream should classify the
world's objects about equally well. Hand-written in torch (a few dozen lines) rather than
scikit-learn so the probe runs in the same bf16/fp32 tensors, with the paper's protocol:
features standardised with training statistics, a small lr x weight-decay sweep picked on a
held-out part of the training features.
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
    lr: float
    weight_decay: float
    val_accuracy: float


def _fit_linear(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, lr: float, wd: float, epochs: int, seed: int
) -> torch.nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=gen)
        head.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=wd)
    batch = 256
    steps = epochs * max(1, len(x) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - batch + 1 if len(x) >= batch else 1, batch):
            sel = perm[start : start + batch]
            loss = F.cross_entropy(head(x[sel]), y[sel])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return head


def _accuracy(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((head(x).argmax(1) == y).float().mean())


def linear_probe(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    lrs: tuple[float, ...] = (1e-3, 1e-2),
    weight_decays: tuple[float, ...] = (0.0, 1e-4, 1e-2),
    epochs: int = 30,
    val_frac: float = 0.2,
    seed: int = 0,
) -> ProbeResult:
    """Logistic regression on standardised features; hyper-parameters chosen on a held-out
    fraction of the training features, then refit on all of them and scored on ``test``."""
    train, test = train.float(), test.float()
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    train, test = (train - mean) / std, (test - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(val_frac * len(train)))
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    best: tuple[float, float, float] | None = None
    for lr in lrs:
        for wd in weight_decays:
            head = _fit_linear(
                train[fit_idx], train_labels[fit_idx], num_classes, lr, wd, epochs, seed
            )
            acc = _accuracy(head, train[val_idx], train_labels[val_idx])
            if best is None or acc > best[0]:
                best = (acc, lr, wd)
    assert best is not None
    val_acc, lr, wd = best
    head = _fit_linear(train, train_labels, num_classes, lr, wd, epochs, seed)
    return ProbeResult(_accuracy(head, test, test_labels), lr, wd, val_acc)


def zero_shot_accuracy(
    image_embeddings: torch.Tensor, class_embeddings: torch.Tensor, labels: torch.Tensor
) -> float:
    """Accuracy of the nearest class-prompt embedding (both sides L2-normalised)."""
    logits = (
        F.normalize(image_embeddings.float(), dim=1)
        @ F.normalize(class_embeddings.float(), dim=1).T
    )
    return float((logits.argmax(1) == labels).float().mean())
