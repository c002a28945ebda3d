"""One study per directory: a second ``study run`` refuses in one line naming the running
process; a lock left by a killed process does not block."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from encoderlab.study.cache import LOCK, StudyLocked, study_lock

EXECUTABLE = Path(sys.executable).parent / "encoderlab"
HOLD = """
import sys, time
from pathlib import Path
from encoderlab.study.cache import study_lock
with study_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def _holder(directory: Path) -> subprocess.Popen:
    """A process that holds ``directory``'s study lock until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_study_run_on_the_same_directory_refuses_naming_the_pid(tmp_path: Path) -> None:
    out = tmp_path / "study"
    holder = _holder(out)
    try:
        start = time.monotonic()
        proc = subprocess.run(
            [str(EXECUTABLE), "study", "run", "--preset", "smoke", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert f"pid {holder.pid}" in lines[0] and str(out) in lines[0]
        assert time.monotonic() - start < 60, "it must refuse before running any stage"
        assert sorted(p.name for p in out.iterdir()) == [LOCK], "nothing was written"
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    with pytest.raises(StudyLocked, match=f"pid {holder.pid}"), study_lock(tmp_path):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK).read_text().strip() == str(holder.pid)  # the stale pid file stays
    with study_lock(tmp_path) as path:
        assert path.read_text().strip() == str(os.getpid())
