"""The VLM recipe's positive control: a VLM trained on PERFECT image features.

Every image of the training world is replaced by ground-truth tokens built from its scene
metadata on the study encoder's token grid (4 x 4 for the tiny ResNet, 8 x 8 for a ViT with
8-pixel patches at 64 px): an object's cells hold fixed random vectors for its category,
colour, texture, style and size, the text's cells its word and ink colour, cells that two
things cover the sum of both, and the other cells the background style and the scene kind.
Stages 1 and 2 then run exactly as for an encoder
(``pipeline.train_stages``: same LM, data, order and hyper-parameters), and the held-out
multiple-choice check compares the scene's own tokens with another scene's, scored by option
letter and by cloze (``sanity.answer_correct``). If this VLM does
not answer better with its own tokens, the recipe (LM, projector, stages) cannot use an image
at all, and a blind encoder VLM says nothing about its encoder. SynthWorld only: real data has
no ground truth to draw.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import torch

from encoderlab.encoders import EncoderConfig
from encoderlab.errors import ConfigError
from encoderlab.train.distributed import init_distributed
from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.data import read_world, train_split
from encoderlab.vlm.lm import load_lm, pretrain_lm
from encoderlab.vlm.model import VLMModel, model_for_features
from encoderlab.vlm.pipeline import train_stages
from encoderlab.vlm.sanity import compare_features, heldout_items, with_other_scorings
from encoderlab.vlm.template import Template
from encoderlab.vlm.vision import feature_stats, standardize

__all__ = [
    "ORACLE_JSON",
    "OracleTokens",
    "oracle_check",
    "oracle_grid",
    "own_vs_other",
    "train_oracle_vlm",
]

ORACLE_JSON = "oracle.json"  # where the study's vlm/oracle stage writes the check
OBJECT_FACTORS = ("category", "colour", "texture", "style", "size")


class OracleTokens:
    """Scene metadata -> ``[grid * grid, dim]`` tokens: a fixed random vector per factor value
    (seeded by its name, so every run and process draws the same), summed per cell."""

    def __init__(self, grid: int, dim: int = 128) -> None:
        self.grid = grid  # the study encoder's grid, so the oracle reads what an encoder could
        self.dim = dim
        self._table: dict[str, torch.Tensor] = {}
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None  # set by train_oracle_vlm

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def features(self, metas: list[dict[str, Any]]) -> torch.Tensor:
        """``[N, grid * grid, dim]`` tokens of scenes, standardised as an encoder's are when
        the recipe standardises (``stats``: those of the training tokens)."""
        tokens = torch.stack([self(m) for m in metas])
        return tokens if self.stats is None else standardize(tokens, *self.stats)

    def vector(self, factor: str, value: Any) -> torch.Tensor:
        key = f"{factor}:{value}"
        if key not in self._table:
            gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            self._table[key] = torch.randn(self.dim, generator=gen)
        return self._table[key]

    def __call__(self, meta: dict[str, Any]) -> torch.Tensor:
        n = self.grid
        things = torch.zeros(n, n, self.dim)  # objects and text, summed where they overlap
        covered = torch.zeros(n, n, dtype=torch.bool)
        cell = meta["image_size"] / n

        def paint(bbox: list[float], value: torch.Tensor) -> None:
            x0, y0, x1, y1 = (min(n - 1, int(v // cell)) for v in bbox)
            things[y0 : y1 + 1, x0 : x1 + 1] += value
            covered[y0 : y1 + 1, x0 : x1 + 1] = True

        for obj in meta.get("objects", []):
            paint(obj["bbox"], sum(self.vector(f, obj[f]) for f in OBJECT_FACTORS))
        text = meta.get("text")
        if text:
            paint(
                text["bbox"],
                self.vector("word", text["content"]) + self.vector("ink", text["colour"]),
            )
        scene = self.vector("background", (meta.get("background") or {}).get("style"))
        scene = scene + self.vector("kind", meta.get("kind"))
        grid = torch.where(covered.unsqueeze(-1), things, scene)
        return grid.reshape(n * n, self.dim)


def train_oracle_vlm(
    cfg: VLMConfig,
    data: str | Path,
    lm_cache: str | Path,
    out: str | Path,
    oracle: OracleTokens,
    progress: bool = True,
) -> tuple[VLMModel, Template, dict[str, Any]]:
    """Stages 1 and 2 of ``cfg`` on ``oracle`` tokens of the training split of ``data``, from
    the study's stage-0 LM (cached under ``lm_cache``) or ``cfg.lm_path``; returns the trained
    model, its template and the stages' summaries."""
    need = max(cfg.image_examples, cfg.stage0.examples if cfg.lm_path is None else 0)
    world = read_world(train_split(data), need, None, images=False)
    dist = init_distributed()  # under torchrun the stages train data-parallel, as train_vlm
    lm_dir = (
        Path(cfg.lm_path)
        if cfg.lm_path
        else pretrain_lm(cfg, world, Path(lm_cache), progress, dist) / "lm"
    )
    lm, tokenizer = load_lm(lm_dir)
    oracle.stats = None
    features = oracle.features(world.metas[: cfg.image_examples])
    if cfg.standardize_features:  # as train_vlm does for an encoder's features
        oracle.stats = feature_stats(features)
        features = standardize(features, *oracle.stats)
    model = model_for_features(oracle.dim, 1, lm, tokenizer, cfg.seed)
    template = Template(tokenizer, oracle.num_tokens, cfg.max_text_tokens, style=cfg.template)
    stages = train_stages(model, features, template, world, cfg, Path(out), dist, progress)
    model.requires_grad_(False)
    return model.eval(), template, stages


