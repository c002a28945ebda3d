"""Checkpoints under faults: damaged or incomplete ones are skipped in one line, a full disk
or an unwritable directory is one line and loses nothing, and every file is readable per the
umask (on the shared trainer's toy task; bench/faults.py repeats these on real pretraining)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from encoderlab import files
from encoderlab.files import OutputError, save_weights, write_json
from encoderlab.train.checkpoint import (
    CheckpointError,
    checkpoint_dirs,
    latest_checkpoint,
    verify_checkpoint,
)
from encoderlab.train.trainer import Trainer
from test_trainer import ToyData, ToyTask, _cfg, _state, collate


def _trainer(run_dir: Path, task: ToyTask | None = None) -> Trainer:
    return Trainer(task or ToyTask(), ToyData(), collate, _cfg(), run_dir, progress=False)


@pytest.fixture(scope="module")
def full_state(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The end state of an uninterrupted run (20 steps, checkpoints every 4)."""
    task = ToyTask()
    _trainer(tmp_path_factory.mktemp("full"), task).fit()
    return _state(task)


def _cut(run_dir: Path, steps: int = 12) -> Path:
    """A run interrupted after ``steps`` steps; returns its checkpoint root."""
    _trainer(run_dir).fit(max_steps=steps)
    return run_dir / "checkpoints"


def _resume_equals(run_dir: Path, full: dict[str, torch.Tensor]) -> None:
    task = ToyTask()
    trainer = _trainer(run_dir, task)
    trainer.fit()
    assert trainer.finished
    for k, v in full.items():
        assert torch.equal(v, task.state_dict()[k]), k


def _flip_byte(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: _flip_byte(d / "model.safetensors"), id="bit-flip"),
        pytest.param(lambda d: _flip_byte(d / "model.safetensors", 3), id="bad-header"),
        pytest.param(
            lambda d: (d / "optimizer.safetensors").write_bytes(
                (d / "optimizer.safetensors").read_bytes()[:100]
            ),
            id="truncated",
        ),
        pytest.param(lambda d: (d / "rng.safetensors").write_bytes(b""), id="zero-bytes"),
        pytest.param(lambda d: (d / "state.json").unlink(), id="missing-file"),
        pytest.param(lambda d: (d / "manifest.json").write_text("{"), id="bad-manifest"),
        pytest.param(
            lambda d: (d / "manifest.json").write_text(
                (d / "manifest.json").read_text().replace('"step": 12', '"step": 13')
            ),
            id="manifest-of-another-step",
        ),
    ],
)
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(
    damage, full_state: dict[str, torch.Tensor], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _cut(tmp_path)  # keeps the 2 newest checkpoints
    assert [d.name for d in checkpoint_dirs(root)] == ["step_00000012", "step_00000008"]
    damage(root / "step_00000012")
    assert verify_checkpoint(root / "step_00000012") is not None
    assert latest_checkpoint(root) == root / "step_00000008"
    _resume_equals(tmp_path, full_state)  # replays 9..12 from step 8: bitwise the same end
    warning = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(warning) == 1, warning
    assert "step_00000012" in warning[0] and "resuming from step_00000008" in warning[0]
    # the damaged one was superseded by the replay and moved aside, not deleted
    assert (root / "damaged" / "step_00000012").is_dir()
    assert verify_checkpoint(root / "step_00000020") is None


def test_no_intact_checkpoint_is_one_line_and_deletes_nothing(tmp_path: Path) -> None:
    root = _cut(tmp_path)
    for d in checkpoint_dirs(root):
        _flip_byte(d / "model.safetensors")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError) as err:
        _trainer(tmp_path).fit()
    message = str(err.value)
    assert "\n" not in message and "no intact checkpoint" in message
    assert "step_00000012" in message and "step_00000008" in message
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_a_checkpoint_from_before_manifests_still_resumes(
    full_state: dict[str, torch.Tensor], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _cut(tmp_path)
    for d in checkpoint_dirs(root):
        (d / "manifest.json").unlink()
    assert latest_checkpoint(root) == root / "step_00000012"
    _resume_equals(tmp_path, full_state)
    notice = [line for line in capsys.readouterr().err.splitlines() if "manifest" in line]
    assert len(notice) == 1 and "step_00000012" in notice[0], notice


def _fill_disk_after(monkeypatch: pytest.MonkeyPatch, writes: int, code: int = errno.ENOSPC):
    """Make the ``writes``-th write from now fail half-way with ``code`` (a full disk)."""
    real = files._write_stream
    calls = {"n": 0}

    def write(f, data) -> None:
        calls["n"] += 1
        if calls["n"] >= writes:
            view = memoryview(data).cast("B")
            f.write(view[: len(view) // 2])
            raise OSError(code, os.strerror(code))
        real(f, data)

    monkeypatch.setattr(files, "_write_stream", write)
    return calls


@pytest.mark.parametrize("nth", [1, 2, 4, 5])  # model, optimizer, state.json, manifest
def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_one(
    nth: int,
    full_state: dict[str, torch.Tensor],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _cut(tmp_path, 8)
    kept = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "step_" in str(p)}
    _fill_disk_after(monkeypatch, nth)
    with pytest.raises(OutputError) as err:
        _trainer(tmp_path).fit()
    message = str(err.value)
    assert "\n" not in message
    assert str(root / "step_00000012") in message and "no space left on device" in message
    assert "needs " in message and " free" in message and "kept the last checkpoint" in message
    assert not list(root.glob(".*tmp")) and not list(root.rglob(".*.tmp"))
    assert [d.name for d in checkpoint_dirs(root)] == ["step_00000008", "step_00000004"]
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "step_" in str(p)} == kept
    monkeypatch.undo()  # space freed: the same command resumes and ends bitwise equal
    _resume_equals(tmp_path, full_state)


def test_an_unwritable_checkpoint_directory_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _cut(tmp_path, 8)
    _fill_disk_after(monkeypatch, 1, errno.EROFS)
    with pytest.raises(OutputError, match="read-only file system") as err:
        _trainer(tmp_path).fit()
    assert "\n" not in str(err.value) and str(root / "step_00000012") in str(err.value)
    assert [d.name for d in checkpoint_dirs(root)] == ["step_00000008", "step_00000004"]


def test_a_killed_save_leaves_a_temporary_directory_that_the_next_save_removes(
    full_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    root = _cut(tmp_path, 8)
    partial = root / ".step_00000012.tmp"  # what kill -9 during a save leaves
    shutil.copytree(root / "step_00000008", partial)
    (partial / "manifest.json").unlink()
    pointer = root / ".latest.4242.tmp"  # or, killed while replacing `latest`
    pointer.write_text('{"path": "step_0')
    _resume_equals(tmp_path, full_state)
    assert not partial.exists() and not pointer.exists()


def test_write_bytes_on_a_full_disk_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.json"
    write_json({"a": 1}, path)
    _fill_disk_after(monkeypatch, 1)
    with pytest.raises(OutputError, match=r"x\.json: no space left on device \(needs"):
        write_json({"a": 2}, path)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_and_checkpoints_follow_the_umask(umask: int, tmp_path: Path) -> None:
    old = os.umask(umask)
    try:
        _trainer(tmp_path).fit(max_steps=4)
        save_weights({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in written)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in written}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)
