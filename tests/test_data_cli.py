"""`encoderlab data ...` end to end on a small SynthWorld, and the world's determinism."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from encoderlab.data.shards import read_manifest
from encoderlab.data.synth import DataConfig, is_current, synthesize
from encoderlab.data.synthworld import WorldConfig

SMALL = DataConfig(train=96, val=32, test=32, shard_size=64, workers=2)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.tar"))
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = synthesize(WorldConfig(seed=1), SMALL, tmp_path / "a", progress=False)
    b = synthesize(
        WorldConfig(seed=1), SMALL.model_copy(update={"workers": 1}), tmp_path / "b", progress=False
    )
    c = synthesize(WorldConfig(seed=2), SMALL, tmp_path / "c", progress=False)
    da, db, dc = _digests(a), _digests(b), _digests(c)
    assert list(da) == [
        "test/test-00000.tar",
        "train/train-00000.tar",
        "train/train-00001.tar",
        "val/val-00000.tar",
    ]
    assert da == db
    assert all(da[k] != dc[k] for k in da)
    manifest = read_manifest(a)
    assert {k: v.num_samples for k, v in manifest.splits.items()} == {
        "train": 96,
        "val": 32,
        "test": 32,
    }
    assert is_current(a, WorldConfig(seed=1), SMALL)
    assert not is_current(a, WorldConfig(seed=1, text_prob=0.2), SMALL)


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "encoderlab", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_cli_synth_preview_stats(tmp_path: Path) -> None:
    out = tmp_path / "world"
    done = _cli("data", "synth", "--preset", "smoke", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "wrote 1536 samples" in done.stderr
    again = _cli("data", "synth", "--preset", "smoke", "--out", str(out), "--quiet")
    assert "already up to date" in again.stderr
    prev = _cli("data", "preview", str(out), "--n", "8")
    assert prev.returncode == 0 and (out / "preview.png").stat().st_size > 1000
    stats = _cli("data", "stats", str(out), "--split", "val")
    assert stats.returncode == 0
    assert "val: 256 samples" in stats.stdout + stats.stderr
    assert "category" in stats.stdout + stats.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("data", "synth", "--preset", "huge", "--out", "/tmp/x"), "unknown preset 'huge'"),
        (("data", "stats", "/nonexistent/world"), "/nonexistent/world"),
        (("data", "preview", "/nonexistent/world"), "/nonexistent/world"),
    ],
)
def test_cli_bad_input_is_one_line(args: tuple[str, ...], needle: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
