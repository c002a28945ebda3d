"""CLIP: InfoNCE between projected ViT CLS embeddings and a text tower (OpenCLIP's loss).

``ClipObjective`` is also the base of the other language objectives, which change only the
text tower (``clip-pretrained-text``) or the loss (``siglip``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch import nn

from encoderlab.data.augment import ViewSpec
from encoderlab.encoders.text import ClipTextTower
from encoderlab.encoders.vit import VisionEncoder, seeded
from encoderlab.objectives.base import Objective, dist_rank_world
from encoderlab.objectives.config import ClipConfig, ObjectiveConfig

__all__ = ["ClipObjective"]

_TEXT_PREFIX = "text_"


class ClipObjective(Objective):
    name = "clip"

    def __init__(self, encoder: VisionEncoder, cfg: ObjectiveConfig) -> None:
        super().__init__(encoder, cfg)
        section = self.section(cfg)
        with seeded(cfg.seed):
            # OpenCLIP's visual projection: no bias, std width**-0.5
            self.image_proj = nn.Linear(encoder.embed_dim, section.embed_dim, bias=False)
            nn.init.normal_(self.image_proj.weight, std=encoder.embed_dim**-0.5)
            self.text = self.build_text_tower(section)
        self.logit_scale = nn.Parameter(torch.tensor(float(section.init_logit_scale)))
        self.max_logit_scale = section.max_logit_scale
        self.view = ViewSpec(size=encoder.cfg.image_size, scale=section.crop_scale)
        self.loss = self.build_loss()

    # -- what subclasses change -----------------------------------------------------------
    def section(self, cfg: ObjectiveConfig) -> ClipConfig:
        return cfg.clip

    def build_text_tower(self, section: ClipConfig) -> nn.Module:
        return ClipTextTower(section.text, section.embed_dim)

    def build_loss(self) -> nn.Module:
        # local_loss + gather_with_grad: each rank scores its own rows against the gathered
        # batch, and gradients flow back through the gather, so DDP's gradient average equals
        # the gradient of the loss over the global batch.
        return ClipLoss(local_loss=True, gather_with_grad=True)

    def contrastive_loss(
        self, image: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scale = self.logit_scale.exp()
        return self.loss(image, text, scale), {"logit_scale": scale.detach()}

    # -- interface ------------------------------------------------------------------------
    def prepare(
        self, images: torch.Tensor, texts: list[str], sample_ids: torch.Tensor, step: int
    ) -> dict[str, torch.Tensor]:
        (views,) = self._views(images, sample_ids, step, [self.view])
        tokens = {
            _TEXT_PREFIX + k: v.to(self._device, non_blocking=True)
            for k, v in self.text.tokenize(list(texts)).items()
        }
        return {"images": views, **tokens}

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.encoder(images)), dim=-1)

    def text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.normalize(self.text(tokens), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tokens = {
            k.removeprefix(_TEXT_PREFIX): v for k, v in batch.items() if k.startswith(_TEXT_PREFIX)
        }
        # The towers may run under bf16 autocast; the B x B logits and the loss stay in fp32.
        image = self.image_features(batch["images"]).float()
        text = self.text_features(tokens).float()
        self.loss.rank, self.loss.world_size = dist_rank_world()
        loss, extra = self.contrastive_loss(image, text)
        return {"loss": loss, **extra}

    def on_step_end(self, step: int, total_steps: int) -> None:
        with torch.no_grad():  # OpenCLIP clamps after every optimizer step
            self.logit_scale.clamp_(0, self.max_logit_scale)

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        tokens = {k: v.to(self._device) for k, v in self.text.tokenize(list(texts)).items()}
        return self.text_features(tokens)

    @torch.no_grad()
    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_features(images)
