"""SigLIP: the pairwise sigmoid loss (OpenCLIP's ``SigLipLoss``) with CLIP's towers."""

from __future__ import annotations

import torch
from open_clip.loss import SigLipLoss
from torch import nn

from encoderlab.encoders.vit import VisionEncoder
from encoderlab.objectives.clip import ClipObjective
from encoderlab.objectives.config import ObjectiveConfig, SiglipConfig

__all__ = ["SiglipObjective"]


class SiglipObjective(ClipObjective):
    name = "siglip"

    def __init__(self, encoder: VisionEncoder, cfg: ObjectiveConfig) -> None:
        super().__init__(encoder, cfg)
        self.logit_bias = nn.Parameter(torch.tensor(float(cfg.siglip.init_logit_bias)))

    def section(self, cfg: ObjectiveConfig) -> SiglipConfig:
        return cfg.siglip

    def build_loss(self) -> nn.Module:
        # Each rank scores its images against every rank's texts (exchanged with gradients);
        # the loss is summed over pairs and divided by the local batch, so the mean over ranks
        # that DDP's gradient average implies is the global loss.
        return SigLipLoss()

    def contrastive_loss(
        self, image: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scale = self.logit_scale.exp()
        loss = self.loss(image, text, scale, self.logit_bias)
        return loss, {"logit_scale": scale.detach(), "logit_bias": self.logit_bias.detach()}
