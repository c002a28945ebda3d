"""The one reader for synthetic and real data: indexed WebDataset shards, random access.

Any DataComp / img2dataset-style shard set (``KEY.jpg|jpeg|png|webp`` + ``KEY.txt`` + optional
``KEY.json``) and any image folder with a labels CSV (``encoderlab.data.folder``) become one
list of ``SampleRef`` (where each sample's bytes live), read by one map-style ``SampleDataset``.

Why an index and random access instead of webdataset's streaming pipeline: a streaming reader
splits work by shard, so it cannot shuffle exactly per epoch, cannot resume at an exact sample,
and cannot split an epoch exactly across DDP ranks and dataloader workers (uneven shards give
gaps or duplicates). With an index of (tar, member offset, size) per sample, ``EpochSampler``
gives every sample exactly once per epoch, in a seeded order, with global batches that do not
depend on the world size; each sample is then one seek+read.

Bad input never hangs or crashes a run: unreadable samples are skipped and recorded in a
``SkipReport`` (file, key, reason); see ``ShardLoader``.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler
from webdataset.tariterators import base_plus_ext

from encoderlab.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_REFILL",
    "Batch",
    "Blob",
    "EpochSampler",
    "SampleDataset",
    "SampleRef",
    "ShardLoader",
    "ShardScan",
    "SkipRecord",
    "SkipReport",
    "collate",
    "index_shard",
    "index_source",
    "make_loader",
]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # preference order if a key has several
INDEX_VERSION = 1
INDEX_SUFFIX = ".idx.json"
MAX_OPEN_FILES = 64  # per process; shard sets can have thousands of shards
MAX_REFILL = 64  # a refilling SampleDataset tries this many substitutes for a bad sample
Source = str | Path | Sequence[str | Path]


class Blob(NamedTuple):
    """Where a payload lives: ``size == -1`` means the whole file (image folders)."""

    path: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class SampleRef:
    """One indexed sample. ``text``/``meta`` are a ``Blob`` to read, an inline value, or None."""

    file: str
    key: str
    image: Blob
    text: Blob | str | None
    meta: Blob | dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SkipRecord:
    """Why a sample was skipped; ``key`` is None for damage that hides the keys (a cut header)."""

    file: str
    key: str | None
    reason: str


@dataclass
class SkipReport:
    """Skipped samples of a data source, each counted once however often it is met."""

    records: dict[tuple[str, str], SkipRecord] = field(default_factory=dict)

    def add(self, record: SkipRecord) -> None:
        # A sample is identified by (file, key); keyless damage by (file, reason).
        ident = record.key if record.key is not None else f"\0{record.reason}"
        self.records.setdefault((record.file, ident), record)

    def extend(self, records: Sequence[SkipRecord]) -> None:
        for record in records:
            self.add(record)

    @property
    def num_samples(self) -> int:
        """Skipped samples with a known key (file-level damage lines are not counted)."""
        return sum(1 for r in self.records.values() if r.key is not None)

    def __len__(self) -> int:
        return len(self.records)

    def summary(self) -> str:
        """``N samples skipped:`` then one line per record (file, key, reason)."""
        n = self.num_samples
        lines = [f"{n} sample{'' if n == 1 else 's'} skipped" + (":" if self.records else "")]
        for r in self.records.values():
            where = f"{r.file} key {r.key}" if r.key is not None else r.file
            lines.append(f"  {where}: {r.reason}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Index


@dataclass
class ShardScan:
    """Members of one tar by key, as found by scanning its headers (no decoding)."""

    path: str
    samples: dict[str, dict[str, tuple[int, int]]]  # key -> ext -> (data offset, size)
    cut: list[str]  # keys with a member cut off by truncation
    problem: str | None  # damage after which nothing is readable


def _scan_tar(path: Path) -> ShardScan:
    size = path.stat().st_size
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    cut: list[str] = []
    problem: str | None = None
    try:
        with tarfile.open(path, "r:") as tar:
            while True:
                try:
                    info = tar.next()
                except tarfile.ReadError as err:
                    problem = f"unreadable tar header at byte {tar.offset} ({err}), rest skipped"
                    break
                if info is None:
                    break
                if not info.isfile():
                    continue
                key, ext = base_plus_ext(info.name)
                if key is None:
                    continue
                if info.offset_data + info.size > size:
                    samples.setdefault(key, {})
                    cut.append(key)
                    problem = f"truncated tar: file ends at byte {size}, rest unreadable"
                    break
                samples.setdefault(key, {})[ext.lower()] = (info.offset_data, info.size)
            if problem is None:
                # tarfile stops silently at a cut or corrupt header; a sound archive has only
                # zero padding after its last member.
                with open(path, "rb") as f:
                    f.seek(tar.offset)
                    if f.read(65536).strip(b"\0"):
                        problem = f"unreadable tar header at byte {tar.offset}, rest skipped"
    except (tarfile.TarError, OSError) as err:
        problem = f"not a readable tar file ({err})"
    return ShardScan(str(path), samples, cut, problem)


def index_shard(path: str | Path) -> ShardScan:
    """Scan a shard's headers, or load the cached scan ``PATH.idx.json`` if still valid.

    The cache is keyed by the tar's size and mtime; a read-only directory just means the scan
    stays in memory.
    """
    path = Path(path)
    stat = path.stat()
    cache = path.with_name(path.name + INDEX_SUFFIX)
    stamp = {"version": INDEX_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        data = json.loads(cache.read_text())
        if all(data.get(k) == v for k, v in stamp.items()):
            samples = {k: {e: (o, s) for e, (o, s) in m.items()} for k, m in data["samples"]}
            return ShardScan(str(path), samples, data["cut"], data["problem"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    scan = _scan_tar(path)
    payload = {
        **stamp,
        "samples": list(scan.samples.items()),
        "cut": scan.cut,
        "problem": scan.problem,
    }
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")  # ranks may race: unique tmp
    try:
        tmp.write_text(json.dumps(payload, separators=(",", ":")))
        os.replace(tmp, cache)
    except OSError:
        tmp.unlink(missing_ok=True)
    return scan


def _refs_from_scan(
    scan: ShardScan, require_text: bool
) -> tuple[list[SampleRef], list[SkipRecord]]:
    refs: list[SampleRef] = []
    skips: list[SkipRecord] = []
    cut = set(scan.cut)
    for key, members in scan.samples.items():
        image_ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
        if key in cut:
            skips.append(SkipRecord(scan.path, key, "cut off by truncation"))
        elif image_ext is None:
            skips.append(SkipRecord(scan.path, key, "no image (.jpg/.jpeg/.png/.webp)"))
        elif require_text and "txt" not in members:
            skips.append(SkipRecord(scan.path, key, "no .txt"))
        else:
            text = Blob(scan.path, *members["txt"]) if "txt" in members else None
            meta = Blob(scan.path, *members["json"]) if "json" in members else None
            refs.append(SampleRef(scan.path, key, Blob(scan.path, *members[image_ext]), text, meta))
    if scan.problem is not None:
        skips.append(SkipRecord(scan.path, None, scan.problem))
    return refs, skips


def _shard_paths(path: Path) -> list[Path]:
    from encoderlab.data.shards import MANIFEST_NAME  # shards imports this module

    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    if (path / MANIFEST_NAME).is_file():
        # Reading a data-set root recursively would mix its splits (train with val).
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise DataError(f"{path}: a data set with splits {', '.join(splits)}; pass one split dir")
    shards = sorted(p for p in path.rglob("*.tar") if p.is_file())
    if not shards:
        raise DataError(f"{path}: no .tar shards found (for an image folder, pass its CSV)")
    return shards


def index_source(
    source: Source, require_text: bool = True
) -> tuple[list[SampleRef], list[SkipRecord]]:
    """Index a shard directory (recursively), ``.tar`` files, or a labels ``.csv`` (or a list).

    Returns the readable samples in a fixed order (sources in the order given, shards sorted by
    path, members in tar order) and the samples skipped at index time.
    """
    items = [source] if isinstance(source, str | Path) else list(source)
    if not items:
        raise DataError("no data source given")
    refs: list[SampleRef] = []
    skips: list[SkipRecord] = []
    for item in items:
        path = Path(item)
        if path.suffix.lower() == ".csv":
            from encoderlab.data.folder import index_folder  # builds on this module (and pandas)

            folder_refs, folder_skips = index_folder(path, require_text=require_text)
            refs.extend(folder_refs)
            skips.extend(folder_skips)
            continue
        for shard in _shard_paths(path):
            shard_refs, shard_skips = _refs_from_scan(index_shard(shard), require_text)
            refs.extend(shard_refs)
            skips.extend(shard_skips)
    if not refs:
        names = ", ".join(str(i) for i in items)
        first = f"; first: {skips[0].key or skips[0].file}: {skips[0].reason}" if skips else ""
        raise DataError(f"{names}: no readable samples ({len(skips)} skipped{first})")
    return refs, skips


# ---------------------------------------------------------------------------------------------
# Dataset


class _Files:
    """Open files of this process (LRU-bounded); rebuilt after a fork so no offset is shared."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.files: OrderedDict[str, io.BufferedReader] = OrderedDict()

    def read(self, blob: Blob) -> bytes:
        if blob.size < 0:
            with open(blob.path, "rb") as f:
                return f.read()
        if self.pid != os.getpid():
            self.pid, self.files = os.getpid(), OrderedDict()
        f = self.files.get(blob.path)
        if f is None:
            f = self.files[blob.path] = open(blob.path, "rb")  # noqa: SIM115 - kept open
            if len(self.files) > MAX_OPEN_FILES:
                self.files.popitem(last=False)[1].close()
        else:
            self.files.move_to_end(blob.path)
        f.seek(blob.offset)
        data = f.read(blob.size)
        if len(data) != blob.size:
            raise OSError(f"short read at byte {blob.offset}")
        return data


