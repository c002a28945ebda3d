"""Labelled image sets for probes, pair mining and CKA: SynthWorld shards or an image folder.

``--data`` may be a SynthWorld data-set root (its ``test`` split by default), one split
directory, any WebDataset shard directory, or a labels CSV next to an image folder (read by
the shared reader, ``encoderlab.data.reader``). Images are decoded once, eagerly, at one size;
undecodable ones are dropped with their labels and reported. The set's key is a hash of the
decoded pixels, so cached embeddings follow the data, wherever it lives.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

from encoderlab.config import parse_config
from encoderlab.data.folder import IMAGE_COLUMNS, TEXT_COLUMNS
from encoderlab.data.reader import SampleDataset, SkipReport, collate, index_source
from encoderlab.data.shards import MANIFEST_NAME, dataset_root
from encoderlab.data.synthworld import WorldConfig
from encoderlab.errors import DataError
from encoderlab.evaluate.attributes import SYNTH_ATTRIBUTES, Labels, synth_labels
from encoderlab.evaluate.embeddings import ImageSet

__all__ = ["LabelledSet", "load_labelled", "world_of"]


@dataclass
class LabelledSet:
    """Images with per-attribute labels; ``world`` when the data is SynthWorld."""

    images: ImageSet
    labels: Labels
    source: str
    world: WorldConfig | None = None
    skipped: list[str] = field(default_factory=list)


def world_of(path: Path) -> WorldConfig | None:
    """The SynthWorld config recorded in the manifest of ``path`` or of its parent."""
    for root in (dataset_root(path), path.parent):
        manifest = root / MANIFEST_NAME
        if manifest.is_file():
            try:
                world = json.loads(manifest.read_text()).get("config", {}).get("world")
            except (OSError, ValueError):
                raise DataError(f"{manifest}: unreadable manifest") from None
            if world is None:
                return None
            return parse_config(WorldConfig, world, source=str(manifest), prefix="config.world")
    return None


def _source(data: Path, split: str) -> Path:
    data = dataset_root(data)
    if data.is_dir() and (data / MANIFEST_NAME).is_file():
        split_dir = data / split
        if not split_dir.is_dir():
            splits = ", ".join(sorted(p.name for p in data.iterdir() if p.is_dir()))
            raise DataError(f"{data}: no split {split!r} (splits: {splits})")
        return split_dir
    return data


def _csv_columns(path: Path) -> list[str]:
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        raise DataError(f"{path}: unreadable CSV") from None


def _labels(
    source: Path, metas: list[dict], attributes: Sequence[str] | None, columns: list[str] | None
) -> Labels:
    synthetic = columns is None and all("objects" in m or "kind" in m for m in metas[:50])
    if synthetic:
        labels = synth_labels(metas)
        wanted = list(attributes) if attributes is not None else list(SYNTH_ATTRIBUTES)
        missing = [a for a in wanted if a not in labels]
        if missing:
            raise DataError(
                f"{source}: no attribute {missing[0]!r} in SynthWorld metadata "
                f"(known: {', '.join(SYNTH_ATTRIBUTES)})"
            )
        return {a: labels[a] for a in wanted}
    available = columns if columns is not None else sorted({k for m in metas for k in m})
    wanted = list(attributes) if attributes is not None else available
    for name in wanted:
        if name not in available:
            what = "column" if columns is not None else "metadata key"
            raise DataError(f"{source}: no {what} {name!r} (available: {', '.join(available)})")
    return {a: [_hashable(m.get(a)) for m in metas] for a in wanted}


def _hashable(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True)


def load_labelled(
    data: Path,
    image_size: int,
    attributes: Sequence[str] | None = None,
    split: str = "test",
    max_images: int | None = None,
    workers: int = 0,
) -> LabelledSet:
    """Read ``data`` (see the module doc) at ``image_size`` with its labels."""
    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: no such file or directory")
    source = _source(data, split)
    columns = None
    if source.suffix.lower() == ".csv":
        # Every column but the image and caption columns is a label (as in the reader's meta).
        columns = [c for c in _csv_columns(source) if c not in (*IMAGE_COLUMNS, *TEXT_COLUMNS)]
    refs, index_skips = index_source(source, require_text=False)
    if max_images is not None:
        refs = refs[:max_images]
    dataset = SampleDataset(refs, image_size=image_size)
    skips = SkipReport()
    skips.extend(index_skips)
    images: list[torch.Tensor] = []
    metas: list[dict] = []
    loader = DataLoader(dataset, batch_size=256, num_workers=workers, collate_fn=collate)
    for batch in loader:
        skips.extend(batch.skipped)
        if batch.error is not None:
            raise DataError(f"{source}: {batch.error}")
        images.append(batch.images)
        metas.extend(batch.metas)
    if not metas:
        raise DataError(f"{source}: no readable images")
    tensor = torch.cat(images)
    labels = _labels(source, metas, attributes, columns)
    key = f"data-{hashlib.sha256(tensor.numpy().tobytes()).hexdigest()[:16]}"
    skipped = skips.summary().splitlines()[1:] if len(skips) else []
    return LabelledSet(
        ImageSet(key, len(tensor), lambda: tensor),
        labels,
        str(source),
        world_of(source),
        skipped,
    )
