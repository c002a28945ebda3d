"""Vision encoder (timm ViT with feature taps) and the text towers of the language objectives."""

from encoderlab.encoders.text import (
    ClipTextTower,
    PretrainedTextConfig,
    PretrainedTextTower,
    TextConfig,
    default_minilm_path,
)
from encoderlab.encoders.vit import EncoderConfig, TapKind, VisionEncoder, build_encoder, seeded

__all__ = [
    "ClipTextTower",
    "EncoderConfig",
    "PretrainedTextConfig",
    "PretrainedTextTower",
    "TapKind",
    "TextConfig",
    "VisionEncoder",
    "build_encoder",
    "default_minilm_path",
    "seeded",
]
