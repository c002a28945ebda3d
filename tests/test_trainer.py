"""The shared trainer: exact resume, NaN handling, schedule, sibling diffs (on a toy task)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from encoderlab.train.checkpoint import latest_checkpoint
from encoderlab.train.config import TrainConfig
from encoderlab.train.runs import config_diff, record_sibling_diffs
from encoderlab.train.schedule import cosine, cosine_with_warmup
from encoderlab.train.trainer import Trainer, TrainingDiverged


class ToyData(Dataset):
    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "index": i}


class ToyBatch(dict):
    def __len__(self) -> int:
        return len(self["x"])


def collate(items: list[dict]) -> ToyBatch:
    return ToyBatch(
        x=torch.stack([it["x"] for it in items]),
        y=torch.stack([it["y"] for it in items]),
    )


class ToyTask(nn.Module):
    """Regression with dropout, so resume must restore the RNG to be exact."""

    def __init__(self, poison_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.Linear(16, 1))
        self.poison_at = poison_at
        self.register_buffer("ema", torch.zeros(1))

    def prepare_batch(self, batch: dict, step: int) -> dict:
        return {"x": batch["x"], "y": batch["y"], "step": step}

    def forward(self, inputs: dict) -> dict:
        loss = ((self.net(inputs["x"]) - inputs["y"]) ** 2).mean()
        if self.poison_at is not None and inputs["step"] >= self.poison_at:
            loss = loss * float("nan")
        return {"loss": loss}

    def param_groups(self, weight_decay: float) -> list[dict]:
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]

    def on_step_start(self, step, total_steps, optimizer) -> None:
        pass

    def after_backward(self, step: int) -> None:
        pass

    def on_step_end(self, step, total_steps) -> None:
        with torch.no_grad():
            self.ema.mul_(0.9).add_(self.net[0].weight.mean())


def _cfg(**kw) -> TrainConfig:
    base = dict(
        batch_size=8,
        samples=8 * 20,
        lr=1e-2,
        precision="fp32",
        num_workers=0,
        log_every=5,
        checkpoint_every=4,
        warmup_frac=0.1,
    )
    base.update(kw)
    return TrainConfig(**base)


def _state(task: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in task.state_dict().items()}


def test_resume_is_bitwise_exact(tmp_path: Path) -> None:
    full = ToyTask()
    Trainer(full, ToyData(), collate, _cfg(), tmp_path / "full", progress=False).fit()

    part = ToyTask()
    trainer = Trainer(part, ToyData(), collate, _cfg(), tmp_path / "part", progress=False)
    trainer.fit(max_steps=10)  # "killed" after step 10 (last checkpoint at 10)
    assert not trainer.finished
    resumed = ToyTask()  # a fresh process: new model, new optimizer, state from disk
    trainer2 = Trainer(resumed, ToyData(), collate, _cfg(), tmp_path / "part", progress=False)
    trainer2.fit()
    assert trainer2.finished
    a, b = _state(full), _state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_between_checkpoints_replays_from_last_one(tmp_path: Path) -> None:
    full = ToyTask()
    Trainer(full, ToyData(), collate, _cfg(), tmp_path / "full", progress=False).fit()
    part = ToyTask()
    Trainer(part, ToyData(), collate, _cfg(checkpoint_every=3), tmp_path / "p", progress=False).fit(
        max_steps=7
    )
    # fit(max_steps) checkpoints at the stop; drop that one to simulate a kill after step 7
    # whose last checkpoint was at step 6 (steps 7's work is lost and replayed).
    root = tmp_path / "p" / "checkpoints"
    assert sorted(c.name for c in root.glob("step_*")) == ["step_00000006", "step_00000007"]
    shutil.rmtree(root / "step_00000007")
    (root / "latest").write_text(json.dumps({"path": "step_00000006", "step": 6}))
    resumed = ToyTask()
    Trainer(
        resumed, ToyData(), collate, _cfg(checkpoint_every=3), tmp_path / "p", progress=False
    ).fit()
    steps = [
        json.loads(r)["step"] for r in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(set(steps)), "metrics after the checkpoint must be replaced, not doubled"
    for k, v in _state(full).items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_metrics_and_epochs(tmp_path: Path) -> None:
    cfg = _cfg(samples=8 * 60, log_every=20)
    Trainer(ToyTask(), ToyData(), collate, cfg, tmp_path, progress=False).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [20, 40, 60]
    assert rows[-1]["epoch"] == 7  # 64 samples / batch 8 = 8 steps per epoch; step 59 in epoch 7
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]  # window means: the toy regression learns


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = Trainer(ToyTask(poison_at=9), ToyData(), collate, _cfg(), tmp_path, progress=False)
    with pytest.raises(TrainingDiverged, match=r"step 9.*step_00000008"):
        trainer.fit()
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    assert ckpt is not None and ckpt.name == "step_00000008"
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))


def test_batch_not_divisible_by_world_size_is_an_error(tmp_path: Path) -> None:
    from encoderlab.errors import EncoderlabError
    from encoderlab.train.distributed import DistInfo

    with pytest.raises(EncoderlabError, match="not divisible"):
        Trainer(
            ToyTask(),
            ToyData(),
            collate,
            _cfg(batch_size=9),
            tmp_path,
            dist_info=DistInfo(rank=0, world_size=2),
        )


def test_schedules() -> None:
    assert cosine_with_warmup(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert cosine_with_warmup(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert cosine_with_warmup(55, 100, 1.0, 10) == pytest.approx(0.5)
    assert cosine_with_warmup(100, 100, 1.0, 10, final=0.1) == pytest.approx(0.1)
    assert cosine(0.04, 0.4, 0, 10) == pytest.approx(0.04)
    assert cosine(0.04, 0.4, 5, 10) == pytest.approx(0.22)
    assert cosine(0.04, 0.4, 10, 10) == pytest.approx(0.4)


def test_sibling_diffs_name_only_what_differs(tmp_path: Path) -> None:
    for name, obj in [("clip", "clip"), ("dino", "dino")]:
        (tmp_path / name).mkdir()
        cfg = {"objective": obj, "train": {"lr": 5e-4, "batch_size": 128}}
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    diffs = record_sibling_diffs(tmp_path / "clip")
    assert diffs == {"dino": {"objective": ["clip", "dino"]}}
    other = json.loads((tmp_path / "dino" / "siblings.json").read_text())
    assert other == {"clip": {"objective": ["dino", "clip"]}}
    assert config_diff({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == {"a.c": [None, 2]}


def test_throughput_counts_samples_not_the_keys_of_a_batch() -> None:
    """The VLM stages' collated batches are dicts: their logged samples/s counts rows."""
    from encoderlab.train.trainer import samples_in
    from encoderlab.vlm.data import PadCollate

    item = {"input_ids": [5, 6, 7], "labels": [5, 6, 7], "image": 0, "index": 0}
    batch = PadCollate(pad_id=0)([item] * 3)
    assert len(batch) == 5 and samples_in(batch) == 3
    assert samples_in([object()] * 4) == 4  # a reader batch: its length
