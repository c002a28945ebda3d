"""The study report: findings logic on constructed inputs, and reports built from a constructed
study directory (the files the stages write, with plausible values)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from encoderlab.errors import DataError
from encoderlab.evaluate.power import gap_matched
from encoderlab.evaluate.stats import bootstrap_ci
from encoderlab.files import write_json
from encoderlab.report import build_report
from encoderlab.report.findings import (
    all_findings,
    matched_classification,
    no_gain,
    ocr_advantage,
    sensitivity_findings,
    vision_centric,
)
from encoderlab.report.load import load_study_results
from encoderlab.report.replicates import load_replicates, pool
from encoderlab.report.sections import SECTION_TITLES
from encoderlab.suite.harness import EvalConfig, _aggregate, write_reports
from encoderlab.suite.registry import BENCHMARKS, SUITES

OBJECTIVES = ("clip", "siglip", "clip-pretrained-text", "dino")
FACTORS = ("category", "text", "colour", "texture", "style", "background", "position", "size")


# -- a constructed study directory ---------------------------------------------------------
def _write(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(obj, path)


def _png(path: Path, size: tuple[int, int] = (96, 64), colour: str = "steelblue") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _stage(directory: Path, name: str, seconds: float, done: bool = True) -> None:
    record = {"hash": "0" * 16, "name": name, "config": {}, "inputs": {}}
    if done:
        _write({**record, "summary": {"seconds": seconds}}, directory / "stage.json")
    else:
        _write(record, directory / "stage.pending.json")


def _control(gap: float, paired: tuple[float, float, float] | None = None) -> dict[str, Any]:
    def enc(linear: float, zero_shot: float | None) -> dict[str, Any]:
        common = {"linear_lr": 1e-3, "linear_wd": 0.0, "n_train": 2000, "n_test": 500}
        return {
            "category": {
                "classes": 24,
                "chance": 0.062,
                "knn": linear - 0.04,
                "linear": linear,
                "zero_shot": zero_shot,
                **common,
            },
            "superclass": {
                "classes": 6,
                "chance": 0.21,
                "knn": linear + 0.1,
                "linear": linear + 0.12,
                "zero_shot": None,
                **common,
            },
        }

    control: dict[str, Any] = {
        "encoders": {
            "clip": enc(0.62, 0.41),
            "siglip": enc(0.60, 0.38),
            "clip-pretrained-text": enc(0.61, 0.35),
            "dino": enc(0.62 - gap / 100, None),
        },
        "clip_minus_dino_linear_points": gap,
        "max_gap_points": 5.0,
        "matched": abs(gap) <= 5.0,
    }
    if paired is not None:
        control["paired"] = {
            "clip_minus_dino": dict(zip(("value", "low", "high"), paired, strict=True))
        }
        control["matched"] = gap_matched(paired[1], paired[2], 5.0)  # as the control stage
    return control


def _diff(value: float | None, low: float | None, high: float | None) -> dict[str, Any]:
    sig = low is not None and (low > 0 or high < 0)  # type: ignore[operator]
    return {
        "value": value,
        "low": low,
        "high": high,
        "level": 0.95,
        "n": 200,
        "significant": sig,
        "p": 0.01 if sig else 0.4,
    }


def _analysis(
    diffs: dict[str, tuple[float | None, float | None, float | None]],
    a: str = "clip",
    b: str = "dino",
) -> dict[str, Any]:
    """analysis.json with CLIP/DINO sensitivities and the given A − B differences per factor."""
    rng = np.random.default_rng(0)
    per = {
        name: {
            "baseline_distance": 0.4,
            "factors": {
                f: {
                    "value": v,
                    "low": v - 0.05,
                    "high": v + 0.05,
                    "level": 0.95,
                    "n": 200,
                    "raw_distance": 0.4 * v,
                }
                for f in FACTORS
                for v in [float(rng.uniform(0.1, 0.9))]
            },
        }
        for name in (a, b)
    }
    comp = {
        "a": a,
        "b": b,
        "factors": {f: _diff(*diffs.get(f, (0.01, -0.02, 0.04))) for f in FACTORS},
    }

    def direction(high: str, low: str, count: int, lift_cat: float) -> dict[str, Any]:
        shared = {
            "category": {"mined": 0.1 * lift_cat, "base": 0.1, "lift": lift_cat, "n_mined": count},
            "colour": {
                "mined": 0.2 / lift_cat,
                "base": 0.2,
                "lift": 1 / lift_cat,
                "n_mined": count,
            },
        }
        return {
            "high": high,
            "low": low,
            "thresholds": {"mode": "absolute"},
            "count": count,
            "shared": shared,
            "top": [],
        }

    def report(x: str, y: str, count: int, lift: float) -> dict[str, Any]:
        return {
            "a": x,
            "b": y,
            "pool": 200,
            "random_pairs": 1000,
            "random_similarity": {},
            "spearman_random": 0.3,
            "directions": [direction(x, y, count, lift), direction(y, x, count // 2, 1 / lift)],
        }

    # The paper's pair (shown in full) and one more (folded away in the HTML).
    pairs = [report(a, b, 12, 3.0), report(a, "siglip", 6, 1.2)]
    grids = [f"pairs_high_{d['high']}_low_{d['low']}.png" for r in pairs for d in r["directions"]]
    figures = ["sensitivity.png", "probes.png", "cka_final.png", *grids]
    return {
        "config": {"level": 0.95, "n_boot": 1000},
        "sensitivity": {
            "scenes": 200,
            "split": "analysis",
            "factors": list(FACTORS),
            "variants": {},
            "encoders": per,
            "comparisons": [comp],
        },
        "pairs": pairs,
        "figures": figures,
    }


# Per-VLM accuracy by benchmark: CLIP far ahead on OCR, DINO a little ahead on vision-centric.
OCR = {"read_word", "read_number"}
VISION = {"count", "spatial", "size", "pairs"}
ACCURACY = {
    "clip": lambda b: 0.85 if b in OCR else 0.55,
    "siglip": lambda b: 0.83 if b in OCR else 0.54,
    "clip-pretrained-text": lambda b: 0.84 if b in OCR else 0.55,
    "dino": lambda b: 0.45 if b in OCR else 0.60 if b in VISION else 0.55,
    "fused": lambda b: 0.86 if b in OCR else 0.60 if b in VISION else 0.57,
}


def _suite(directory: Path, vlm: str, n: int = 40) -> None:
    """results.json and per_item.csv as the harness writes them. Items share a difficulty
    across VLMs (a question one VLM gets right, a better one gets right too), as real paired
    data does."""
    cfg = EvalConfig()
    results: dict[str, Any] = {
        "checkpoint": f"ckpt-{vlm}",
        "config": {},
        "benchmarks": {},
        "categories": {},
    }
    units: dict[str, np.ndarray] = {}
    per_item = []
    for i, name in enumerate(SUITES["default"]):
        difficulty = np.random.default_rng(i).random(n)
        score = (difficulty < ACCURACY[vlm](name)).astype(np.float64)
        bench = BENCHMARKS[name]
        mean, lo, hi = bootstrap_ci(score, n=cfg.bootstrap, seed=cfg.seed)
        results["benchmarks"][name] = {
            "vmc": bench.vmc,
            "cambrian": bench.cambrian,
            "metric": bench.metric,
            "format": bench.format,
            "mirrors": bench.mirrors,
            "n": n,
            "score": mean,
            "lo": lo,
            "hi": hi,
        }
        units[name] = score
        per_item += [(name, str(u), float(s), None) for u, s in enumerate(score)]
    _aggregate(results, units, cfg)  # the harness's own category aggregation
    write_reports(results, per_item, directory)


def make_study(
    root: Path,
    parts: tuple[str, ...] = ("pretrain", "control", "analysis", "suite"),
    analysis_diffs: dict[str, tuple[float, float, float]] | None = None,
) -> Path:
    """A study directory with the given stages' outputs."""
    root.mkdir(parents=True, exist_ok=True)
    _write({"config": {"name": "constructed"}}, root / "study.json")
    _png(root / "preview" / "preview.png", (240, 120), "seagreen")
    _stage(root / "data", "data", 12.0)
    _stage(root / "preview", "preview", 1.0)
    if "pretrain" in parts:
        for k, obj in enumerate(OBJECTIVES):
            d = root / "pretrain" / obj
            d.mkdir(parents=True)
            rows = [
                {"step": s, "epoch": 0, "lr": 5e-4, "loss": (4.0 + k) * np.exp(-s / 40) + 0.5}
                for s in range(5, 105, 5)
            ]
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            _stage(d, f"pretrain/{obj}", 60.0 + k, done=obj != "dino")
    if "control" in parts:
        _write(_control(1.5, (1.5, -1.0, 4.0)), root / "control" / "control.json")
        _stage(root / "control", "control", 20.0)
    if "analysis" in parts:
        diffs = analysis_diffs or {
            "category": (0.12, 0.05, 0.19),
            "text": (0.30, 0.21, 0.40),
            "colour": (-0.10, -0.16, -0.04),
            "style": (-0.02, -0.07, 0.03),
        }
        analysis = _analysis(diffs)
        _write(analysis, root / "analysis" / "analysis.json")
        for name in analysis["figures"]:
            _png(root / "analysis" / name, (160, 100) if "pairs" not in name else (120, 300))
    if "suite" in parts:
        for vlm in ACCURACY:
            _suite(root / "suite" / vlm, vlm)
    return root


