"""The benchmarks run, at micro size, against the library as it is today.

``--help`` (tests/test_docs.py) does not call the library, so a benchmark whose calls no
longer match the functions it times breaks unnoticed until someone needs its figures (as
``bench_vlm_step.py`` and ``bench_analysis.py`` did). Each runs here on a few items and must
print its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "smoke"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "encoderlab",
            "data",
            "synth",
            "--preset",
            "smoke",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


@pytest.mark.any_cpu_kind
def test_vlm_step_bench_runs(smoke_data: Path) -> None:
    stdout = _bench(
        "bench_vlm_step.py",
        "--preset",
        "smoke",
        "--data",
        str(smoke_data),
        "--steps",
        "1",
        "--pairs",
        "1",
    )
    assert "packed, answer positions (ours)" in stdout and "(Hugging Face)" in stdout


def test_analysis_bench_runs() -> None:
    stdout = _bench("bench_analysis.py", "--scenes", "16", "--encoders", "1", "--batch-size", "16")
    assert "1 resnet10t encoders x 16 scenes" in stdout and "total" in stdout


@pytest.mark.any_cpu_kind
def test_synthworld_bench_runs() -> None:
    stdout = _bench("bench_synthworld.py", "--n", "16", "--procs", "1")
    assert "peer: PIL PNG encode" in stdout


@pytest.mark.any_cpu_kind
def test_shards_bench_runs() -> None:
    stdout = _bench("bench_shards.py", "--num", "64", "--shard-size", "32", "--batch-size", "16")
    assert "peer: webdataset" in stdout
