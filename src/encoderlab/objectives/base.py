"""The interface every pretraining objective implements for the trainer.

An objective owns the encoder it trains plus whatever the objective adds (projections, text
tower, DINO head and teacher). Everything that must survive a checkpoint is a parameter or a
registered buffer, so ``state_dict()`` is the whole state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from encoderlab.data.augment import ViewSpec, augment_views
from encoderlab.data.reader import Batch
from encoderlab.encoders.vit import VisionEncoder
from encoderlab.objectives.config import ObjectiveConfig

__all__ = ["Objective", "dist_rank_world"]

# Leaf names of parameters that are embeddings rather than weights (no weight decay), besides
# every parameter with ndim <= 1 (biases, norm scales, logit scale and bias).
_NO_DECAY_NAMES = {"pos_embed", "cls_token", "reg_token", "positional_embedding", "cls_emb"}


def dist_rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Objective(nn.Module, ABC):
    """Base class: subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str]

    def __init__(self, encoder: VisionEncoder, cfg: ObjectiveConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg

    # -- data -----------------------------------------------------------------------------
    def prepare_batch(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """The trainer's entry point: a reader ``Batch`` -> the inputs of ``forward``."""
        return self.prepare(batch.images, batch.texts, batch.indices, step)

    @abstractmethod
    def prepare(
        self, images: torch.Tensor, texts: list[str], sample_ids: torch.Tensor, step: int
    ) -> dict[str, torch.Tensor]:
        """Augment ``images`` (uint8 ``[B,3,H,W]``) and tokenise ``texts`` into the tensors
        ``forward`` takes, on the objective's device. Randomness comes from
        ``(cfg.seed, sample_id, step)`` per sample, never from a global RNG."""

    def _views(
        self, images: torch.Tensor, sample_ids: torch.Tensor, step: int, specs: list[ViewSpec]
    ) -> list[torch.Tensor]:
        images = images.to(self._device, non_blocking=True)
        return augment_views(images, sample_ids, specs, seed=self.cfg.seed, step=step)

    @property
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # -- training -------------------------------------------------------------------------
    @abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": scalar, ...}``; the other entries are scalars worth logging."""

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: ``decay`` (matrices) and ``no_decay`` (biases, norms, logit scale
        and bias, position/class embeddings); frozen parameters are left out."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if p.ndim <= 1 or name.rsplit(".", 1)[-1] in _NO_DECAY_NAMES:
                no_decay.append(p)
            else:
                decay.append(p)
        return [
            {"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        ]

    def on_step_start(self, step: int, total_steps: int, optimizer: torch.optim.Optimizer) -> None:
        """Before ``prepare_batch``/``forward`` of ``step``: objective-specific schedules."""

    def after_backward(self, step: int) -> None:
        """After ``backward``, before clipping and ``optimizer.step``."""

    def on_step_end(self, step: int, total_steps: int) -> None:
        """After ``optimizer.step``: EMA updates, clamps."""

    # -- a text tokenizer learnt from the training captions (``text.tokenizer: world``) ------
    @property
    def tokenizer_captions(self) -> int:
        """Training captions the text tokenizer must be fitted on before training (0: none)."""
        return int(getattr(getattr(self, "text", None), "tokenizer_captions", 0))

    def fit_tokenizer(self, texts: list[str]) -> None:
        self.text.fit_tokenizer(texts)

    def tokenizer_json(self) -> str | None:
        """The fitted tokenizer, to keep beside the weights (None: nothing was fitted)."""
        text = getattr(self, "text", None)
        return text.tokenizer_json() if hasattr(text, "tokenizer_json") else None

    def load_tokenizer(self, state: str) -> None:
        self.text.load_tokenizer(state)

    # -- evaluation -----------------------------------------------------------------------
    @property
    def downstream_encoder(self) -> VisionEncoder:
        """The encoder to save for probes, embedding analysis and the VLM (DINO: the teacher's,
        as DINO evaluates and releases the teacher)."""
        return self.encoder

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor | None:
        """L2-normalised text embeddings in the joint space (None without a text tower)."""
        return None

    @torch.no_grad()
    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of normalised float images in the objective's space
        (default: the downstream encoder's CLS)."""
        return F.normalize(self.downstream_encoder(images), dim=-1)
