"""Write a SynthWorld data set (train/val/test shards + manifest), cached by config hash."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pydantic import Field

from encoderlab.config import StrictModel, config_hash
from encoderlab.data.shards import MANIFEST_NAME, read_manifest, write_manifest, write_split
from encoderlab.data.synthworld import WorldConfig, generate_sample


class DataConfig(StrictModel):
    """Split sizes and sharding of a generated data set."""

    train: int = Field(50_000, gt=0)
    val: int = Field(2_000, gt=0)
    test: int = Field(2_000, gt=0)
    shard_size: int = Field(5_000, gt=0)
    workers: int = Field(2, gt=0, description="writer processes")


def dataset_config(world: WorldConfig, data: DataConfig) -> dict[str, Any]:
    """What the manifest records and hashes (worker count excluded: it never changes bytes)."""
    return {"world": world.model_dump(mode="json"), "splits": data.model_dump(exclude={"workers"})}


def is_current(out: Path, world: WorldConfig, data: DataConfig) -> bool:
    """True when ``out`` already holds exactly this data set, complete."""
    if not (Path(out) / MANIFEST_NAME).is_file():
        return False
    manifest = read_manifest(out)
    if manifest.config_hash != config_hash(dataset_config(world, data)):
        return False
    return all(
        (Path(out) / s.path).is_file() for split in manifest.splits.values() for s in split.shards
    )


def synthesize(world: WorldConfig, data: DataConfig, out: Path, progress: bool = True) -> Path:
    """Generate the splits under ``out`` (skipped when already current); return ``out``.

    The manifest is written last, so an interrupted generation is never taken as complete.
    """
    out = Path(out)
    if is_current(out, world, data):
        return out
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    splits = {}
    for split, count in (("train", data.train), ("val", data.val), ("test", data.test)):
        splits[split] = write_split(
            out,
            split,
            count,
            functools.partial(generate_sample, world, split),
            shard_size=data.shard_size,
            workers=data.workers,
            image_format=world.image_format,
            progress=progress,
        )
    write_manifest(out, dataset_config(world, data), splits)
    return out
