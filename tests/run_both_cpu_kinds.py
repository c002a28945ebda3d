"""Run the test suite as this CPU is and as the other kind of CPU, side by side.

``precision: auto`` trains in bf16 on CPUs with native bf16 (AVX-512-BF16, AMX) and in fp32
elsewhere, so a change can pass on one kind and fail on the other. ``make test`` therefore runs
the suite twice: once as the machine is and once with ``--native-bf16`` set to the other answer
(tests/conftest.py). The tests run one thread each, so the two passes share a 2-core machine
without slowing each other much; each gets its own temporary directory and log, and the logs are
printed whole when both are done. Tests marked ``any_cpu_kind`` are split between the two
passes (``--any-kind-share``), each running once. Extra arguments go to both pytest runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from encoderlab.precision import cpu_has_native_bf16

SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?)")


def _counts(log: str) -> dict[str, int]:
    """pytest's closing counts (``3 passed, 1 failed, 2 skipped``) from a ``-q`` log."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    lines = [line for line in log.splitlines() if " in " in line and SUMMARY.search(line)]
    for number, word in SUMMARY.findall(lines[-1] if lines else ""):
        counts[word.rstrip("s") if word.startswith("error") else word] += int(number)
    return counts


def main(argv: list[str]) -> int:
    native = cpu_has_native_bf16()
    passes = {
        f"as this CPU is ({'native bf16' if native else 'no native bf16'})": [
            "--any-kind-share",
            "0",
        ],
        f"as the other kind ({'no native bf16' if native else 'native bf16'})": [
            "--native-bf16",
            "no" if native else "yes",
            "--any-kind-share",
            "1",
        ],
    }
    with tempfile.TemporaryDirectory(prefix="encoderlab-tests-") as tmp:
        running = []
        for i, (name, extra) in enumerate(passes.items()):
            log = Path(tmp) / f"pass{i}.log"
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            cmd += [f"--basetemp={tmp}/base{i}", *extra]
            with log.open("w") as out:
                proc = subprocess.Popen([*cmd, *argv], stdout=out, stderr=subprocess.STDOUT)
            running.append((name, log, proc))
        codes, total = [], {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
        for name, log, proc in running:
            code = proc.wait()
            text = log.read_text()
            print(f"===== tests {name} (exit {code}) =====")
            print(text, flush=True)
            codes.append(code)
            for key, value in _counts(text).items():
                total[key] += value
    failed = total["failed"] + total["error"]
    print("both CPU kinds, together:")
    print(f"total: {total['passed']} passed, {failed} failed, {total['skipped']} skipped")
    return next((code for code in codes if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