@pytest.fixture(scope="module")
def full_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study(tmp_path_factory.mktemp("study") / "constructed")


@pytest.fixture(scope="module")
def full_report(full_study: Path) -> Path:
    return build_report(full_study)


# -- findings on constructed JSON ----------------------------------------------------------
@pytest.mark.parametrize(
    ("paired", "verdict"),
    [
        ((1.5, -1.0, 4.0), "supported"),
        ((7.0, 5.5, 8.5), "contradicted"),
        ((-7.0, -8.5, -5.5), "contradicted"),
        ((3.0, -1.0, 7.0), "not resolved"),
    ],
)
def test_matched_classification_uses_the_paired_ci(paired: tuple, verdict: str) -> None:
    f = matched_classification(_control(paired[0], paired))
    assert f.verdict == verdict
    assert (f.numbers[0].low, f.numbers[0].high) == paired[1:]


def test_matched_classification_without_ci_and_not_run() -> None:
    assert matched_classification(_control(4.0)).verdict == "supported"
    f = matched_classification(_control(-6.0))
    assert f.verdict == "contradicted" and "point estimate" in f.note
    assert matched_classification(None).verdict == "not run"
    no_dino = {"encoders": {"clip": {}}}
    assert matched_classification(no_dino).verdict == "not run"


