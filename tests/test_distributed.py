"""Data-parallel correctness: equal per-rank batches when samples are unreadable, and the
training loop's tensors on the training device."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml
from PIL import Image
from torch import nn

from encoderlab.config import load_preset
from encoderlab.data.reader import EpochSampler, SampleDataset, collate, index_source
from encoderlab.errors import DataError
from encoderlab.precision import NATIVE_BF16_ENV
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


# --- a study under torchrun ------------------------------------------------------------------

STAGES = ["data", "pretrain/clip", "lm", "vlm/clip", "suite/clip"]  # what suite/clip needs
DISTRIBUTED = {"pretrain/clip", "lm", "vlm/clip"}  # trained on every rank


def _preset(tmp: Path) -> Path:
    """The smoke study, smaller still: 4 pretraining steps, 2 suite items."""
    preset = load_preset("smoke")
    preset["data"].update(train=256, val=64, test=64, shard_size=128)
    preset["pretrain"].update(samples=256, checkpoint_every=2, log_every=1)
    preset["suite"].update(items=2)
    path = tmp / "smaller.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


def _study(out: Path, nproc: int) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", NATIVE_BF16_ENV: "0"}
    cmd = [sys.executable, "-m"]
    if nproc > 1:
        cmd += ["torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m"]
    cmd += ["encoderlab", "study", "run", "--preset", str(_preset(out.parent)), "--out", str(out)]
    cmd += ["--only", "suite/clip"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _losses(path: Path) -> list[float]:
    return [json.loads(r)["loss"] for r in path.read_text().splitlines()]


@pytest.mark.slow
def test_torchrun_study_matches_one_process_and_runs_each_stage_once(tmp_path: Path) -> None:
    """Two gloo ranks (fp32) give the one-process study's stages: same keys, same data, the
    same losses to float rounding, the same suite answers; single-process stages run on rank 0
    only, training stages on both, and each stage is announced once."""
    one, two = tmp_path / "one", tmp_path / "two"
    _study(one, 1)
    log = _study(two, 2)
    for name in STAGES:
        a, b = (json.loads((d / name / "stage.json").read_text()) for d in (one, two))
        assert a["hash"] == b["hash"], name
        assert b["summary"]["ranks"] == ([0, 1] if name in DISTRIBUTED else [0]), name
        assert "ranks" not in a["summary"]  # one process: nothing to record
        assert log.count(f"] {name} (new)") == 1, name  # announced by rank 0 alone
    shards = sorted((one / "data" / "shards").rglob("*.tar"))
    assert shards and all(p.read_bytes() == (two / p.relative_to(one)).read_bytes() for p in shards)
    assert not list(two.rglob("*.tmp"))  # every rank's temporaries renamed or removed
    torch.testing.assert_close(
        torch.tensor(_losses(two / "pretrain/clip/metrics.jsonl")),
        torch.tensor(_losses(one / "pretrain/clip/metrics.jsonl")),
        rtol=1e-4,
        atol=0,
    )
    for stage in ("stage1", "stage2"):
        a, b = (_losses(d / "vlm/clip" / stage / "metrics.jsonl") for d in (one, two))
        torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-3, atol=0)
    a, b = (json.loads((d / "suite/clip/results.json").read_text()) for d in (one, two))
    for bench, entry in a["benchmarks"].items():
        assert b["benchmarks"][bench]["score"] == pytest.approx(entry["score"], abs=1e-9), bench


def test_feature_cache_is_the_towers_features_whichever_rank_encodes_them(tmp_path: Path) -> None:
    from encoderlab.encoders.vit import EncoderConfig
    from encoderlab.train.pretrain import load_encoder
    from encoderlab.vlm.checkpoint import write_encoder_run
    from encoderlab.vlm.pipeline import shared_features
    from encoderlab.vlm.vision import VisionTower, encode_images

    run = write_encoder_run(
        EncoderConfig(size="micro", image_size=32, patch_size=8), tmp_path / "e"
    )
    tower = VisionTower([load_encoder(run)], -2)
    gen = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=gen) for _ in range(5)
    ]
    want = encode_images(tower, images, batch_size=2, progress=False)
    one = shared_features(tower, images, tmp_path / "one.npy", DistInfo(), False, batch_size=2)
    assert torch.equal(one, want)  # one process: the same batches, the same bits
    # two ranks (no process group: their barriers are no-ops, so they can take turns here)
    path = tmp_path / "two.npy"
    for rank in (0, 1):
        two = shared_features(tower, images, path, DistInfo(rank, 2), False, batch_size=2)
    torch.testing.assert_close(two, want, rtol=1e-5, atol=1e-5)
    assert np.load(path, mmap_mode="r").shape == tuple(want.shape)  # on disk, mapped