def _image_to_tensor(image: Image.Image) -> torch.Tensor:
    # Same as torchvision's pil_to_tensor, without importing torchvision (seconds per worker).
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class SampleDataset(Dataset):
    """Map-style dataset over ``SampleRef``s: item ``i`` is decoded from its bytes on demand.

    An item is a dict with ``image`` (``uint8 [3,H,W]`` RGB; with ``image_size`` resized like
    CLIP/timm eval: centre crop to the aspect ratio, then bicubic resize), ``text``, ``meta``,
    ``key``, ``index``; or ``{"index": i, "skip": SkipRecord}`` if it cannot be decoded.

    With ``refill=True`` (training) an undecodable sample is replaced by the next readable one
    (``i+1, i+2, ...`` modulo the data set, at most ``MAX_REFILL`` tries), its skip records in
    the item's ``refilled``: every batch keeps its size, as webdataset's and OpenCLIP's
    streaming loaders keep theirs by drawing the next sample of the stream. Ranks under DDP
    must hold equal batches (CLIP gathers features rank by rank, DINO's centre divides by the
    global count), and the substitute depends on the index only, so the global batch is the
    same for any world size.
    """

    def __init__(
        self,
        refs: list[SampleRef],
        image_size: int | tuple[int, int] | None = None,
        refill: bool = False,
    ):
        self.refs = refs
        self.refill = refill
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = image_size  # (height, width)
        self._files = _Files()

    def __len__(self) -> int:
        return len(self.refs)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = None  # open handles do not travel to worker processes
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._files = _Files()

    def _payload(self, value: Blob | Any) -> Any:
        return self._files.read(value) if isinstance(value, Blob) else value

    def caption(self, index: int) -> str:
        """The text of sample ``index``, without decoding its image ("" if unreadable)."""
        try:
            text = self._payload(self.refs[index].text)
        except OSError:
            return ""
        return text.decode("utf-8", "replace").strip() if isinstance(text, bytes) else text or ""

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self._decode(index)
        if not self.refill or "skip" not in item:
            return item
        refilled = [item["skip"]]
        for k in range(1, min(MAX_REFILL, len(self.refs))):
            item = self._decode((index + k) % len(self.refs))
            if "skip" not in item:
                return {**item, "refilled": refilled}
            refilled.append(item["skip"])
        return {"index": index, "skip": refilled[0], "refilled": refilled[1:]}

    def _decode(self, index: int) -> dict[str, Any]:
        ref = self.refs[index]
        try:
            data = self._payload(ref.image)
        except OSError as err:
            return {"index": index, "skip": SkipRecord(ref.file, ref.key, f"unreadable ({err})")}
        try:
            with Image.open(io.BytesIO(data)) as img:
                image = img.convert("RGB")
            if self.image_size is not None and image.size != self.image_size[::-1]:
                image = ImageOps.fit(image, self.image_size[::-1], Image.Resampling.BICUBIC)
        except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError...)
            if isinstance(err, UnidentifiedImageError):
                reason = "undecodable image (unknown format)"  # its message is a BytesIO repr
            else:
                reason = f"undecodable image ({type(err).__name__}: {err})"
            return {"index": index, "skip": SkipRecord(ref.file, ref.key, reason)}
        try:
            text = self._payload(ref.text)
            text = text.decode("utf-8").strip() if isinstance(text, bytes) else (text or "")
            meta = self._payload(ref.meta)
            meta = json.loads(meta) if isinstance(meta, bytes) else (meta or {})
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            reason = f"bad .txt/.json ({type(err).__name__}: {err})"
            return {"index": index, "skip": SkipRecord(ref.file, ref.key, reason)}
        return {
            "image": _image_to_tensor(image),
            "text": text,
            "meta": meta,
            "key": ref.key,
            "index": index,
        }


