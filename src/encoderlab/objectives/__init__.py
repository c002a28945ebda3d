"""Pretraining objectives behind one interface (``Objective``), chosen by name."""

from __future__ import annotations

from encoderlab.encoders.vit import VisionEncoder
from encoderlab.errors import ConfigError
from encoderlab.objectives.base import Objective
from encoderlab.objectives.clip import ClipObjective
from encoderlab.objectives.clip_pretrained_text import ClipPretrainedTextObjective
from encoderlab.objectives.config import (
    ClipConfig,
    ClipPretrainedTextConfig,
    DinoConfig,
    ObjectiveConfig,
    SiglipConfig,
)
from encoderlab.objectives.dino import DinoObjective
from encoderlab.objectives.siglip import SiglipObjective

__all__ = [
    "OBJECTIVES",
    "ClipConfig",
    "ClipPretrainedTextConfig",
    "DinoConfig",
    "Objective",
    "ObjectiveConfig",
    "SiglipConfig",
    "build_objective",
]

OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls
    for cls in (ClipObjective, SiglipObjective, ClipPretrainedTextObjective, DinoObjective)
}


def build_objective(name: str, encoder: VisionEncoder, cfg: ObjectiveConfig) -> Objective:
    """The objective ``name`` training ``encoder``; unknown names are a ``ConfigError``."""
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name](encoder, cfg)
