"""DINO (v1): self-distillation with no labels, multi-crop, EMA teacher, centring.

Follows the DINO code (``main_dino.py``): a projection head with a weight-normalised last
layer that stays frozen for the first steps, a teacher that is an EMA of the student (momentum
cosine to 1) and sees only the global crops, teacher temperature warm-up and a cosine weight
decay schedule. DINO is not a pip package, so the head and schedules are written out here.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.distributed.nn.functional as dist_nn
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from encoderlab.data.augment import ViewSpec
from encoderlab.encoders.vit import VisionEncoder, seeded
from encoderlab.errors import ConfigError
from encoderlab.objectives.base import Objective
from encoderlab.objectives.config import DinoConfig, ObjectiveConfig
from encoderlab.objectives.dino_loss import DinoLoss
from encoderlab.train.distributed import world_size
from encoderlab.train.schedule import cosine

__all__ = ["DinoHead", "DinoObjective"]


class GlobalBatchNorm(nn.Module):
    """BatchNorm1d over the global batch with batch statistics only (DINO's ``use_bn_in_head``
    with SyncBatchNorm). Written out because ``nn.SyncBatchNorm`` needs a GPU; the statistics
    are all-reduced with gradients, so DDP on CPUs matches one process exactly. Only the head
    uses it and the head is never used downstream, so no running statistics are kept."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Two passes (mean, then the mean squared deviation) rather than E[x^2] - E[x]^2: the
        # same statistics to float rounding however the batch is split across ranks.
        count = float(len(x)) * world_size()
        mean = _global_sum(x.sum(0)) / count
        var = _global_sum(((x - mean) ** 2).sum(0)) / count
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def _global_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over DDP ranks, differentiable (its gradient is summed back to every rank)."""
    return dist_nn.all_reduce(x) if world_size() > 1 else x


def _norm(dim: int, use_bn: bool) -> list[nn.Module]:
    return [GlobalBatchNorm(dim)] if use_bn else []


class DinoHead(nn.Module):
    """MLP -> L2-normalised bottleneck -> weight-normalised linear layer (DINO's ``DINOHead``)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        norm_last_layer: bool = True,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
            for _ in range(nlayers - 2):
                layers += [*_norm(hidden_dim, use_bn), nn.GELU(), nn.Linear(hidden_dim, hidden_dim)]
            layers += [*_norm(hidden_dim, use_bn), nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim)]
            self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        # norm_last_layer: the prototypes keep unit norm (g fixed), only their directions learn
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