@dataclass
class Batch:
    """A collated batch; ``skipped`` carries decode-time skips back from worker processes."""

    images: torch.Tensor  # uint8 [B,3,H,W]
    texts: list[str]
    metas: list[dict[str, Any]]
    keys: list[str]
    indices: torch.Tensor  # int64 [B], global sample indices
    skipped: list[SkipRecord]
    error: str | None = None  # a whole-batch user error, raised as DataError in the main process

    def __len__(self) -> int:
        return len(self.keys)


def collate(items: list[dict[str, Any]]) -> Batch:
    """Stack images into one ``uint8`` tensor; drop undecodable items, keeping their records."""
    good = [it for it in items if "skip" not in it]
    skipped = [it["skip"] for it in items if "skip" in it]
    skipped += [r for it in items for r in it.get("refilled", ())]  # replaced (SampleDataset)
    first_of_shape = {}
    for it in good:
        first_of_shape.setdefault(tuple(it["image"].shape[1:]), it["key"])
    error = None
    if len(first_of_shape) > 1:
        # Raised in the main process (ShardLoader) so the user sees one line, not a worker trace.
        (shape_a, key_a), (shape_b, key_b) = list(first_of_shape.items())[:2]
        error = (
            f"images of different sizes in one batch ({key_a}: {shape_a}, {key_b}: {shape_b});"
            " pass image_size"
        )
        good = []
    images = torch.stack([it["image"] for it in good]) if good else torch.empty(0, 3, 0, 0)
    return Batch(
        images=images.to(torch.uint8),
        texts=[it["text"] for it in good],
        metas=[it["meta"] for it in good],
        keys=[it["key"] for it in good],
        indices=torch.tensor([it["index"] for it in good], dtype=torch.int64),
        skipped=skipped,
        error=error,
    )


