"""Inputs for a dry run of the paper path: real-format shards and a Hugging Face LM on disk.

``prepare_dry_inputs(preset)`` writes what a ``data_path`` + ``vlm.lm_path`` preset (``paper``,
``paper-dry``) reads, at the paths the preset names: DataComp-style shards (``KEY.jpg``,
``KEY.txt``, ``KEY.json``; train / val / test) rendered by SynthWorld, whose JSON carries only
what a real labelled data set has at the top level (``category``, ``superclass``,
``num_objects`` of one-object scenes, as ``encoderlab data import`` writes them) next to the
scene record, and a random-init LM (``vlm.random_lm``). Nothing is downloaded.

    python -m encoderlab.study.dry --preset paper-dry
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from encoderlab.data.shards import write_split
from encoderlab.data.synthworld import WorldConfig
from encoderlab.data.synthworld.world import generate_sample
from encoderlab.study.config import StudyConfig, load_study

__all__ = ["labelled_sample", "prepare_dry_inputs"]


def labelled_sample(world: WorldConfig, split: str, index: int) -> dict[str, Any]:
    """A SynthWorld sample with a labelled data set's top-level labels (one-object scenes)."""
    sample = generate_sample(world, split, index)
    meta = sample["meta"]
    objects = meta.get("objects") or []
    if len(objects) == 1:
        meta["category"] = objects[0]["category"]
        meta["superclass"] = objects[0]["superclass"]
    meta["num_objects"] = len(objects)
    return sample


def prepare_dry_inputs(
    cfg: StudyConfig, family: str = "llama", progress: bool = False
) -> tuple[Path, Path]:
    """Write ``cfg.data_path`` (shards) and ``cfg.vlm.lm_path`` (a micro random-init LM of
    ``family``) unless they exist; return both paths."""
    from encoderlab.vlm.random_lm import write_random_lm

    if cfg.data_path is None or cfg.vlm.lm_path is None:
        raise ValueError("a dry run needs a preset with data_path and vlm.lm_path")
    data, lm = Path(cfg.data_path), Path(cfg.vlm.lm_path)
    world = cfg.world.model_copy(update={"image_format": "jpg"})
    for split, count in (("train", cfg.data.train), ("val", cfg.data.val), ("test", cfg.data.test)):
        if not (data / split).is_dir():
            write_split(
                data,
                split,
                count,
                functools.partial(labelled_sample, world, split),
                shard_size=cfg.data.shard_size,
                workers=cfg.data.workers,
                image_format="jpg",
                progress=progress,
            )
    if not (lm / "config.json").is_file():
        write_random_lm(lm, family, "micro")
    return data, lm


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper-dry")
    parser.add_argument("--family", choices=("qwen2", "llama"), default="llama")
    args = parser.parse_args(argv)
    data, lm = prepare_dry_inputs(load_study(args.preset), args.family, progress=True)
    print(f"wrote {data} (shards) and {lm} (random-init {args.family})")


if __name__ == "__main__":
    main()