def test_matched_classification_near_chance_is_not_powered() -> None:
    control = _control(1.0, (1.0, -1.0, 3.0))
    assert matched_classification(control).verdict == "supported"
    control["encoders"]["dino"]["category"]["linear"] = 0.10  # chance 0.062: under the bar
    control["encoders"]["clip"]["category"]["linear"] = 0.11
    f = matched_classification(control)
    assert f.verdict == "not resolved" and "control not powered" in f.note
    assert "dino linear probe 10.0%" in f.note and "clip linear probe 11.0%" in f.note


def _verdicts(findings: list) -> dict[str, str]:
    return {f.claim: f.verdict for f in findings}


def test_sensitivity_verdicts_per_factor() -> None:
    diffs = {
        "category": (0.10, 0.04, 0.16),  # CLIP more sensitive, significant: supported
        "text": (0.05, -0.01, 0.11),  # CI includes 0: not resolved
        "colour": (0.08, 0.02, 0.14),  # CLIP more sensitive to colour: contradicted
        "style": (-0.09, -0.15, -0.03),  # DINO more sensitive: supported
    }
    found = sensitivity_findings(_analysis(diffs))
    assert [f.verdict for f in found] == ["supported", "not resolved", "contradicted", "supported"]
    assert found[0].numbers[0].value == pytest.approx(0.10)
    # The comparison stored the other way round (DINO − CLIP) gives the same verdicts.
    flipped = {f: (-v, -h, -lo) for f, (v, lo, h) in diffs.items()}
    again = sensitivity_findings(_analysis(flipped, a="dino", b="clip"))
    assert [f.verdict for f in again] == [f.verdict for f in found]
    assert again[2].numbers[0].low == pytest.approx(0.02)


