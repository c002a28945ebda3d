"""The VLM's training stages as tasks for the shared trainer (``encoderlab.train.trainer``).

Stage 0 pretrains the embedded LM on text; stage 1 (alignment) trains the projector only;
stage 2 (instruction) trains projector + LM. Each stage declares what it trains; everything
else is frozen (``requires_grad=False``) and absent from the optimizer. The vision encoders
are not part of any task: stages 1 and 2 read cached features (``vision.encode_images``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from transformers import PreTrainedModel

from encoderlab.vlm.model import VLMModel, answer_loss
from encoderlab.vlm.template import IGNORE_INDEX

__all__ = ["STAGE_TRAINABLE", "LMTask", "VLMStageTask", "loss_items", "parameter_summary"]

STAGE_TRAINABLE: dict[int, tuple[str, ...]] = {1: ("projector",), 2: ("projector", "lm")}


def _decay_groups(params: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on biases, norms), the usual transformer split."""
    decay = [p for _, p in params if p.ndim >= 2]
    other = [p for _, p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def parameter_summary(stage: int, modules: dict[str, nn.Module]) -> dict[str, Any]:
    """What a stage trains and freezes, with parameter counts (logged and stored in vlm.json)."""

    def count(m: nn.Module, trainable: bool) -> int:
        return sum(p.numel() for p in m.parameters() if p.requires_grad == trainable)

    return {
        "stage": stage,
        "trainable": sorted(n for n, m in modules.items() if count(m, True)),
        "frozen": sorted(n for n, m in modules.items() if count(m, False)),
        "trainable_params": sum(count(m, True) for m in modules.values()),
        "frozen_params": sum(count(m, False) for m in modules.values()),
    }


def loss_items(labels: torch.Tensor) -> torch.Tensor:
    """Tokens with a loss in the global batch over the world size, as Hugging Face's
    ``num_items_in_batch``: each rank's loss is then its summed token losses over that count,
    and DDP's gradient average is exactly the single-process per-token mean, however the
    answer tokens fall across ranks (a per-rank mean would weight ranks, not tokens)."""
    n = (labels[:, 1:] != IGNORE_INDEX).sum().float()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(n)
        n /= dist.get_world_size()
    return n


class _Task(nn.Module):
    """No-op hooks of the trainer's task interface."""

    def on_step_start(self, step: int, total_steps: int, optimizer: torch.optim.Optimizer) -> None:
        pass

    def after_backward(self, step: int) -> None:
        pass

    def on_step_end(self, step: int, total_steps: int) -> None:
        pass

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _lm(self) -> PreTrainedModel:
        raise NotImplementedError

    def fsdp_units(self) -> list[nn.Module]:
        """What ``TrainConfig.sharding: fsdp`` shards one by one (``train.sharding``): the
        LM's decoder layers (its ``_no_split_modules`` classes); the rest (embeddings, head,
        projector) is sharded with the task as a whole."""
        lm = self._lm()
        kinds = set(getattr(lm, "_no_split_modules", None) or ())
        return [m for m in lm.modules() if type(m).__name__ in kinds]

    def set_gradient_checkpointing(self, enable: bool) -> None:
        """Hugging Face's activation checkpointing of each decoder layer (non-reentrant, so
        under FSDP2 too); it acts in training mode only, so the LM is put in it meanwhile."""
        lm = self._lm()
        if enable:
            self._lm_training = lm.training
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            lm.train()
        elif lm.is_gradient_checkpointing:
            lm.gradient_checkpointing_disable()
            lm.train(getattr(self, "_lm_training", False))


class LMTask(_Task):
    """Stage 0: next-token prediction on text (loss on every non-pad token)."""

    def __init__(self, lm: PreTrainedModel) -> None:
        super().__init__()
        self.lm = lm

    def prepare_batch(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        dev = self._device()
        inputs = {k: batch[k].to(dev) for k in ("input_ids", "attention_mask", "labels")}
        inputs["num_items_in_batch"] = loss_items(inputs["labels"])
        return inputs

    def forward(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": self.lm(**inputs, use_cache=False).loss}

    def _lm(self) -> PreTrainedModel:
        return self.lm

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return _decay_groups(list(self.lm.named_parameters()), weight_decay)

    def summary(self) -> dict[str, Any]:
        return parameter_summary(0, {"lm": self.lm})


class VLMStageTask(_Task):
    """Stage 1 or 2 on cached image features ``[num_images, T, D]``.

    The features are a plain attribute, not a buffer: they stay out of the checkpoints.
    """

    def __init__(
        self,
        model: VLMModel,
        features: torch.Tensor,
        stage: int,
        projector_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if stage not in STAGE_TRAINABLE:
            raise ValueError(f"unknown VLM stage {stage}; known: {sorted(STAGE_TRAINABLE)}")
        self.model = model
        self.features = features
        self.stage = stage
        self.projector_lr_scale = projector_lr_scale
        model.requires_grad_(False)
        for name in STAGE_TRAINABLE[stage]:
            getattr(model, name).requires_grad_(True)

    def prepare_batch(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        dev = self._device()
        # a padded batch has an attention mask, a packed one position ids (``PackCollate``)
        keys = ("input_ids", "labels", "attention_mask", "position_ids")
        inputs = {k: batch[k].to(dev) for k in keys if k in batch}
        inputs["features"] = self.features[batch["image"]].to(dev)
        inputs["num_items_in_batch"] = loss_items(inputs["labels"])
        return inputs

    def forward(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": answer_loss(self.model, **inputs)}

    def _lm(self) -> PreTrainedModel:
        return self.model.lm

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The trainable parts' decay groups, the projector's at ``projector_lr_scale``."""
        groups = []
        for name, scale in (("projector", self.projector_lr_scale), ("lm", 1.0)):
            part = getattr(self.model, name)
            trainable = [(n, p) for n, p in part.named_parameters() if p.requires_grad]
            groups += [{**g, "lr_scale": scale} for g in _decay_groups(trainable, weight_decay)]
        return groups

    def summary(self, vision: nn.Module | None = None) -> dict[str, Any]:
        """Trainable/frozen parts; pass the vision tower to count the frozen encoders too."""
        modules = {"projector": self.model.projector, "lm": self.model.lm}
        if vision is not None:
            modules["vision"] = vision
        return parameter_summary(self.stage, modules)
