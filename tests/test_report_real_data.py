"""The report of a study on real images (issue #19): what could not run says why, and what the
study never planned (the oracle, VLMs outside ``vlm_objectives``) is not listed as missing."""

from __future__ import annotations

from pathlib import Path

from encoderlab.files import write_json
from encoderlab.report.document import Text
from encoderlab.report.findings import all_findings, sensitivity_findings
from encoderlab.report.load import load_study_results
from encoderlab.report.sections import study_section
from encoderlab.report.vlm_checks import vlm_checks_section

SKIPPED = "needs SynthWorld (a world config or its data)"  # evaluate.analyze's reason


def _texts(blocks: list) -> str:
    return "\n".join(b.text for b in blocks if isinstance(b, Text))


def _plan(root: Path, stages: list[str]) -> None:
    """The report stage's marker as the study writes it: its inputs are every other stage."""
    (root / "report").mkdir(parents=True)
    inputs = {name: "0" * 12 for name in stages}
    write_json({"name": "report", "inputs": inputs}, root / "report" / "stage.pending.json")


def test_claims_about_vlms_the_study_does_not_train_say_so() -> None:
    planned = all_findings(None, None, {}, {}, vlms=["clip", "dino", "fused"])
    unknown = all_findings(None, None, {}, {})
    for found, says in ((planned, True), (unknown, False)):
        sigmoid = next(f for f in found if "sigmoid" in f.claim)
        assert sigmoid.verdict == "not run"
        assert ("this study trains no siglip VLM" in sigmoid.note) is says
    ocr = next(f for f in planned if "OCR" in f.claim)  # clip and dino are trained
    assert ocr.verdict == "not run" and "trains no" not in ocr.note


def test_sensitivity_claims_the_analysis_skipped_give_its_reason() -> None:
    found = sensitivity_findings({"sensitivity": {"skipped": SKIPPED}})
    assert len(found) == 4
    assert all(f.verdict == "not run" and SKIPPED in f.note for f in found)


def test_unplanned_stages_are_not_reported_missing(tmp_path: Path) -> None:
    _plan(tmp_path, ["control", "analysis", "vlm/clip", "vlm/dino", "suite/clip", "suite/dino"])
    res = load_study_results(tmp_path)
    assert res.planned_vlm("clip") and not res.planned_vlm("siglip")
    missing = _texts(study_section(res).blocks)
    assert "VLM clip (suite/clip/results.json)" in missing and "VLM dino" in missing
    assert "siglip" not in missing and "clip-pretrained-text" not in missing
    checks = _texts(vlm_checks_section(res).blocks)
    assert "Oracle VLM: not part of this study" in checks and "ground-truth" in checks
    # a study that plans the oracle but has not run it yet: "not run", as before
    _plan(other := tmp_path / "synth", ["vlm/oracle", "vlm/clip"])
    checks = _texts(vlm_checks_section(load_study_results(other)).blocks)
    assert "Oracle VLM: not run (vlm/oracle/oracle.json not found)." in checks
