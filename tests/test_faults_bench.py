"""The fault-injection bench's fast cases: one injection of each cheap kind survives, nothing is
lost, and the bench prints its table (bench/faults.py runs every kind, many times)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "faults.py"


def _bench(*args: str, timeout: int = 420) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=timeout
    )


def test_bench_help_names_every_fault_kind() -> None:
    proc = _bench("--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    for kind in ("kill-pretrain", "kill-between-stages", "full-disk", "malformed-labels-csv"):
        assert kind in " ".join(proc.stdout.replace("-\n", "-").split())  # argparse wraps
    bad = _bench("--kinds", "no-such-fault", timeout=120)
    assert bad.returncode == 2 and "unknown fault kind 'no-such-fault'" in bad.stderr


def test_one_injection_of_each_fast_fault_survives_with_nothing_lost(tmp_path: Path) -> None:
    kinds = [
        "kill-pretrain",
        "kill-checkpoint-write",
        "corrupted-checkpoint",
        "full-disk",
        "zero-byte-shard",
        "invalid-utf8-caption",
        "nan-loss",
        "malformed-preset-yaml",
        "malformed-labels-csv",
    ]
    proc = _bench(
        "--trials", "1", "--seed", "3", "--kinds", ",".join(kinds), "--work", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    total = re.search(
        r"\| \*\*total\*\* \| \*\*(\d+)\*\* \| \*\*(\d+)\*\* \| \| \*\*(\d+)\*\*", proc.stdout
    )
    assert total is not None, proc.stdout[-3000:]
    injected, survived, lost = map(int, total.groups())
    assert injected == survived == len(kinds) and lost == 0
    for kind in kinds:
        assert f"| {kind} | 1 | 1 |" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