def test_sensitivity_not_run() -> None:
    assert {f.verdict for f in sensitivity_findings(None)} == {"not run"}
    skipped = {"config": {"level": 0.95}, "sensitivity": {"skipped": "needs SynthWorld"}}
    assert {f.verdict for f in sensitivity_findings(skipped)} == {"not run"}
    no_text = sensitivity_findings(_analysis({"text": (None, None, None)}))
    assert [f.verdict for f in no_text][1] == "not run" and "text" in no_text[1].note


def _cmp(cats: dict[str, dict[str, tuple[float, float, float]]]) -> dict[str, Any]:
    """A compare() result (B − A, fractions) with the given category differences."""
    return {
        "categories": {
            view: {
                name: {
                    "diff": d,
                    "lo": lo,
                    "hi": hi,
                    "significant": lo > 0 or hi < 0,
                    "n": 80,
                    "a": 0.5,
                    "b": 0.5 + d,
                }
                for name, (d, lo, hi) in c.items()
            }
            for view, c in cats.items()
        }
    }


@pytest.mark.parametrize(
    ("dino_minus_clip", "verdict"),
    [
        ((-0.2, -0.3, -0.1), "supported"),
        ((0.1, 0.02, 0.18), "contradicted"),
        ((-0.05, -0.12, 0.02), "not resolved"),
    ],
)
def test_ocr_advantage(dino_minus_clip: tuple, verdict: str) -> None:
    f = ocr_advantage(_cmp({"vmc": {"OCR": dino_minus_clip}}))
    assert f.verdict == verdict
    d, lo, hi = dino_minus_clip
    assert (f.numbers[0].value, f.numbers[0].low, f.numbers[0].high) == pytest.approx(
        (-100 * d, -100 * hi, -100 * lo)
    )


def test_ocr_advantage_not_run() -> None:
    assert ocr_advantage(None).verdict == "not run"
    assert ocr_advantage(_cmp({"vmc": {"General": (0.0, -0.1, 0.1)}})).verdict == "not run"


@pytest.mark.parametrize(
    ("dino_minus_clip", "verdict", "note"),
    [
        ((0.01, -0.04, 0.06), "supported", "level"),
        ((0.1, 0.03, 0.17), "supported", "DINO"),
        ((-0.1, -0.17, -0.03), "contradicted", "CLIP"),
    ],
)
def test_vision_centric(dino_minus_clip: tuple, verdict: str, note: str) -> None:
    f = vision_centric(_cmp({"cambrian": {"Vision-Centric": dino_minus_clip}}))
    assert f.verdict == verdict and note in f.note
    assert vision_centric(None).verdict == "not run"


def test_no_gain() -> None:
    level = {
        "vmc": {"OCR": (0.01, -0.03, 0.05), "General": (-0.02, -0.06, 0.01)},
        "cambrian": {"Knowledge": (0.0, -0.04, 0.04)},
    }
    f = no_gain("siglip", _cmp(level))
    assert f.verdict == "supported" and len(f.numbers) == 3
    gain = {**level, "cambrian": {"Knowledge": (0.06, 0.01, 0.11)}}
    f = no_gain("siglip", _cmp(gain))
    assert f.verdict == "contradicted" and "Cambrian-1 Knowledge" in f.note
    assert no_gain("clip-pretrained-text", None).verdict == "not run"