# ---------------------------------------------------------------------------------------------
# Sampling and loading


class EpochSampler(Sampler[int]):
    """Exact, deterministic per-epoch order over all samples, split across ranks by stride.

    The global order is a permutation seeded by ``(seed, epoch)`` (or ``0..n-1`` when
    ``shuffle=False``). Rank ``r`` of ``W`` takes global positions ``start+r, start+r+W, ...``,
    so with per-rank batch ``b`` the union of all ranks' ``k``-th batches is global positions
    ``[start + k*W*b, start + (k+1)*W*b)``: a global batch is the same set of samples for any
    world size of the same global batch size. Each sample comes once per epoch across ranks; an
    uneven tail goes to the lower ranks (no padding, so ranks may differ by one sample).
    ``start`` skips the first ``start`` global positions, to resume mid-epoch.
    """

    def __init__(
        self,
        num_samples: int,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        shuffle: bool = True,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world {world_size}")
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.set_epoch(epoch, start)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Switch to ``epoch``, beginning at global position ``start`` (0 unless resuming)."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start {start} outside [0, {self.num_samples}]")
        self.epoch = epoch
        self.start = start

    def global_order(self) -> np.ndarray:
        """All sample indices of this epoch, in global order."""
        if not self.shuffle:
            return np.arange(self.num_samples, dtype=np.int64)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()[self.start + self.rank :: self.world_size]
        return iter(order.tolist())

    def __len__(self) -> int:
        return max(0, -(-(self.num_samples - self.start - self.rank) // self.world_size))


class ShardLoader:
    """Iterates ``Batch``es of a ``DataLoader`` and gathers every skip into ``skips``.

    Empty batches (all items undecodable) are not yielded; other batches may be smaller than
    ``batch_size`` when items were dropped. Call ``set_epoch`` before each epoch.
    """

    def __init__(self, loader: DataLoader, sampler: EpochSampler, skips: SkipReport):
        self.loader = loader
        self.sampler = sampler
        self.skips = skips

    @property
    def dataset(self) -> SampleDataset:
        return self.loader.dataset

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.sampler.set_epoch(epoch, start)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            self.skips.extend(batch.skipped)
            if batch.error is not None:
                raise DataError(batch.error)
            if len(batch):
                yield batch


def make_loader(
    source: Source,
    batch_size: int,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    start: int = 0,
    image_size: int | tuple[int, int] | None = None,
    shuffle: bool = True,
    require_text: bool = True,
    drop_last: bool = False,
) -> ShardLoader:
    """Index ``source`` and return a ``ShardLoader`` for this rank.

    ``batch_size`` is per rank; ``start`` is a global sample position (resume after ``k`` steps
    with ``start = k * batch_size * world_size``). ``loader.skips.summary()`` reports skipped
    samples (index-time ones at once, decode-time ones as they are met). Typical use::

        loader = make_loader("data/train", 128, seed=0, rank=r, world_size=w, num_workers=2)
        for epoch in range(epochs):
            loader.set_epoch(epoch)  # or set_epoch(epoch, start=...) when resuming
            for batch in loader:
                ...  # batch.images uint8 [B,3,H,W], batch.texts, batch.metas, batch.indices
        print(loader.skips.summary())
    """
    refs, index_skips = index_source(source, require_text=require_text)
    skips = SkipReport()
    skips.extend(index_skips)
    sampler = EpochSampler(len(refs), seed, epoch, rank, world_size, start, shuffle)
    loader = DataLoader(
        SampleDataset(refs, image_size),
        batch_sampler=BatchSampler(sampler, batch_size, drop_last),
        num_workers=num_workers,
        collate_fn=collate,
        persistent_workers=num_workers > 0,
    )
    return ShardLoader(loader, sampler, skips)
