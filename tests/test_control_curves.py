"""A powered control and learning curves: the power rule and the matched-checkpoint choice on
constructed inputs, the report's curves figure and accuracy-matched section, and curves.json
from a smoke study (one point per kept snapshot per objective, plus the final encoder)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from encoderlab.evaluate.curves import matched_checkpoints
from encoderlab.evaluate.power import (
    POWER_KNN,
    POWER_LINEAR,
    chance_corrected,
    gap_matched,
    needed_accuracy,
    power_check,
)
from encoderlab.report import build_report
from encoderlab.report.findings import accuracy_matched_findings, all_findings
from encoderlab.report.findings import matched_classification as matched_finding
from encoderlab.study.config import load_study
from encoderlab.study.pipeline import Study
from encoderlab.train.snapshots import list_snapshots, snapshot_every
from test_report import _analysis, _control, _write, make_study

OBJECTIVES = ("clip", "siglip", "clip-pretrained-text", "dino")


# -- the power rule ------------------------------------------------------------------------
def _encoders(**accs: tuple[float, float]) -> dict[str, Any]:
    """control.json's encoders: name -> (linear, kNN) category accuracy; 36 classes, 4.3%."""
    return {
        name: {"category": {"chance": 0.043, "linear": lin, "knn": knn, "n_test": 782}}
        for name, (lin, knn) in accs.items()
    }


def test_the_default_bar_is_the_issues_50_and_30_percent_on_36_categories() -> None:
    assert needed_accuracy(POWER_LINEAR, 0.043) == pytest.approx(0.50, abs=0.005)
    assert needed_accuracy(POWER_KNN, 0.043) == pytest.approx(0.30, abs=0.005)
    assert chance_corrected(0.043, 0.043) == 0 and chance_corrected(1.0, 0.043) == 1
    # relative to chance: with a 25% majority class the same rule asks more than 50%
    assert needed_accuracy(POWER_LINEAR, 0.25) == pytest.approx(0.61)


def test_power_check_powered_and_not() -> None:
    ok = power_check(_encoders(clip=(0.62, 0.40), dino=(0.55, 0.33)))
    assert ok["powered"] and ok["failing"] == []
    # the old rule's example: 9.5% against a 4.3% majority class is over 2x chance, not powered
    weak = power_check(_encoders(clip=(0.62, 0.40), dino=(0.095, 0.05)))
    assert not weak["powered"] and weak["failing"] == ["dino"]
    low, high = weak["encoders"]["dino"]["linear_low"], weak["encoders"]["dino"]["linear_high"]
    assert low < 0.095 < high  # the Wilson interval of the figure
    # the kNN bar counts too, and each encoder is judged (not just clip and dino)
    knn = power_check(_encoders(clip=(0.62, 0.40), siglip=(0.60, 0.25), dino=(0.55, 0.33)))
    assert knn["failing"] == ["siglip"]
    # thresholds are the config's: a lower bar passes what the default does not
    assert power_check(_encoders(dino=(0.095, 0.05)), linear=0.05, knn=0.0)["powered"]


def test_matched_means_the_clip_minus_dino_ci_within_the_tolerance() -> None:
    assert gap_matched(-1.0, 3.0, 5.0) and gap_matched(-5.0, 5.0, 5.0)
    # clip-art's control at edb3fd2: the point (+2.1) inside ±5, the CI reaching past it
    assert not gap_matched(-2.7, 6.5, 5.0) and not gap_matched(6.0, 8.0, 5.0)
    control = _control(2.1, (2.1, -2.7, 6.5))  # powered encoders
    assert control["matched"] is False
    assert matched_finding(control).verdict == "not resolved"
    assert matched_finding(_control(2.1, (2.1, -1.0, 4.5))).verdict == "supported"


def test_control_finding_says_not_powered_with_the_figures() -> None:
    control = _control(1.0, (1.0, -1.0, 3.0))  # 62% / 61%: powered, CI within ±5: supported
    assert matched_finding(control).verdict == "supported"
    control["encoders"]["dino"]["category"].update(linear=0.095, knn=0.05)
    f = matched_finding(control)
    assert f.verdict == "not resolved"
    assert f.note.startswith("control not powered: dino linear probe 9.5% [")
    assert "(needs 51.2%)" in f.note and "kNN 5.0% (needs 31.5%)" in f.note
    assert f.numbers[0].low == -1.0  # the CLIP − DINO CI is still shown
    # the thresholds control.json records are the ones applied
    control["power"] = {"thresholds": {"linear": 0.03, "knn": 0.0}}
    assert matched_finding(control).verdict == "not resolved"  # kNN 5.0%: under chance
    control["encoders"]["dino"]["category"]["knn"] = 0.07
    assert matched_finding(control).verdict == "supported"
    # an unpowered control adds a note to the embedding findings, verdicts unchanged
    del control["power"]  # back to the defaults
    analysis = _analysis({"category": (0.12, 0.05, 0.19)})
    found = all_findings(control, analysis, {})
    assert found[1].verdict == "supported" and "power bar" in found[1].note
    powered = all_findings(_control(1.0, (1.0, -1.0, 3.0)), analysis, {})
    assert powered[1].verdict == "supported" and powered[1].note == ""


