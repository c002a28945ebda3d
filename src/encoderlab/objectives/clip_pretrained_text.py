"""CLIP with a pretrained, frozen Hugging Face text encoder (MiniLM by default).

The paper's "does a stronger language model help?" variant: same loss and image side as
``clip``, only the text tower differs (mean-pooled HF encoder + a trainable projection).
"""

from __future__ import annotations

from torch import nn

from encoderlab.encoders.text import PretrainedTextTower
from encoderlab.objectives.clip import ClipObjective
from encoderlab.objectives.config import ClipPretrainedTextConfig, ObjectiveConfig

__all__ = ["ClipPretrainedTextObjective"]


class ClipPretrainedTextObjective(ClipObjective):
    name = "clip-pretrained-text"

    def section(self, cfg: ObjectiveConfig) -> ClipPretrainedTextConfig:
        return cfg.clip_pretrained_text

    def build_text_tower(self, section: ClipPretrainedTextConfig) -> nn.Module:  # type: ignore[override]
        return PretrainedTextTower(section.text, section.embed_dim)
