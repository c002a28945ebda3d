"""DINO's self-distillation loss with a centred, sharpened teacher (DINO v1, ``DINOLoss``), or
with DINOv2's Sinkhorn-Knopp teacher (``sinkhorn_knopp_teacher``) in place of the centre.

Kept in its own file, like DINOv2's ``loss/``, so it can be read and tested on its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.train.distributed import all_reduce_sum, world_size

__all__ = ["DinoLoss", "sinkhorn_knopp"]


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temp: float, iterations: int = 3) -> torch.Tensor:
    """DINOv2's ``sinkhorn_knopp_teacher``: soft assignments of the global batch's rows to
    the prototypes such that every prototype gets an equal share of the batch, from the first
    step on (the EMA centre needs steps to catch up with the teacher). Rows of the
    result sum to 1; sums run over all DDP ranks, so ranks agree with one process.
    ``logits`` are bounded (DINO's head: cosines), so ``exp(logits / temp)`` is finite."""
    q = torch.exp(logits.float() / temp).t()  # prototypes x samples, as DINOv2
    prototypes = q.shape[0]
    samples = all_reduce_sum(torch.tensor(float(q.shape[1]), device=q.device))
    q /= all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True))  # each prototype: 1 / K of the mass
        q /= prototypes
        q /= q.sum(dim=0, keepdim=True)  # each sample: 1 / B
        q /= samples
    return (q * samples).t()


class DinoLoss(nn.Module):
    """Cross-entropy between teacher and student crop outputs, skipping same-crop pairs.

    ``student_out`` holds ``n_crops`` chunks (global crops first, then local ones) and
    ``teacher_out`` 2 chunks (the global crops), each chunk one view of the whole local batch.
    Calling it also moves the centre towards the teacher's batch mean, all-reduced over DDP
    ranks so every rank keeps the centre a single process would.
    """

    def __init__(
        self,
        out_dim: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        centering: str = "centre",
    ):
        super().__init__()
        if centering not in ("centre", "sinkhorn"):
            raise ValueError(f"centering: centre or sinkhorn, not {centering!r}")
        self.centering = centering
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_entropy = torch.zeros(())

    def forward(
        self,
        student_out: torch.Tensor,
        teacher_out: torch.Tensor,
        teacher_temp: float,
        n_crops: int,
    ) -> torch.Tensor:
        student = (student_out.float() / self.student_temp).chunk(n_crops)
        if self.centering == "sinkhorn":
            teacher = sinkhorn_knopp(teacher_out.detach(), teacher_temp)
        else:
            teacher = F.softmax((teacher_out.float() - self.center) / teacher_temp, dim=-1)
            teacher = teacher.detach()
        # Collapse monitor (as in the DINO paper's Fig. 7): ln(out_dim) means a uniform teacher,
        # 0 one dominant prototype; a healthy run sits in between.
        self.teacher_entropy = -(teacher * torch.log(teacher + 1e-12)).sum(-1).mean().detach()
        teacher = teacher.chunk(2)
        total = student_out.new_zeros((), dtype=torch.float32)
        n_terms = 0
        for iq, q in enumerate(teacher):
            for v, s in enumerate(student):
                if v == iq:
                    continue  # never predict a crop from itself
                total = total + torch.sum(-q * F.log_softmax(s, dim=-1), dim=-1).mean()
                n_terms += 1
        self.update_center(teacher_out)
        return total / n_terms

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """EMA of the teacher's mean output over the global batch (all ranks)."""
        batch_center = all_reduce_sum(teacher_out.float().sum(dim=0, keepdim=True))
        batch_center = batch_center / (len(teacher_out) * world_size())
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))
