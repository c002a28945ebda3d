"""The report's VLM checks section (issue #18): the premise evidence of the VLM claims (the LM's
picture slot, the oracle, each VLM's real vs blank image, per question type) stated once, and
the claims that fail it saying so in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from encoderlab.files import write_json
from encoderlab.report import build_report
from encoderlab.report.load import load_study_results
from encoderlab.report.vlm_checks import TITLE, oracle_meaning, vlm_checks_section
from encoderlab.vlm.sanity import paired_accuracy
from test_report import make_study

QTYPES = ["colour", "count", "colour", "object", "count", "colour", "object", "colour"] * 4
READS = np.tile([1.0, 0, 1, 0, 1, 1, 0, 1], 4)  # colour always right with the image
GUESS = np.tile([0.0, 0, 1, 0, 1, 0, 0, 0], 4)


def _check(a: np.ndarray, b: np.ndarray, names: tuple[str, str], scoring: str) -> dict[str, Any]:
    """A check as the study writes it (``paired_accuracy`` with types), in one scoring."""
    return {"scoring": scoring, **paired_accuracy(a, b, names, QTYPES)}


def _write(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(obj, path)


def _write_checks(root: Path) -> None:
    gap = {"own": 3.87, "other": 3.86, "gap": -0.01, "gap_low": -0.02, "gap_high": 0.0}
    context = {"n": 512, "questions": gap, "describe": gap, "reads_context": False}
    _write(context, root / "lm" / "context.json")
    # the oracle reads its tokens by cloze but cannot answer with a letter
    oracle = _check(GUESS, GUESS, ("own", "other"), "letter")
    oracle["cloze"] = _check(READS, GUESS, ("own", "other"), "cloze")
    _write(oracle, root / "vlm" / "oracle" / "oracle.json")
    _write(_check(READS, GUESS, ("real", "blank"), "letter"), root / "vlm" / "clip" / "sanity.json")
    _write(_check(GUESS, GUESS, ("real", "blank"), "letter"), root / "vlm" / "dino" / "sanity.json")


def test_the_evidence_is_stated_once_and_the_claims_point_to_it(tmp_path: Path) -> None:
    root = make_study(tmp_path / "s", parts=("suite",))
    _write_checks(root)
    md = (build_report(root).parent / "report.md").read_text()
    section = md.split(f"## {TITLE}")[1].split("\n## ")[0]
    findings = md.split("## Findings")[1].split("\n## ")[0]
    # the evidence, once, in its own section
    for evidence in (
        "it does NOT read its picture slot",
        "Oracle VLM (the recipe trained on ground-truth image tokens)",
        oracle_meaning({"uses_image": False, "cloze": {"uses_image": True}}),
    ):
        assert md.count(evidence) == 1 and evidence in section, evidence
    assert "| copy the slot (describe) | 3.870 | 3.860 | -0.010 [-0.020, +0.000] |" in section
    # one table per check: the oracle's and each VLM's, per question type
    assert section.count("per question type") == 3
    assert "| colour | 16 | 100.0 | 25.0 | **+75.0 [" in section  # clip reads colour
    assert "| object | 8 | 0.0 | 0.0 | +0.0 [+0.0, +0.0] |" in section
    assert "| clip | letter | yes | 32 | 62.5 | 25.0 | **+37.5 [" in section
    assert "| dino | letter | no | 32 | 25.0 | 25.0 | +0.0 [+0.0, +0.0] | – |" in section
    # the DINO claims: not resolved, with one line of reason that points here
    rows = [line for line in findings.splitlines() if line.startswith("| VLM |")]
    assert len(rows) == 2 and all("**not resolved**" in r for r in rows)
    assert all("no better than a blank image (dino 25.0% vs blank 25.0%)" in r for r in rows)
    assert findings.count("see VLM checks") == 2
    assert "picture slot" not in findings and "ground-truth" not in findings


def test_checks_not_run_say_so(tmp_path: Path) -> None:
    root = make_study(tmp_path / "s", parts=("suite",))
    blocks = vlm_checks_section(load_study_results(root)).blocks
    texts = [b.text for b in blocks if hasattr(b, "text")]
    for missing in ("lm/context.json", "vlm/oracle/oracle.json", "vlm/<name>/sanity.json"):
        assert any(missing in t and "not run" in t for t in texts), missing
    # a sanity.json from before the per-type breakdown: its overall numbers, and a line
    _write_checks(root)
    old = {k: v for k, v in load_study_results(root).sanity["dino"].items() if k != "by_type"}
    _write(old, root / "vlm" / "dino" / "sanity.json")
    blocks = vlm_checks_section(load_study_results(root)).blocks
    texts = [b.text for b in blocks if hasattr(b, "text")]
    assert (
        "vlm/dino/sanity.json: no per-question-type breakdown (written before it existed)." in texts
    )
    assert sum("per question type" in getattr(b, "caption", "") for b in blocks) == 2


def test_what_the_oracle_says_about_the_recipe() -> None:
    assert "the recipe can use an image" in oracle_meaning({"uses_image": True})
    letters_only = {"uses_image": False, "scoring": "letter", "cloze": {"uses_image": True}}
    assert "cannot answer with an option's letter" in oracle_meaning(letters_only)
    assert "cannot use an image at all" in oracle_meaning({"uses_image": False})
    by_cloze = {"uses_image": False, "scoring": "cloze", "letter": {"uses_image": True}}
    assert "cannot use an image at all" in oracle_meaning(by_cloze)  # letters never rescue it
