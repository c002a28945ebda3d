"""The whole study on real images (issue #19), end to end through the installed command: the
committed public-domain clip-art fixtures imported as shards, then ``study run --preset
clipart-smoke``: the control on their labels, pair mining and probes, stage 2 from the
LLaVA-format JSON the import wrote, the suite on its VMCBench TSV, and a report that says what
could not run and why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from encoderlab.config import load_preset

FIXTURES = Path(__file__).parent / "fixtures" / "clipart"
EXECUTABLE = Path(sys.executable).with_name("encoderlab")


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(EXECUTABLE), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one log, in the order it was written
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    return proc


@pytest.mark.any_cpu_kind
def test_clipart_smoke_study_end_to_end(tmp_path: Path) -> None:
    data, out = tmp_path / "clipart-smoke-data", tmp_path / "study"
    _run("data", "import", FIXTURES, "--out", data, "--image-size", "32")
    preset = load_preset("clipart-smoke")  # its paths, moved under tmp_path
    preset["data_path"] = str(data)
    preset["vlm_data"] = str(data / "llava-train.json")
    preset["suite"]["suite"] = str(data / "vmcbench-test.tsv")
    path = tmp_path / "clipart-smoke.yaml"
    path.write_text(yaml.safe_dump(preset))
    log = _run("study", "run", "--preset", path, "--out", out).stdout
    # what needs SynthWorld is named before anything trains
    assert log.index("not run: needs ground-truth factors") < log.index("pretrain/clip")
    control = json.loads((out / "control" / "control.json").read_text())["encoders"]
    assert control["clip"]["category"]["classes"] == 4  # the fixtures' four folders
    assert control["dino"]["category"]["n_test"] == 4
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert "skipped" in analysis["sensitivity"] and analysis["pairs"]
    items = len((data / "vmcbench-test.tsv").read_text().strip().splitlines()) - 1  # a header
    for vlm in ("clip", "dino", "fused"):
        record = json.loads((out / "vlm" / vlm / "vlm.json").read_text())
        assert record["data"]["source"] == str(data / "llava-train.json")
        results = json.loads((out / "suite" / vlm / "results.json").read_text())
        assert sum(b["n"] for b in results["benchmarks"].values()) == items > 0
    report = (out / "report" / "report.md").read_text()
    assert "Oracle VLM: not part of this study" in report and "Not run yet" not in report
    assert "this study trains no siglip VLM" in report
    assert "the analysis did not run it: needs SynthWorld" in report
