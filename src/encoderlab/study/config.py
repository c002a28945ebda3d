"""The study config: one YAML, one section per component, validated strictly as a whole."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from encoderlab.config import StrictModel, load_preset, parse_config
from encoderlab.data.synth import DataConfig
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig
from encoderlab.evaluate.analyze import AnalysisConfig
from encoderlab.evaluate.control import ControlConfig
from encoderlab.objectives import OBJECTIVES, ObjectiveConfig
from encoderlab.train.config import TrainConfig


class StudyConfig(StrictModel):
    """Everything a study runs; the README's main command uses the ``tiny`` preset."""

    name: str = "study"
    data_path: Path | None = Field(
        None, description="real shards (a directory with train/ and test/); None = SynthWorld"
    )
    world: WorldConfig = Field(default_factory=WorldConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    objectives: list[str] = Field(
        default_factory=lambda: ["clip", "siglip", "clip-pretrained-text", "dino"]
    )
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    pretrain: TrainConfig = Field(default_factory=TrainConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)

    @field_validator("objectives")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in OBJECTIVES]
        if unknown:
            raise ValueError(f"unknown objective {unknown[0]!r}; known: {', '.join(OBJECTIVES)}")
        if len(set(names)) != len(names):
            raise ValueError("objectives must not repeat")
        return names


def load_study(preset: str) -> StudyConfig:
    """A shipped preset name or a YAML path, validated; errors name the key path."""
    source = preset if preset.endswith((".yaml", ".yml")) or "/" in preset else f"{preset}.yaml"
    return parse_config(StudyConfig, load_preset(preset), source=source)
