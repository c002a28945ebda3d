"""keep_freed_memory: a training step's large blocks are reused instead of re-faulted."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

import pytest

from encoderlab.train.host_memory import OPT_OUT_ENV

# Backward through OpenCLIP's text embedding (49,408 x 192) allocates a fresh 38 MB gradient
# each step: above glibc's largest mmap threshold, so the system malloc maps it anew (9,265
# page faults per step); kept in the heap, it is reused. Run in a subprocess, since malloc's
# settings are process-wide.
PROBE = """
import resource, torch
from encoderlab.encoders.text import ClipTextTower, TextConfig
from encoderlab.train.host_memory import keep_freed_memory
took = keep_freed_memory()
torch.manual_seed(0)
tower = ClipTextTower(TextConfig(width=192, layers=1, heads=3), 64)
tokens = tower.tokenize(["a red fish on a blue sign"] * 64)
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tower.zero_grad(set_to_none=True)
    tower(tokens).sum().backward()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(int(took))
"""


def faults_per_step(opt_out: bool) -> tuple[bool, float]:
    env = {**os.environ, OPT_OUT_ENV: "1" if opt_out else "0"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    *counts, took = (int(x) for x in out.stdout.split())
    return bool(took), statistics.median(counts[2:])  # after the heap has grown


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_not_refaulted() -> None:
    took, kept = faults_per_step(opt_out=False)
    skipped, system = faults_per_step(opt_out=True)
    assert took and not skipped
    assert system > 9_000  # the 38 MB gradient's 9,265 pages, every step
    assert kept < 2_000