def own_vs_other(
    model: VLMModel,
    template: Template,
    items: list,
    oracle: OracleTokens,
    scoring: str,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Accuracy on held-out ``(sample, question)`` items with each scene's own tokens vs the
    next scene's (what the LM guesses from the question alone), paired; ``scoring`` as in
    ``sanity.answer_correct``."""
    tokens = oracle.features([item["meta"] for item, _ in items])
    features = {"own": tokens, "other": tokens.roll(1, 0)}
    questions = [q for _, q in items]
    return compare_features(model, template, questions, features, scoring, batch_size)


def oracle_check(
    cfg: VLMConfig,
    data: str | Path,
    lm_cache: str | Path,
    out: str | Path,
    n: int = 256,
    progress: bool = True,
    *,
    scoring: str,
    grid: int,
) -> dict[str, Any]:
    """Train the oracle VLM under ``out`` and check it on ``n`` held-out (val) questions: the
    ``paired_accuracy`` of own vs another scene's tokens scored by ``scoring`` (top-level keys,
    ``by_type`` per question type: which facts the recipe can read) and by the other scoring
    (under its name; ``sanity.with_other_scorings``), and each stage's final loss. ``grid``:
    the study encoder's token grid per side (``oracle_grid``)."""
    oracle = OracleTokens(grid)
    model, template, stages = train_oracle_vlm(cfg, data, lm_cache, out, oracle, progress)
    items = heldout_items(data, n, None)
    result = with_other_scorings(
        lambda how: own_vs_other(model, template, items, oracle, how), scoring
    )
    result["stages"] = {k: {"steps": v["steps"], "final": v["final"]} for k, v in stages.items()}
    result["grid"] = grid
    return result


def oracle_grid(encoder: EncoderConfig, pool_tokens: int | None) -> int:
    """Tokens per side of the grid the study's VLMs read: the encoder's at its image size, or
    the recipe's pooled grid (``vlm.pool_tokens``)."""
    from encoderlab.encoders import build_encoder

    if pool_tokens is not None:
        return round(pool_tokens**0.5)
    rows, cols = build_encoder(encoder).token_grid()
    if rows != cols:
        raise ConfigError(f"encoder: the oracle needs a square token grid, not {rows} x {cols}")
    return rows