def test_vlm_findings_need_vlms_that_use_their_image() -> None:
    cmp = _cmp({"vmc": {"OCR": (-0.2, -0.3, -0.1)}, "cambrian": {"Vision-Centric": (0, -0.1, 0.1)}})
    sees = {"real": 0.6, "blank": 0.3, "gain": 0.3, "uses_image": True}
    blind = {"real": 0.28, "blank": 0.28, "gain": 0.0, "uses_image": False}
    ok = all_findings(None, None, {"dino": cmp}, {"clip": sees, "dino": sees})
    assert [f.verdict for f in ok[5:7]] == ["supported", "supported"]
    vacuous = all_findings(None, None, {"dino": cmp}, {"clip": sees, "dino": blind})
    assert [f.verdict for f in vacuous[5:7]] == ["not resolved", "not resolved"]
    # one line of reason: which VLM fails, and where the evidence is (not the evidence again)
    assert vacuous[5].note.startswith(
        "premise fails: no better than a blank image (dino 28.0% vs blank 28.0%); see VLM checks"
    )
    assert "clip" not in vacuous[5].note.split(";")[0] and "\n" not in vacuous[5].note
    assert all_findings(None, None, {}, {"dino": blind})[5].verdict == "not run"


def test_all_findings_order_and_not_run() -> None:
    found = all_findings(None, None, {})
    assert len(found) == 9 and {f.verdict for f in found} == {"not run"}
    assert [f.topic for f in found] == [
        "Control",
        *["Embeddings"] * 4,
        "VLM",
        "VLM",
        "Variants",
        "Variants",
    ]


# -- reports built from a study directory --------------------------------------------------
def test_full_report_findings_from_the_files(full_study: Path) -> None:
    res = load_study_results(full_study)
    assert list(res.suite) == ["clip", "siglip", "clip-pretrained-text", "dino", "fused"]
    found = all_findings(res.control, res.analysis, res.vs_clip)
    assert [f.verdict for f in found] == [
        "supported",  # matched: CI [-1, 4] within ±5
        "supported",  # category
        "supported",  # text
        "supported",  # colour (DINO more sensitive)
        "not resolved",  # style: CI includes 0
        "supported",  # OCR: CLIP 85% vs DINO 45% on the same items
        "supported",  # vision-centric: DINO ahead
        "supported",  # siglip: never ahead of clip
        "supported",  # clip-pretrained-text
    ]
    ocr = found[5].numbers[0]
    dino_minus_clip = res.vs_clip["dino"]["categories"]["vmc"]["OCR"]
    assert ocr.value == pytest.approx(-100 * dino_minus_clip["diff"])
    assert 30 < ocr.value < 55 and ocr.low > 0  # 85% vs 45% on 80 items


def test_findings_pool_the_replicates(tmp_path: Path) -> None:
    base = {
        "category": (0.12, 0.05, 0.19),
        "text": (0.30, 0.21, 0.40),
        "colour": (-0.10, -0.16, -0.04),
        "style": (-0.02, -0.07, 0.03),
    }
    root = make_study(tmp_path / "study", analysis_diffs=base)
    # Replicate 1 agrees on text and colour, disagrees on category; replicate 2 is missing.
    make_study(root / "replicate1", analysis_diffs={**base, "category": (-0.05, -0.1, 0.0)})
    results = [load_study_results(root), *load_replicates(root)]
    assert len(results) == 2
    pooled = pool(results)
    found = all_findings(pooled.control, pooled.analysis, pooled.vs_clip, pooled.sanity)
    single = all_findings(results[0].control, results[0].analysis, results[0].vs_clip)
    category = found[1].numbers[0]
    assert category.value == pytest.approx((0.12 - 0.05) / 2)
    assert (found[1].verdict, single[1].verdict) == ("not resolved", "supported")
    # Where the replicates agree, the verdicts and interval widths stay as one replicate gave
    # them (the pooled interval is symmetric about the value).
    for i in (2, 3, 5):
        one, both = single[i].numbers[0], found[i].numbers[0]
        assert found[i].verdict == single[i].verdict
        half = (one.high - one.low) / 2
        assert (both.low, both.high) == pytest.approx((one.value - half, one.value + half))
    html = build_report(root).read_text()
    assert "Pooled over 2 replicates" in html


