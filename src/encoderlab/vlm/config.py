"""The VLM recipe: one config for every encoder, so that VLMs differ only in their encoder.

The ``tiny`` recipe is written out in full in ``presets/tiny.yaml``; ``VLMConfig()``'s field
defaults equal it (tests/test_vlm_recipe.py) and are the base other presets' ``vlm:`` sections
override key by key (``load_vlm_config``); ``VLMConfig.smoke()`` runs the whole pipeline in
seconds. The question mix (``n_turns``, ``mc_fraction``, ``short_option_questions``,
``question_weights``: ``question_mix``), ``conversations_per_image`` and the ``template`` have
their only defaults here: stage 0, stage 2, the LM's context check and the LLaVA export take
them from the config they run with, and the functions below them have no default of their own.
(The scoring rule's one default is ``suite.harness.EvalConfig.scoring``; a study's checks read
its ``suite.scoring``.)

Choices the oracle VLM made (docs/lab-notes.md, experiments/vlm_recipe): the tiny LM cannot
answer with an option's letter (``experiments/lm_binding``), so its turns ask for the short
answer wherever one exists (``mc_fraction`` 0; LLaVA-1.5's mix is the paper preset's), those
that refer to their options included (``short_option_questions``: the check's caption and
multi-object questions were otherwise taught only by letter); stage 2
runs 1,024 steps (with 256 the oracle does not read its image) of 32 four-turn conversations,
because supervision per step is what teaches a small LM to read image tokens; the turns are
rendered ``compact`` (no system prompt, no instruction), which costs ~45% fewer tokens.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from encoderlab.config import StrictModel, load_preset, merge_sections, parse_config
from encoderlab.suite.questions import QUESTION_TYPES, QuestionMix
from encoderlab.train.config import TrainConfig
from encoderlab.vlm.template import Style

__all__ = ["LMConfig", "StageConfig", "VLMConfig", "load_vlm_config"]


class LMConfig(StrictModel):
    """The embedded default LM: a small Llama with a tokenizer trained on the world's text."""

    hidden_size: int = Field(192, gt=0)
    num_layers: int = Field(3, gt=0)
    num_heads: int = Field(4, gt=0)
    intermediate_size: int = Field(512, gt=0)
    vocab_size: int = Field(1024, ge=128, description="BPE target size (fewer if no merges left)")
    max_positions: int = Field(512, gt=0, description="longest sequence, image tokens included")
    pack_tokens: int = Field(256, gt=0, description="stage-0 sequence length (texts are packed)")
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide(self) -> LMConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by num_heads")
        return self


class StageConfig(StrictModel):
    """One training stage: how many training-world samples it draws examples from, and the
    shared trainer's schedule (``train.samples`` = examples seen, so epochs = samples/examples)."""

    examples: int = Field(gt=0, description="training-world samples used (the first N)")
    train: TrainConfig


def _train(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        warmup_frac=0.03,
        weight_decay=0.0,  # LLaVA-1.5 trains both stages without weight decay
        betas=(0.9, 0.999),
        eps=1e-8,
        grad_clip=1.0,
        precision="fp32",
        num_workers=0,  # examples are pre-tokenised tensors in memory: workers only add latency
        log_every=5,
        checkpoint_every=50,
        keep_checkpoints=1,  # a stage-2 checkpoint holds the LM and its AdamW moments
        seed=0,
    )
    return TrainConfig(**{**base, **kw})


