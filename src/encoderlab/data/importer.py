"""Import real images into train/val/test WebDataset shards + manifest (``encoderlab data import``).

Sources (``encoderlab.data.import_folder``: an image folder with a CSV / JSONL of captions and
labels; ``encoderlab.data.clipart``: the Debian package openclipart-png) list ``ImportItem``s;
this module turns them into exactly what ``encoderlab data synth`` writes: shards in the
DataComp / img2dataset layout (``KEY.png``, ``KEY.txt``, ``KEY.json``) under ``OUT/train``,
``OUT/val``, ``OUT/test`` and ``OUT/manifest.json`` (``data.shards``), so ``data stats``,
``data preview``, pretraining, the control check and the VLM read them as they read SynthWorld.

- **Images** go through ``data.realimage.prepare_image`` (EXIF orientation, RGB, alpha onto
  white, square at ``image_size``) in ``workers`` processes.
- **Skips are counted, never fatal**: a file that is missing, empty, truncated, undecodable,
  too small or blank, or whose pixels duplicate an earlier file's, is left out with its reason;
  ``OUT/import.json`` has the counts per reason and per split and category, and every skipped
  file. Only a source that cannot be read at all (no labels file, a labels file that is not
  UTF-8...) is an error, in one line.
- **Splits** are stratified by ``category`` and deterministic: within each category items are
  ordered by a hash of ``(seed, key)`` and the first ``test`` share goes to test, the next
  ``val`` share to val (at least one each once a category has 3 images), the rest to train. A
  file keeps its split when others are added, as long as its category's counts round the same.
- **Duplicates** (identical pixels after preparation) are skipped before splitting, the first
  in key order kept, so the same picture never sits in train and test.

Sample ``meta`` is the source's labels (for clip-art: ``category``, ``superclass``,
``subcategory``, ``title``, ``num_objects``) plus ``source`` (the file, relative to the source
root) and ``original_size`` / ``original_mode``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import Field

from encoderlab.config import StrictModel
from encoderlab.data.realimage import ImageSkip, prepare_image
from encoderlab.data.shards import MANIFEST_NAME, write_manifest, write_split
from encoderlab.errors import DataError
from encoderlab.progress import make_progress

__all__ = [
    "CONTROL_LABELS",
    "IMPORT_JSON",
    "NEEDS_FACTORS",
    "SPLITS",
    "ImportConfig",
    "ImportItem",
    "ImportResult",
    "assign_splits",
    "check_study_data",
    "format_counts",
    "import_items",
    "safe_key",
]

IMPORT_JSON = "import.json"
SPLITS = ("train", "val", "test")


class ImportConfig(StrictModel):
    """How imported images are prepared, split and sharded."""

    image_size: int = Field(64, ge=8, description="side of the stored square images (pixels)")
    aspect: Literal["pad", "crop"] = Field(
        "pad", description="pad: whole image on white; crop: the reader's centre crop"
    )
    val: float = Field(0.1, ge=0, lt=1, description="share of each category in val")
    test: float = Field(0.1, ge=0, lt=1, description="share of each category in test")
    seed: int = Field(0, description="salt of the split hash")
    min_side: int = Field(16, ge=1, description="skip images with a smaller side (pixels)")
    min_ink: float = Field(
        0.001, ge=0, lt=1, description="skip images with less of their area off-white (blank)"
    )
    min_category: int = Field(
        1, ge=1, description="skip categories with fewer usable images than this"
    )
    max_per_category: int | None = Field(
        None, ge=1, description="keep at most this many images per category (hash order)"
    )
    dedupe: bool = Field(True, description="skip images whose prepared pixels repeat")
    shard_size: int = Field(5_000, gt=0)
    workers: int = Field(2, gt=0, description="image-preparing processes")

    def hashed(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"workers"})


@dataclass
class ImportItem:
    """One image to import: its file, a unique shard key, caption and labels."""

    path: Path
    key: str
    text: str
    meta: dict[str, Any]


@dataclass
class ImportResult:
    """What an import wrote: samples per split and category, skips per reason and file."""

    out: Path
    counts: dict[str, dict[str, int]]  # split -> category -> samples
    skipped: Counter = field(default_factory=Counter)  # reason -> files
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def record(self) -> dict[str, Any]:
        return {
            "samples": {s: sum(c.values()) for s, c in self.counts.items()},
            "categories": self.counts,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_total": sum(self.skipped.values()),
            "skipped_files": self.skipped_files,
            "seconds": round(self.seconds, 2),
        }


def safe_key(relative: str) -> str:
    """A WebDataset key for a relative file path: no dots (WebDataset splits member names at
    the first one) and no slashes; ``animals/cat_01.png`` -> ``animals--cat_01``."""
    stem = relative.rsplit(".", 1)[0] if "." in Path(relative).name else relative
    parts = ["".join(c if c.isalnum() or c in "_-" else "_" for c in p) for p in stem.split("/")]
    return "--".join(p for p in parts if p) or "_"


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def _take(n: int, share: float) -> int:
    """How many of a category's ``n`` images a held-out split of this ``share`` takes."""
    if share <= 0 or n < 3:
        return 0
    return max(1, round(n * share))