# -- the matched-checkpoint choice ---------------------------------------------------------
def _curve(points: list[tuple[int, float]]) -> dict[str, Any]:
    last = points[-1][0]
    return {
        "points": [
            {"step": s, "samples_seen": 64 * s, "linear": acc, "final": s == last}
            for s, acc in points
        ]
    }


def test_matched_checkpoint_is_the_one_closest_to_the_weakest_final() -> None:
    curves = {
        "clip": _curve([(0, 0.05), (100, 0.12), (200, 0.20), (300, 0.31), (400, 0.40)]),
        "dino": _curve([(0, 0.05), (100, 0.08), (200, 0.11), (300, 0.14), (400, 0.16)]),
        "siglip": _curve([(0, 0.05), (100, 0.16), (200, 0.30), (300, 0.45), (400, 0.52)]),
    }
    m = matched_checkpoints(curves)
    assert (m["weakest"], m["target"]) == ("dino", 0.16)
    steps = {name: e["step"] for name, e in m["encoders"].items()}
    assert steps == {"clip": 200, "dino": 400, "siglip": 100}  # |0.20-0.16|, final, |0.16-0.16|
    assert m["encoders"]["dino"]["final"] and not m["encoders"]["clip"]["final"]
    assert m["encoders"]["siglip"]["samples_seen"] == 6400
    assert m["weakest_learned"] and m["untrained"] == 0.05
    # a tie goes to the later step (nearer to the compute-matched comparison)
    tie = {
        "a": _curve([(0, 0.05), (100, 0.10), (200, 0.30), (300, 0.50)]),
        "b": _curve([(0, 0.05), (9, 0.2)]),
    }
    assert matched_checkpoints(tie)["encoders"]["a"]["step"] == 200  # 0.10 and 0.30: both 0.1
    assert matched_checkpoints({}) == {}


def test_the_untrained_network_is_never_a_match() -> None:
    """Step 0 is the same random network for every objective: never the matched checkpoint,
    and a weakest objective that ends no better than it leaves nothing to match."""
    curves = {
        "clip": _curve([(0, 0.115), (100, 0.20), (200, 0.36), (300, 0.45)]),
        "dino": _curve([(0, 0.115), (100, 0.13), (200, 0.136), (300, 0.134)]),
    }
    curves["dino"]["points"][-1]["linear_low"] = 0.112
    m = matched_checkpoints(curves)
    assert m["encoders"]["clip"]["step"] == 100  # 0.20 is closest among trained checkpoints
    assert m["weakest"] == "dino" and not m["weakest_learned"] and m["untrained"] == 0.115
    clear = {f: (0.05, 0.02, 0.08) for f in ("category", "text", "colour", "style")}
    matched = {**_analysis(clear), "matched": m, "compared": ["clip", "dino"]}
    findings = accuracy_matched_findings(matched)
    assert findings and all(f.verdict == "not resolved" for f in findings)
    assert "no better than the untrained network (13.4% vs 11.5%" in findings[0].note
    curves["dino"]["points"][-1]["linear_low"] = 0.12  # its CI clears the untrained network
    m = matched_checkpoints(curves)
    assert m["weakest_learned"]
    matched["matched"] = m
    assert any(f.verdict != "not resolved" for f in accuracy_matched_findings(matched))


def test_snapshot_cadence_keeps_a_handful() -> None:
    assert snapshot_every(400, 100) == 100  # tiny: 100, 200, 300 (+ step 0 and the final)
    assert snapshot_every(10, 5) == 5
    every = snapshot_every(156_250, 1000)  # the paper preset: 157 checkpoints
    assert every % 1000 == 0 and 156_250 // every <= 8