def test_report_sections_images_and_numbers(full_study: Path, full_report: Path) -> None:
    html = full_report.read_text()
    md = (full_report.parent / "report.md").read_text()
    for title in SECTION_TITLES.values():
        assert f"<h2>{title}</h2>" in html and f"## {title}" in md
    assert 'src="http' not in html and "<script" not in html and "<link" not in html
    # Every src/href is an inline image or an in-page anchor: nothing is fetched.
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith(("data:", "#")) for r in refs)
    imgs = re.findall(r"<img [^>]*src=\"([^\"]*)\"", html)
    # preview, control, losses, sensitivity, probes, CKA, 4 pair grids, 2 VLM views
    assert len(imgs) == 12
    assert html.count("<details>") == 1 and "Other encoder pairs (clip/siglip)" in html
    for src in imgs:
        head, _, payload = src.partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(payload).startswith(b"\x89PNG\r\n\x1a\n")
    # markdown links its figures by paths that exist
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 12 and all((full_report.parent / p).is_file() for p in links)
    # numbers come from the files: control table, the OCR difference in the variants table
    assert "| clip | 58.0 | 62.0 | 41.0 |" in md
    res = load_study_results(full_study)
    ocr = res.vs_clip["dino"]["categories"]["vmc"]["OCR"]
    assert "| VMCBench | OCR | " in md
    assert f"**{100 * ocr['diff']:+.1f} [{100 * ocr['lo']:+.1f}, {100 * ocr['hi']:+.1f}]**" in md
    assert "pretrain/dino" in md and "Not finished: dino." in md  # the pending stage


def test_report_is_deterministic(full_study: Path, full_report: Path) -> None:
    html, md = full_report.read_bytes(), (full_report.parent / "report.md").read_bytes()
    assert build_report(full_study) == full_report  # a rebuild over the old report
    assert full_report.read_bytes() == html
    assert (full_report.parent / "report.md").read_bytes() == md


def test_partial_study_reports_what_has_not_run(tmp_path: Path) -> None:
    root = make_study(tmp_path / "partial", parts=("pretrain", "control"))
    md = (build_report(root).parent / "report.md").read_text()
    assert "Not run: the VLM stages (suite/<vlm>/results.json not found)." in md
    assert "Not run: the embedding analysis (analysis/analysis.json not found)." in md
    res = load_study_results(root)
    verdicts = [f.verdict for f in all_findings(res.control, res.analysis, res.vs_clip)]
    assert verdicts == ["supported", *["not run"] * 8]
    empty = tmp_path / "empty"
    empty.mkdir()
    html = build_report(empty).read_text()
    assert html.count('class="badge not-run"') == 9 and "<img" not in html


def test_vlm_without_per_item_is_reported_not_compared(tmp_path: Path) -> None:
    root = make_study(tmp_path / "s", parts=("suite",))
    (root / "suite" / "siglip" / "per_item.csv").unlink()
    md = (build_report(root).parent / "report.md").read_text()
    assert "siglip: no paired comparison:" in md and "per_item.csv: not found" in md
    variants = md.split("## Variants vs CLIP")[1]
    assert "siglip − clip" not in variants and "| dino − clip |" in variants


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="study directory not found"):
        build_report(tmp_path / "nope")
    (tmp_path / "s" / "control").mkdir(parents=True)
    (tmp_path / "s" / "control" / "control.json").write_text("{not json")
    with pytest.raises(DataError, match=r"control\.json: not valid JSON") as err:
        build_report(tmp_path / "s")
    assert "\n" not in str(err.value)


def test_stage_table_names_the_report_being_written(tmp_path: Path) -> None:
    _stage(tmp_path / "pretrain" / "clip", "pretrain/clip", 12.0)
    _stage(tmp_path / "pretrain" / "dino", "pretrain/dino", 0.0, done=False)
    _stage(tmp_path / "report", "report", 0.0, done=False)
    states = {s["name"]: s["state"] for s in load_study_results(tmp_path).stages}
    assert states == {
        "pretrain/clip": "done",
        "pretrain/dino": "started",
        "report": "writing this report",
    }
