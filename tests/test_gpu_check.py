"""bench/gpu_check.sh, as far as a CPU can check it: the shell script parses, and its Python
part runs every step at micro size (pretraining with FLOPs, a random-init Qwen2 VLM, letter
scoring, the loss-curve comparison)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shell_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_check.sh")]).returncode == 0


def test_curve_comparison_tolerates_bf16_rounding_not_drift() -> None:
    check = _module().compare_curves
    cpu = [2.08, 2.05, 1.98, 1.90]
    assert check([v * 1.01 for v in cpu], cpu)["ok"]  # bf16 rounding: ~1%
    assert not check([2.08, 2.05, 2.30, 2.40], cpu)["ok"]  # a different trajectory
    assert not check(cpu[:3], cpu)["ok"]
    assert not check([float("nan"), *cpu[1:]], cpu)["ok"]


def test_every_part_runs_at_micro_size(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _module().main(["--micro", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for part in ("pretrain clip:", "pretrain dino:", "vlm: random-init Qwen2", "suite (letter"):
        assert part in out, part
    assert "GFLOP/sample" in out and "loss curve, micro CLIP, cpu vs cpu fp32: OK" in out