# -- the report ----------------------------------------------------------------------------
def _curves_json() -> dict[str, Any]:
    encoders = {}
    for k, name in enumerate(OBJECTIVES):
        pts = [(0, 0.05), (100, 0.10 + 0.02 * k), (200, 0.14 + 0.05 * k), (400, 0.16 + 0.1 * k)]
        curve = _curve(pts)
        for p in curve["points"]:
            p.update(knn=p["linear"] - 0.03, linear_low=p["linear"] - 0.02)
            p["linear_high"] = p["linear"] + 0.02
        gain = {"value": 2.0, "low": 0.5 + k, "high": 3.5 + k, "significant": True}
        encoders[name] = {**curve, "steps": 400, "batch_size": 64, "last_gain": gain}
    return {
        "target": "category",
        "chance": 0.043,
        "n_train": 3900,
        "n_test": 782,
        "thresholds": {"linear": POWER_LINEAR, "knn": POWER_KNN},
        "encoders": encoders,
        "matched": matched_checkpoints(encoders),
    }


def test_report_has_the_curves_figure_and_the_accuracy_matched_section(tmp_path: Path) -> None:
    root = make_study(tmp_path / "s", parts=("pretrain", "control", "analysis"))
    before = len(re.findall(r"<img ", build_report(root).read_text()))
    curves = _curves_json()
    _write(curves, root / "control" / "curves.json")
    matched = _analysis({"category": (0.02, -0.01, 0.05), "colour": (-0.1, -0.15, -0.05)})
    matched = {**matched, "matched": curves["matched"], "compared": ["clip", "dino"]}
    _write(matched, root / "matched" / "matched.json")
    html_path = build_report(root)
    html, md = html_path.read_text(), (html_path.parent / "report.md").read_text()
    assert "<h2>Learning curves and the accuracy-matched comparison</h2>" in html
    assert "![Category accuracy vs samples seen](figures/curves.png)" in md
    assert (html_path.parent / "figures" / "curves.png").is_file()
    assert len(re.findall(r"<img ", html)) == before + 1
    section = md.split("## Learning curves and the accuracy-matched comparison")[1].split("## ")[0]
    # clip is the weakest (16%): its own final; siglip's closest is step 200 (19%)
    row = "| clip | 4 | 16.0 | 13.0 | **+2.0 [+0.5, +3.5]** | rising | 400 (final) | 16.0 |"
    assert row in section
    assert "| siglip | 4 | 26.0 | 23.0 | **+2.0 [+1.5, +4.5]** | rising | 200 | 19.0 |" in section
    assert "the weakest objective, clip, ends at 16.0%" in section
    assert section.count("| Embeddings, accuracy-matched |") == 4
    assert "accuracy-matched: clip at step 400 (linear probe 16.0%), dino at step 100" in section
    # skipped: said, with no findings table
    _write(
        {"skipped": "every matched checkpoint is the final one"}, root / "matched" / "matched.json"
    )
    md = (build_report(root).parent / "report.md").read_text()
    assert "Accuracy-matched embedding claims: every matched checkpoint is the final one." in md
    assert "| Embeddings, accuracy-matched |" not in md
    assert accuracy_matched_findings(None) == []


# -- curves.json from a smoke study ---------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_curves(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("curves")
    Study(load_study("smoke"), out, progress=False).run(only=["matched"])
    return out


def test_curves_have_a_point_per_kept_snapshot_per_objective(smoke_curves: Path) -> None:
    out = smoke_curves
    curves = json.loads((out / "control" / "curves.json").read_text())
    control = json.loads((out / "control" / "control.json").read_text())
    assert set(curves["encoders"]) == set(OBJECTIVES)
    for name in OBJECTIVES:
        run = out / "pretrain" / name
        snapshots = [step for step, _ in list_snapshots(run)]
        assert snapshots == [0, 5]  # smoke: 10 steps, a checkpoint every 5; step 0 shared
        curve = curves["encoders"][name]
        points = curve["points"]
        assert [p["step"] for p in points] == [*snapshots, 10]
        assert [p["samples_seen"] for p in points] == [0, 320, 640]
        assert [p["final"] for p in points] == [False, False, True]
        final = control["encoders"][name]["category"]
        assert points[-1]["linear"] == final["linear"] and points[-1]["knn"] == final["knn"]
        assert curve["last_gain"]["from_step"] == 5
    # every objective starts from the same encoder: the same step-0 accuracies
    assert len({json.dumps(c["points"][0]) for c in curves["encoders"].values()}) == 1
    assert control["power"]["thresholds"] == {"linear": POWER_LINEAR, "knn": POWER_KNN}
    assert control["powered"] is False  # smoke encoders are near chance
    ci = control["paired"]["clip_minus_dino"]  # matched: the CI, not the point, within ±5
    assert control["matched"] == gap_matched(ci["low"], ci["high"], control["max_gap_points"])
    matched = json.loads((out / "matched" / "matched.json").read_text())
    assert matched["matched"] == curves["matched"]
    assert ("sensitivity" in matched) != ("skipped" in matched)
    if "sensitivity" in matched:  # never more scenes than the analysis (smoke: 64)
        assert matched["sensitivity"]["scenes"] == 64