def assign_splits(items: list[ImportItem], cfg: ImportConfig) -> dict[str, list[ImportItem]]:
    """Stratified, deterministic train/val/test (see the module doc); each split in key order."""
    groups: dict[Any, list[ImportItem]] = defaultdict(list)
    for item in items:
        groups[str(item.meta.get("category"))].append(item)
    out: dict[str, list[ImportItem]] = {s: [] for s in SPLITS}
    for group in groups.values():
        group.sort(key=lambda it: _rank(cfg.seed, it.key))
        n_test, n_val = _take(len(group), cfg.test), _take(len(group), cfg.val)
        out["test"] += group[:n_test]
        out["val"] += group[n_test : n_test + n_val]
        out["train"] += group[n_test + n_val :]
    return {s: sorted(v, key=lambda it: it.key) for s, v in out.items()}


# -- preparation (worker processes) ------------------------------------------------------------

_CFG: ImportConfig | None = None


def _init_worker(cfg: ImportConfig) -> None:
    global _CFG
    _CFG = cfg


def _prepare(path: Path) -> tuple[bytes, str, dict[str, Any]] | tuple[None, str, str]:
    """``(png bytes, pixel hash, info)`` or ``(None, reason, detail)``; never raises."""
    cfg = _CFG
    assert cfg is not None
    try:
        if not path.is_file():
            return None, "missing file", "not found"
        info: dict[str, Any] = {}
        image = prepare_image(
            path, cfg.image_size, cfg.aspect, cfg.min_side, cfg.min_ink, info=info
        )
        digest = hashlib.sha256(image.tobytes()).hexdigest()
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=1)
        return buf.getvalue(), digest, info
    except ImageSkip as skip:
        return None, skip.reason, skip.detail
    except Exception as err:  # a file must never stop an import; say what it was
        return None, "undecodable", f"{type(err).__name__}: {err}"


def _pool(workers: int, cfg: ImportConfig):
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    return ctx.Pool(workers, initializer=_init_worker, initargs=(cfg,))


def _prepare_all(
    items: list[ImportItem], cfg: ImportConfig, progress: bool
) -> Iterable[tuple[ImportItem, tuple]]:
    paths = [it.path for it in items]
    with make_progress(progress) as bar:
        task = bar.add_task("preparing images", total=len(items)) if bar is not None else None
        if cfg.workers <= 1 or len(items) < 64:
            _init_worker(cfg)
            results = map(_prepare, paths)
            for item, result in zip(items, results, strict=True):
                if bar is not None:
                    bar.advance(task)
                yield item, result
            return
        with _pool(min(cfg.workers, os.cpu_count() or 1), cfg) as pool:
            for item, result in zip(items, pool.imap(_prepare, paths, chunksize=16), strict=True):
                if bar is not None:
                    bar.advance(task)
                yield item, result


def _sample_fn(rows: list[tuple[ImportItem, bytes]]):
    def sample(index: int) -> dict[str, Any]:
        item, png = rows[index]
        return {
            "__key__": item.key,
            "image": Image.open(io.BytesIO(png)),
            "text": item.text,
            "meta": item.meta,
        }

    return sample


