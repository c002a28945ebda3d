"""World config and the per-sample entry point used by the shard writer.

Per-sample seeds are a hash of (seed, split, index): every split name (``train``, ``val``,
``suite-ocr``...) gets its own streams by construction, and a sample does not depend on which
process generated it or in which order.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Literal

from pydantic import Field, model_validator

from encoderlab.config import StrictModel
from encoderlab.data.synthworld.captions import CaptionPolicy, make_caption
from encoderlab.data.synthworld.documents import DocScene, sample_document
from encoderlab.data.synthworld.layout import Rng, as_random, sample_object_scene
from encoderlab.data.synthworld.raster import render
from encoderlab.data.synthworld.scene import Scene


class WorldConfig(StrictModel):
    """Everything that defines a SynthWorld data set (besides its split names and sizes)."""

    image_size: int = Field(64, ge=32, le=1024)
    seed: int = Field(0, ge=0)
    text_prob: float = Field(0.5, ge=0.0, le=1.0)
    doc_share: float = Field(0.1, ge=0.0, le=1.0)
    num_objects: tuple[int, int] = (1, 3)
    caption: CaptionPolicy = Field(default_factory=CaptionPolicy)
    image_format: Literal["png", "jpg"] = "png"

    @model_validator(mode="after")
    def _check_range(self) -> WorldConfig:
        lo, hi = self.num_objects
        if not 1 <= lo <= hi <= 3:
            raise ValueError("num_objects must be [min, max] with 1 <= min <= max <= 3")
        return self


def sample_rngs(seed: int, split: str, index: int) -> tuple[random.Random, random.Random]:
    """Independent scene and caption rngs of one sample, from a hash of (seed, split, index).

    (``SeedSequence`` would do the same job at ~20x the cost of one blake2b call.)"""
    digest = hashlib.blake2b(f"{seed}\x1f{split}\x1f{index}".encode(), digest_size=16).digest()
    return (
        random.Random(int.from_bytes(digest[:8], "little")),
        random.Random(int.from_bytes(digest[8:], "little")),
    )


def sample_scene(cfg: WorldConfig, rng: Rng) -> Scene | DocScene:
    """An object scene, or a chart/table/document with probability ``cfg.doc_share``."""
    r = as_random(rng)
    if r.random() < cfg.doc_share:
        return sample_document(r, cfg.image_size)
    return sample_object_scene(r, cfg.image_size, cfg.num_objects, cfg.text_prob)


def generate_sample(cfg: WorldConfig, split: str, index: int) -> dict[str, Any]:
    """One sample: ``{"__key__", "image" (PIL RGB), "text" (caption), "meta" (JSON-able)}``."""
    scene_rng, caption_rng = sample_rngs(cfg.seed, split, index)
    scene = sample_scene(cfg, scene_rng)
    image = render(scene)
    caption, mentions = make_caption(scene, cfg.caption, caption_rng)
    meta = scene.to_meta()
    meta["split"] = split
    meta["index"] = index
    meta["mentions"] = mentions
    return {"__key__": f"{split}-{index:08d}", "image": image, "text": caption, "meta": meta}
