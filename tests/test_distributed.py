"""Data-parallel correctness: equal per-rank batches when samples are unreadable, and the
training loop's tensors on the training device."""

from __future__ import annotations

import io
import multiprocessing
import tarfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn

from encoderlab.data.reader import EpochSampler, SampleDataset, collate, index_source
from encoderlab.errors import DataError
from encoderlab.train.config import TrainConfig
from encoderlab.train.distributed import DistInfo
from encoderlab.train.trainer import Trainer

N, BATCH, SEED = 24, 8, 3


def colour(i: int) -> tuple[int, int, int]:
    return (i * 10 % 256, 255 - i * 10 % 256, 7)


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour(i)).save(buf, format="PNG")
    return buf.getvalue()


def write_shard(path: Path, bad: set[int]) -> Path:
    """One shard of N samples: image i has colour(i), caption ``"i"``; ``bad`` ones are junk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for i in range(N):
            for name, data in (
                (f"{i:06d}.png", b"not a png" if i in bad else _png(i)),
                (f"{i:06d}.txt", str(i).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path.parent


def rank1_first(world: int = 2) -> int:
    """The sample rank 1 reads first in epoch 0."""
    return int(EpochSampler(N, seed=SEED).global_order()[1 % world])


def _trainer(data: Path, rank: int, world: int, tmp: Path) -> Trainer:
    refs, _ = index_source(data)
    cfg = TrainConfig(
        batch_size=BATCH, samples=BATCH * 6, precision="fp32", num_workers=0, seed=SEED
    )
    dataset = SampleDataset(refs, refill=True)
    return Trainer(nn.Linear(1, 1), dataset, collate, cfg, tmp, DistInfo(rank, world))


def _aligned(images: torch.Tensor, texts: list[str]) -> bool:
    """Each image is its caption's sample (colour(i) for caption "i")."""
    return all(
        tuple(img[:, 0, 0].tolist()) == colour(int(t)) for img, t in zip(images, texts, strict=True)
    )


def test_bad_sample_is_refilled_so_every_rank_keeps_its_batch(tmp_path: Path) -> None:
    bad = rank1_first()
    data = write_shard(tmp_path / "d" / "train-0.tar", {bad})
    for rank in range(2):
        trainer = _trainer(data, rank, 2, tmp_path / f"r{rank}")
        batches = trainer._batches(0)
        for _ in range(3):  # one epoch: 24 samples, global batch 8
            batch = next(batches)
            assert len(batch) == BATCH // 2
            assert _aligned(batch.images, batch.texts)
            assert str(bad) not in batch.texts
        # the skip is recorded on the rank that met it, with its reason
        assert len(trainer.skips) == (1 if rank == 1 else 0)
        if rank == 1:
            assert f"{bad:06d}" in trainer.skips.summary()
    # without refill (evaluation loaders) the bad sample is dropped, as before
    refs, _ = index_source(data)
    plain = collate([SampleDataset(refs)[i] for i in range(N)])
    assert len(plain) == N - 1 and len(plain.skipped) == 1


def test_too_many_bad_samples_in_a_row_is_one_line_error(tmp_path: Path) -> None:
    data = write_shard(tmp_path / "d" / "train-0.tar", set(range(N)) - {0})
    refs, _ = index_source(data)
    assert SampleDataset(refs, refill=True)[5]["key"] == "000000"  # wraps around the data set
    data = write_shard(tmp_path / "e" / "train-0.tar", set(range(N)))
    with pytest.raises(DataError, match="a batch of 0 samples instead of 8: more than 64"):
        next(_trainer(data, 0, 1, tmp_path / "r")._batches(0))


def _gather_worker(rank: int, world: int, data: Path, init: str, out: Path) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        trainer = _trainer(data, rank, world, out / f"r{rank}")
        batches = trainer._batches(0)
        rows = []
        for _ in range(3):
            batch = next(batches)
            # what CLIP's loss does with its features: an all_gather of equal-sized tensors
            pixels = batch.images[:, :, 0, 0].float()
            captions = torch.tensor([float(t) for t in batch.texts])
            got_p = [torch.empty_like(pixels) for _ in range(world)]
            got_c = [torch.empty_like(captions) for _ in range(world)]
            dist.all_gather(got_p, pixels)
            dist.all_gather(got_c, captions)
            rows.append((torch.cat(got_p), torch.cat(got_c)))
        if rank == 0:
            torch.save(rows, out / "gathered.pt")
    finally:
        dist.destroy_process_group()


def test_corrupt_sample_on_one_rank_leaves_the_gathered_batch_aligned(tmp_path: Path) -> None:
    bad = rank1_first()
    data = write_shard(tmp_path / "d" / "train-0.tar", {bad})
    ctx = multiprocessing.get_context("fork")
    init = f"file://{tmp_path / 'pg'}"
    procs = [ctx.Process(target=_gather_worker, args=(r, 2, data, init, tmp_path)) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    rows = torch.load(tmp_path / "gathered.pt")
    assert len(rows) == 3
    for pixels, captions in rows:
        assert len(pixels) == len(captions) == BATCH  # the global batch, full
        for px, c in zip(pixels, captions, strict=True):  # row k of images is row k of texts
            assert tuple(int(v) for v in px) == colour(int(c))
        assert bad not in captions.tolist()