class VLMConfig(StrictModel):
    """LLaVA-1.5 recipe at small scale. Field defaults are the ``tiny`` recipe."""

    lm: LMConfig = Field(default_factory=LMConfig)
    lm_path: str | None = Field(
        None, description="a Hugging Face causal-LM directory instead of the embedded LM"
    )
    tap_layer: int = Field(
        -2,
        description="ViT block to read (-2: penultimate, as LLaVA); a CNN encoder is read at "
        "its own encoder.feature_stage",
    )
    pool_tokens: int | None = Field(
        None, gt=0, description="average-pool the patch grid to k tokens (a square number)"
    )
    standardize_features: bool = Field(
        True,
        description="remove each token position's mean and scale channels to unit std "
        "(statistics of the training images' features, kept in the checkpoint); LLaVA feeds "
        "raw features (the paper preset)",
    )
    max_text_tokens: int = Field(256, gt=8, description="text tokens per example (truncated)")
    packed_row_tokens: int | None = Field(
        256,
        gt=0,
        description="stages 1 and 2 pack each batch's examples into rows of this many tokens "
        "(position ids restart per example: the padded batch's loss on fewer tokens; "
        "vlm.data.PackCollate); null pads every example to the batch's longest",
    )
    n_turns: int = Field(
        4, gt=0, description="question turns per stage-0/2 conversation (and the context check's)"
    )
    mc_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of stage-0/2 turns asked as multiple choice where a short answer "
        "exists (LLaVA-1.5 mixes both; an LM without multiple-choice symbol binding learns "
        "nothing from letter answers)",
    )
    short_option_questions: bool = Field(
        True,
        description="questions that refer to their options (which caption, which of these "
        "objects) are taught like the rest, answered by the correct option's text where a "
        "turn is not multiple choice; false: always by letter (LLaVA-1.5's data, the paper "
        "preset)",
    )
    question_weights: dict[str, float] = Field(
        default_factory=lambda: {"object": 2.0, "colour": 2.0},
        description="relative weight of each SynthWorld question type in stage-0/2 "
        "conversations (suite.questions.type_order; a type not named weighs 1, 0 drops it); "
        "all equal: every type alike (a preset overrides tiny's weights key by key)",
    )
    conversations_per_image: int = Field(
        4,
        ge=1,
        description="stage-2 conversations drawn per training image, each with its own "
        "questions: more supervision per encoded image (stage2.examples images, "
        "stage2.train.samples conversations seen)",
    )
    template: Style = Field(
        "compact",
        description="how question turns are rendered (vlm.template): LLaVA-1.5's vicuna_v1, "
        "or compact (no system prompt, no answer-format instruction)",
    )
    seed: int = Field(0, description="projector init and conversation sampling")
    stage0: StageConfig = Field(
        default_factory=lambda: StageConfig(
            examples=4000, train=_train(batch_size=8, samples=2000, lr=2e-3)
        )
    )
    stage1: StageConfig = Field(
        default_factory=lambda: StageConfig(
            examples=2048, train=_train(batch_size=8, samples=2048, lr=1e-3)
        )
    )
    stage2: StageConfig = Field(
        default_factory=lambda: StageConfig(
            examples=8192, train=_train(batch_size=32, samples=32768, lr=1e-3)
        )
    )
    stage2_projector_lr_scale: float = Field(
        8.0,
        gt=0,
        description="stage 2 trains the projector at this multiple of stage2.train.lr (the "
        "LM's): a projector fitted in stage 1 beside a pretrained LM may want its own rate "
        "(LLaVA: 1, the paper preset)",
    )

    @model_validator(mode="after")
    def _known_question_types(self) -> VLMConfig:
        unknown = sorted(set(self.question_weights) - set(QUESTION_TYPES))
        if unknown:
            raise ValueError(
                f"question_weights: unknown question type {unknown[0]!r}; known: "
                f"{', '.join(QUESTION_TYPES)}"
            )
        weights = [self.question_weights.get(t, 1.0) for t in QUESTION_TYPES]
        if min(weights) < 0 or max(weights) == 0:
            raise ValueError("question_weights must be >= 0 and leave some type to ask")
        return self

    @model_validator(mode="after")
    def _square_pool(self) -> VLMConfig:
        if self.pool_tokens is not None and round(self.pool_tokens**0.5) ** 2 != self.pool_tokens:
            raise ValueError(f"pool_tokens {self.pool_tokens} is not a square number")
        return self

    @classmethod
    def smoke(cls) -> VLMConfig:
        """The whole pipeline in seconds (tests, CI); the numbers mean nothing. Its values live
        in the smoke preset's ``vlm:`` section, so a copy of that YAML keeps them."""
        return load_vlm_config("smoke")

    @property
    def question_mix(self) -> QuestionMix:
        """The recipe's training questions, as stage 0, stage 2, the context check and the
        LLaVA export ask them."""
        return QuestionMix(
            self.n_turns, self.mc_fraction, self.question_weights, self.short_option_questions
        )

    @property
    def image_examples(self) -> int:
        """Training-world images whose features stages 1 and 2 need (the first N)."""
        return max(self.stage1.examples, self.stage2.examples)


def load_vlm_config(preset: str) -> VLMConfig:
    """The recipe of a preset name or YAML path: the ``tiny`` defaults of ``VLMConfig``,
    overridden key by key by the preset's ``vlm:`` section if it has one."""
    base = VLMConfig()
    section = load_preset(preset).get("vlm") or {}
    merged = merge_sections(base.model_dump(mode="json"), section)
    return parse_config(VLMConfig, merged, source=preset, prefix="vlm")
