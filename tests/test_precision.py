"""Precision: what ``auto`` resolves to, the override the suite uses to play the other kind of
CPU, and the record every stage writes of the precision it ran in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from encoderlab.errors import ConfigError
from encoderlab.precision import (
    NATIVE_BF16_ENV,
    cpu_has_native_bf16,
    native_bf16,
    precision_record,
    resolve_precision,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize(("forced", "expected"), [("1", "bf16"), ("0", "fp32")])
def test_the_override_decides_what_auto_means_on_a_cpu(monkeypatch, forced, expected) -> None:
    monkeypatch.setenv(NATIVE_BF16_ENV, forced)
    assert native_bf16(CPU) is (expected == "bf16")
    assert resolve_precision("auto", CPU) == expected
    # explicit choices are never overridden
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"


def test_without_the_override_auto_follows_the_cpu(monkeypatch) -> None:
    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_native_bf16() else "fp32")


def test_a_bad_override_is_a_one_line_config_error(monkeypatch) -> None:
    monkeypatch.setenv(NATIVE_BF16_ENV, "maybe")
    with pytest.raises(ConfigError, match=f"{NATIVE_BF16_ENV}='maybe': expected 1 or 0"):
        native_bf16(CPU)


def test_the_record_says_what_was_asked_what_ran_and_whether_it_was_forced(monkeypatch) -> None:
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    record = precision_record("auto", CPU)
    assert record["requested"] == "auto" and record["resolved"] == "fp32"
    assert record["forced_native_bf16"] == "no"
    assert record["cpu_native_bf16"] == ("yes" if cpu_has_native_bf16() else "no")
    monkeypatch.delenv(NATIVE_BF16_ENV)
    assert "forced_native_bf16" not in precision_record("auto", CPU)


def test_the_smoke_study_records_each_stages_precision_and_the_report_shows_it(
    tmp_path: Path, monkeypatch
) -> None:
    """Pretraining and the control run in ``auto`` (bf16 where native), VLMs in fp32: the stage
    records and the report's study status say which, per stage."""
    from encoderlab.report.load import load_study_results
    from encoderlab.study.config import load_study
    from encoderlab.study.pipeline import Study

    monkeypatch.setenv(NATIVE_BF16_ENV, "0")  # fp32 everywhere: fast on any CPU
    cfg = load_study("smoke")
    study = Study(cfg, tmp_path, progress=False)
    study.run(only=["control"])
    run = json.loads((tmp_path / "pretrain" / "clip" / "run.json").read_text())
    assert run["precision"]["resolved"] == "fp32"
    assert run["precision"]["forced_native_bf16"] == "no"
    control = json.loads((tmp_path / "control" / "control.json").read_text())
    assert control["precision"]["resolved"] == "fp32"
    stages = {s["name"]: s for s in load_study_results(tmp_path).stages}
    assert stages["pretrain/dino"]["precision"] == "fp32"
    assert stages["control"]["precision"] == "fp32"
    assert stages["data"]["precision"] is None  # no network runs there

    from encoderlab.report.document import Table
    from encoderlab.report.sections import study_section

    section = study_section(load_study_results(tmp_path))
    (table,) = [b for b in section.blocks if isinstance(b, Table)]
    assert table.header[:3] == ["stage", "state", "precision"]
    rows = {row[0]: row for row in table.rows}
    assert rows["control"][1:3] == ["done", "fp32"]
    assert rows["data"][2] == ""