def import_items(
    items: list[ImportItem],
    out: str | Path,
    cfg: ImportConfig,
    source: dict[str, Any],
    skipped: Iterable[tuple[str, str, str]] = (),
    progress: bool = True,
) -> ImportResult:
    """Prepare, dedupe, split and shard ``items`` under ``out``; write the manifest (last) and
    ``import.json``. ``skipped`` are the source's own skips: ``(file, reason, detail)``."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # an interrupted import is never "complete"
    keys = Counter(it.key for it in items)
    dup = next((k for k, n in keys.items() if n > 1), None)
    if dup is not None:
        raise DataError(f"two source files map to the same sample key {dup!r}")
    result = ImportResult(out, {})

    def skip(file: str, reason: str, detail: str) -> None:
        result.skipped[reason] += 1
        result.skipped_files.append({"file": file, "reason": reason, "detail": detail})

    for file, reason, detail in skipped:
        skip(file, reason, detail)

    items = sorted(items, key=lambda it: it.key)
    prepared: dict[str, bytes] = {}
    seen: dict[str, str] = {}  # pixel hash -> key
    kept: list[ImportItem] = []
    for item, (png, second, third) in _prepare_all(items, cfg, progress):
        if png is None:
            skip(str(item.path), second, third)
            continue
        if cfg.dedupe and second in seen:
            skip(str(item.path), "duplicate", f"same pixels as {seen[second]}")
            continue
        seen[second] = item.key
        item.meta = {**item.meta, **third}
        prepared[item.key] = png
        kept.append(item)

    by_category: dict[str, list[ImportItem]] = defaultdict(list)
    for item in kept:
        by_category[str(item.meta.get("category"))].append(item)
    usable: list[ImportItem] = []
    for category, group in sorted(by_category.items()):
        if len(group) < cfg.min_category:
            for item in group:
                skip(str(item.path), "rare category", f"{category}: {len(group)} images")
            continue
        if cfg.max_per_category is not None and len(group) > cfg.max_per_category:
            group = sorted(group, key=lambda it: _rank(cfg.seed, it.key))
            for item in group[cfg.max_per_category :]:
                skip(str(item.path), "over category cap", f"{category}: {cfg.max_per_category}")
            group = group[: cfg.max_per_category]
        usable.extend(group)
    if not usable:
        first = f" (e.g. {result.skipped_files[0]['file']}: " if result.skipped_files else ""
        first += f"{result.skipped_files[0]['reason']})" if first else ""
        raise DataError(f"no usable images: {sum(result.skipped.values())} skipped{first}")

    splits = assign_splits(usable, cfg)
    infos = {}
    for split, members in splits.items():
        rows = [(it, prepared[it.key]) for it in members]
        infos[split] = write_split(
            out,
            split,
            len(rows),
            _sample_fn(rows),
            shard_size=cfg.shard_size,
            workers=1,  # images are prepared already; writing is cheap
            image_format="png",
            progress=progress,
        )
        result.counts[split] = dict(
            sorted(Counter(str(it.meta.get("category")) for it in members).items())
        )
    result.seconds = time.perf_counter() - start
    config = {"source": source, "import": cfg.hashed()}
    (out / IMPORT_JSON).write_text(json.dumps(result.record(), indent=2, sort_keys=True) + "\n")
    write_manifest(out, config, infos)
    return result


def format_counts(result: ImportResult, top: int | None = None) -> str:
    """A plain-text summary: samples per split, per category, skips per reason."""
    lines = [
        f"{result.total} samples in {result.seconds:.1f} s: "
        + ", ".join(f"{s} {sum(c.values())}" for s, c in result.counts.items())
    ]
    totals: Counter = Counter()
    for counts in result.counts.values():
        totals.update(counts)
    shown = totals.most_common(top)
    lines.append(f"{len(totals)} categories:")
    for category, n in shown:
        per = " / ".join(str(result.counts[s].get(category, 0)) for s in result.counts)
        lines.append(f"  {category}: {n} ({per})")
    if top is not None and len(totals) > top:
        lines.append(f"  ... {len(totals) - top} more")
    skipped = sum(result.skipped.values())
    lines.append(f"{skipped} files skipped" + (":" if skipped else ""))
    for reason, n in sorted(result.skipped.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {reason}: {n}")
    return "\n".join(lines)


# Study stages that need SynthWorld's ground-truth factors, so a real-data study does not run
# them (``study.pipeline`` leaves them out or skips them): what the study says before training.
NEEDS_FACTORS = (
    "vlm/oracle (the VLM recipe's positive control on ground-truth image tokens)",
    "analysis: counterfactual sensitivity (renders one factor changed at a time)",
    "matched (the accuracy-matched sensitivity analysis)",
)
CONTROL_LABELS = ("category", "superclass", "num_objects")  # what the control check reads


def check_study_data(root: str | Path, probe: int = 64) -> list[str]:
    """Check a real data set before a study trains on it; return the stages it will not run.

    Its train and test splits must be readable and the test split's first ``probe`` samples
    must carry the labels the control check reads (``CONTROL_LABELS``; ``data import`` writes
    them): otherwise a one-line ``DataError`` now, not after hours of pretraining.
    """
    from encoderlab.data.reader import SampleDataset, index_source

    root = Path(root)
    for split in ("train", "test"):
        index_source(root / split)  # one line if unreadable
    refs, _ = index_source(root / "test", require_text=False)
    dataset = SampleDataset(refs[:probe])
    metas = []
    for ref in dataset.refs:
        raw = dataset._payload(ref.meta)
        try:
            metas.append(json.loads(raw) if isinstance(raw, bytes) else (raw or {}))
        except ValueError:
            continue
    for label in CONTROL_LABELS:
        if not any(isinstance(m, dict) and m.get(label) is not None for m in metas):
            raise DataError(
                f"{root / 'test'}: no {label!r} label in its samples' metadata; the control "
                f"check needs {', '.join(CONTROL_LABELS)} (`encoderlab data import` writes them)"
            )
    return [f"not run: needs ground-truth factors: {stage}" for stage in NEEDS_FACTORS]