class _Network(nn.Module):
    """Backbone + head: the student's layout, deep-copied for the teacher."""

    def __init__(self, backbone: VisionEncoder, head: DinoHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head


class DinoObjective(Objective):
    name = "dino"

    def __init__(self, encoder: VisionEncoder, cfg: ObjectiveConfig) -> None:
        super().__init__(encoder, cfg)
        d: DinoConfig = cfg.dino
        self.dcfg = d
        with seeded(cfg.seed):
            self.head = DinoHead(
                encoder.embed_dim,
                d.out_dim,
                d.hidden_dim,
                d.bottleneck_dim,
                d.head_layers,
                d.norm_last_layer,
                d.head_batchnorm,
            )
        # The teacher starts as a copy of the student and never receives gradients (so DDP
        # leaves it alone); it is always in eval mode, i.e. without drop-path, like DINO's.
        self.teacher = copy.deepcopy(_Network(encoder, self.head))
        self.teacher.requires_grad_(False)
        self._set_teacher_mode(self.training)
        self.loss = DinoLoss(d.out_dim, d.student_temp, d.center_momentum, d.centering)
        size = encoder.cfg.image_size
        if d.local_crop_size % encoder.input_stride:
            raise ConfigError(
                f"dino.local_crop_size: {d.local_crop_size} is not a multiple of the encoder's "
                f"patch size (a CNN's stride) {encoder.input_stride}"
            )
        common: dict[str, Any] = dict(
            flip_p=0.5, jitter_p=d.jitter_p, grayscale_p=d.grayscale_p, blur_sigma=d.blur_sigma
        )
        self.specs = [
            ViewSpec(size, d.global_crop_scale, blur_p=1.0, **common),
            ViewSpec(size, d.global_crop_scale, blur_p=0.1, solarize_p=d.solarize_p, **common),
            *[ViewSpec(d.local_crop_size, d.local_crop_scale, blur_p=0.5, **common)]
            * d.n_local_crops,
        ]
        # Schedule values for the current step (set by on_step_start; derived from the step,
        # so they need no checkpointing).
        self.teacher_temp = d.warmup_teacher_temp
        self.total_steps = 0

    def train(self, mode: bool = True) -> DinoObjective:
        super().train(mode)
        self._set_teacher_mode(mode)
        return self

    def _set_teacher_mode(self, mode: bool) -> None:
        """The teacher runs in eval mode except its backbone's BatchNorm, which in training
        normalises with the teacher's own batch statistics (and keeps its own running
        statistics for evaluation), as DINO's SyncBatchNorm teacher. Set at construction too:
        a task is trained in the mode it is built in (the trainer does not call ``train()``),
        and a BatchNorm teacher left in eval mode normalises with its initial running
        statistics, i.e. not at all, and gives every image nearly the same output."""
        self.teacher.eval()
        for m in self.teacher.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(mode)

    @property
    def downstream_encoder(self) -> VisionEncoder:
        return self.teacher.backbone

    # -- data -----------------------------------------------------------------------------
    def prepare(
        self, images: torch.Tensor, texts: list[str], sample_ids: torch.Tensor, step: int
    ) -> dict[str, torch.Tensor]:
        views = self._views(images, sample_ids, step, self.specs)
        batch = {"global_crops": torch.cat(views[:2])}  # view-major: crop 0 of all, then crop 1
        if len(views) > 2:
            batch["local_crops"] = torch.cat(views[2:])
        return batch

    # -- training -------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        global_crops = batch["global_crops"]
        with torch.no_grad():
            teacher_out = self.teacher.head(self.teacher.backbone(global_crops))
        # One backbone pass per resolution (DINO's MultiCropWrapper), one head pass for all.
        feats = [self.encoder(global_crops)]
        n_crops = 2
        if "local_crops" in batch:
            feats.append(self.encoder(batch["local_crops"]))
            n_crops += len(batch["local_crops"]) // (len(global_crops) // 2)
        student_out = self.head(torch.cat(feats))
        loss = self.loss(student_out, teacher_out, self.teacher_temp, n_crops)
        temp = torch.tensor(self.teacher_temp, device=loss.device)
        return {"loss": loss, "teacher_temp": temp, "teacher_entropy": self.loss.teacher_entropy}

    def teacher_temp_at(self, step: int, total_steps: int) -> float:
        """Linear warm-up (``np.linspace`` as DINO) over the first fraction, then constant."""
        d = self.dcfg
        warmup = int(d.warmup_teacher_temp_frac * total_steps)
        if step >= warmup:
            return d.teacher_temp
        return float(np.linspace(d.warmup_teacher_temp, d.teacher_temp, warmup)[step])

    def frozen_last_layer_steps(self, total_steps: int) -> int:
        return int(self.dcfg.freeze_last_layer_frac * total_steps)

    def on_step_start(self, step: int, total_steps: int, optimizer: torch.optim.Optimizer) -> None:
        self.total_steps = total_steps
        self.teacher_temp = self.teacher_temp_at(step, total_steps)
        wd = cosine(self.dcfg.weight_decay, self.dcfg.weight_decay_end, step, total_steps)
        for group in optimizer.param_groups:
            if group.get("name") == "decay":
                group["weight_decay"] = wd

    def after_backward(self, step: int) -> None:
        # DINO's cancel_gradients_last_layer: no gradient at all (not a zero one), so AdamW
        # skips the layer entirely (no moment updates, no decay) while it is frozen.
        if step < self.frozen_last_layer_steps(self.total_steps):
            for p in self.head.last_layer.parameters():
                p.grad = None

    @torch.no_grad()
    def on_step_end(self, step: int, total_steps: int) -> None:
        m = cosine(self.dcfg.momentum_teacher, 1.0, step, total_steps)
        student = [*self.encoder.parameters(), *self.head.parameters()]
        teacher = list(self.teacher.parameters())
        torch._foreach_mul_(teacher, m)
        torch._foreach_add_(teacher, student, alpha=1 - m)
