"""The study config: one YAML, one section per component, validated strictly as a whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from encoderlab.config import StrictModel, load_preset, parse_config
from encoderlab.data.synth import DataConfig
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig
from encoderlab.errors import ConfigError, DataError
from encoderlab.evaluate.analyze import AnalysisConfig
from encoderlab.evaluate.control import ControlConfig
from encoderlab.objectives import OBJECTIVES, ObjectiveConfig
from encoderlab.suite.harness import EvalConfig
from encoderlab.train.config import TrainConfig
from encoderlab.vlm.config import VLMConfig, load_vlm_config

FUSED = "fused"


class StudyConfig(StrictModel):
    """Everything a study runs (``make study`` runs the ``tiny`` preset)."""

    name: str = "study"
    data_path: Path | None = Field(
        None, description="real shards (a directory with train/ and test/); None = SynthWorld"
    )
    vlm_data: Path | None = Field(
        None,
        description="LLaVA-format instruction JSON (images resolved beside it) that the VLM "
        "stages train on: stage-0 text, stage-1 captions, stage-2 conversations; None = the "
        "training split, with conversations generated from its metadata or labels",
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
    vlm: VLMConfig = Field(default_factory=VLMConfig)
    vlm_objectives: list[str] | None = Field(
        None, description="encoders that get a VLM (default: every objective)"
    )
    fused: list[str] = Field(
        default_factory=lambda: ["clip", "dino"],
        description="encoders of the fused VLM (tokens concatenated by channel); [] for none",
    )
    suite: EvalConfig = Field(default_factory=EvalConfig)
    replicates: int = Field(
        1,
        ge=1,
        description="training seeds: replicate k > 0 reruns pretraining, control, analysis, "
        "VLMs and suite with every training seed + k (same data and LM); findings pool them",
    )

    @field_validator("objectives")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in OBJECTIVES]
        if unknown:
            raise ValueError(f"unknown objective {unknown[0]!r}; known: {', '.join(OBJECTIVES)}")
        if len(set(names)) != len(names):
            raise ValueError("objectives must not repeat")
        return names

    @field_validator("vlm_objectives", "fused")
    @classmethod
    def _vlm_encoders_trained(cls, names: list[str] | None, info: ValidationInfo) -> Any:
        missing = [n for n in names or [] if n not in info.data.get("objectives", [])]
        if missing:
            raise ValueError(f"{missing[0]!r} is not among the study's objectives")
        if info.field_name == "fused" and names and len(names) != 2:
            raise ValueError("name exactly two objectives (or [] for no fused VLM)")
        return names

    def check_paths(self) -> None:
        """Fail in one line, before anything trains, on a data or LM path that is not there."""
        if self.data_path is not None and not Path(self.data_path).is_dir():
            raise DataError(f"data_path: {self.data_path}: no such directory")
        if self.vlm_data is not None and not Path(self.vlm_data).is_file():
            raise DataError(f"vlm_data: {self.vlm_data}: no such file (LLaVA-format JSON)")
        if self.vlm.lm_path is not None and not Path(self.vlm.lm_path).is_dir():
            raise ConfigError(
                f"vlm.lm_path: {self.vlm.lm_path}: language model directory not found"
            )

    def replicate(self, k: int) -> StudyConfig:
        """Replicate ``k``: the encoder init, objective heads, data order and augmentations,
        and the VLM's projector init and conversation sampling all draw from seed + k."""
        if k == 0:
            return self
        return self.model_copy(
            update={
                "encoder": self.encoder.model_copy(update={"seed": self.encoder.seed + k}),
                "objective": self.objective.model_copy(update={"seed": self.objective.seed + k}),
                "pretrain": self.pretrain.model_copy(update={"seed": self.pretrain.seed + k}),
                "vlm": self.vlm.model_copy(update={"seed": self.vlm.seed + k}),
            }
        )

    @property
    def vlms(self) -> dict[str, list[str]]:
        """VLM name -> the objectives whose encoders it reads."""
        names = self.vlm_objectives if self.vlm_objectives is not None else self.objectives
        out = {n: [n] for n in names}
        if self.fused:
            out[FUSED] = list(self.fused)
        return out


def load_study(preset: str) -> StudyConfig:
    """A shipped preset name or a YAML path, validated; errors name the key path."""
    source = preset if preset.endswith((".yaml", ".yml")) or "/" in preset else f"{preset}.yaml"
    raw = load_preset(preset)
    # The VLM recipe of the preset's name (tiny / smoke), overridden by its `vlm:` section.
    raw["vlm"] = load_vlm_config(preset).model_dump(mode="json")
    return parse_config(StudyConfig, raw, source=source)
