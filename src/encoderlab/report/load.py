"""Read whatever a study directory holds; anything missing is "not run", never an error.

Layout (written by the study stages): ``control/control.json`` (+ ``curves.json``, the
learning curves), ``matched/matched.json`` (the accuracy-matched sensitivity),
``analysis/analysis.json`` (+
PNGs), ``suite/<vlm>/results.json`` (+ ``per_item.csv``), ``pretrain/<objective>/metrics.jsonl``,
``vlm/<name>/sanity.json`` (real vs blank image), ``vlm/oracle/oracle.json`` (the recipe on
ground-truth image tokens), ``lm/context.json`` (does the LM read its
picture slot), ``preview/preview.png``, ``study.json`` and
a ``stage.json`` (done) or ``stage.pending.json``
(started, not finished) in every stage directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoderlab.errors import DataError
from encoderlab.suite.compare import compare
from encoderlab.suite.registry import BENCHMARKS, CAMBRIAN_CATEGORIES, VMC_CATEGORIES

__all__ = ["NAMES", "StudyResults", "load_study_results", "ordered"]

# The study's encoders / VLMs in the order tables and plots show them (others follow, sorted).
# The stages write JSON with sorted keys, so the files' own order is alphabetical.
NAMES = ("clip", "siglip", "clip-pretrained-text", "dino", "fused")
_STAGE_ORDER = (
    "data",
    "preview",
    "pretrain",
    "control",
    "analysis",
    "matched",
    "lm",
    "vlm",
    "suite",
)
_CATEGORIES = {"vmc": VMC_CATEGORIES, "cambrian": CAMBRIAN_CATEGORIES}


def ordered(names: Iterable[str], order: Sequence[str] = NAMES) -> list[str]:
    """``names`` in ``order``, unknown ones after it, sorted."""
    found = set(names)
    return [n for n in order if n in found] + sorted(found - set(order))


def _reorder(d: dict[str, Any], order: Sequence[str] = NAMES) -> dict[str, Any]:
    return {k: d[k] for k in ordered(d, order)}


@dataclass
class StudyResults:
    """Everything the report shows; ``None`` / empty where a stage has not run."""

    root: Path
    study: dict[str, Any] | None = None
    control: dict[str, Any] | None = None
    analysis: dict[str, Any] | None = None
    suite: dict[str, dict[str, Any]] = field(default_factory=dict)
    vs_clip: dict[str, dict[str, Any]] = field(default_factory=dict)
    losses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # VLM name -> why no comparison
    sanity: dict[str, dict[str, Any]] = field(default_factory=dict)  # VLM -> real vs blank
    lm_context: dict[str, Any] | None = None  # does the LM read its picture slot?
    oracle: dict[str, Any] | None = None  # does the recipe use ground-truth image tokens?
    curves: dict[str, Any] | None = None  # the control at every snapshot (evaluate.curves)
    matched: dict[str, Any] | None = None  # the accuracy-matched sensitivity analysis
    # the stages the study planned (the report stage's inputs); None when the report is built
    # outside a study run, so what is missing cannot be told from what was never planned
    planned: list[str] | None = None

    @property
    def planned_vlms(self) -> list[str] | None:
        """The VLMs the study trains (the oracle included); None when the plan is unknown."""
        if self.planned is None:
            return None
        return [name.removeprefix("vlm/") for name in self.planned if name.startswith("vlm/")]

    def planned_vlm(self, name: str) -> bool:
        """Whether the study trains the VLM ``name`` (True when the plan is unknown)."""
        vlms = self.planned_vlms
        return vlms is None or name in vlms

    @property
    def preview(self) -> Path | None:
        path = self.root / "preview" / "preview.png"
        return path if path.is_file() else None

    def analysis_figure(self, name: str) -> Path | None:
        path = self.root / "analysis" / name
        return path if self.analysis is not None and path.is_file() else None


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def _metrics(path: Path) -> list[dict[str, Any]]:
    """Logged rows with a loss; a line cut by a live writer is skipped, not an error."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("loss"), int | float):
            rows.append(row)
    return rows


def _stages(root: Path) -> list[dict[str, Any]]:
    """Every stage directory (depth <= 2, or 3 in a replicate) with its state and, when done,
    its seconds and the precision it ran in."""
    found = []
    markers = ("*/stage*.json", "*/*/stage*.json", "replicate*/*/*/stage*.json")
    for marker in sorted(m for pattern in markers for m in root.glob(pattern)):
        if marker.name not in ("stage.json", "stage.pending.json"):
            continue
        done = marker.name == "stage.json"
        if not done and (marker.parent / "stage.json").is_file():
            continue
        record = _json(marker) or {}
        name = record.get("name") or str(marker.parent.relative_to(root))
        summary = (record.get("summary") or {}) if done else {}
        seconds = summary.get("seconds")
        precision = summary.get("precision")  # stages that run a network record it
        # the report stage is pending while it writes the report that lists it
        state = "done" if done else ("writing this report" if name == "report" else "started")
        found.append({"name": name, "state": state, "seconds": seconds, "precision": precision})

    def rank(s: dict[str, Any]) -> tuple[int, int, str]:
        head, _, tail = s["name"].partition("/")
        first = _STAGE_ORDER.index(head) if head in _STAGE_ORDER else len(_STAGE_ORDER)
        return (first, NAMES.index(tail) if tail in NAMES else len(NAMES), s["name"])

    return sorted(found, key=rank)


def _planned(root: Path) -> list[str] | None:
    """The report stage's inputs: every stage of the study (``study.stages.report_stage``)."""
    for marker in ("stage.pending.json", "stage.json"):
        record = _json(root / "report" / marker)
        if record is not None and isinstance(record.get("inputs"), dict):
            return sorted(record["inputs"])
    return None


def _suite_results(path: Path) -> dict[str, Any]:
    """results.json with benchmarks in the registry's order and categories in each view's."""
    res = _json(path) or {}
    res["benchmarks"] = _reorder(res.get("benchmarks", {}), list(BENCHMARKS))
    res["categories"] = {
        view: _reorder(cats, _CATEGORIES.get(view, ()))
        for view, cats in res.get("categories", {}).items()
    }
    return res


def load_study_results(study_dir: str | Path) -> StudyResults:
    """Load a (possibly partial) study; paired VLM differences against ``clip`` are computed
    here with ``suite.compare`` (they need ``per_item.csv``, not only ``results.json``)."""
    root = Path(study_dir)
    if not root.is_dir():
        raise DataError(f"{root}: study directory not found")
    res = StudyResults(
        root=root,
        study=_json(root / "study.json"),
        control=_json(root / "control" / "control.json"),
        analysis=_json(root / "analysis" / "analysis.json"),
        stages=_stages(root),
        lm_context=_json(root / "lm" / "context.json"),  # vlm.context.CONTEXT_JSON
        oracle=_json(root / "vlm" / "oracle" / "oracle.json"),  # vlm.oracle.ORACLE_JSON
        curves=_json(root / "control" / "curves.json"),  # evaluate.curves.CURVES_JSON
        matched=_json(root / "matched" / "matched.json"),  # evaluate.curves.MATCHED_JSON
        planned=_planned(root),
    )
    if res.control is not None and "encoders" in res.control:
        res.control["encoders"] = _reorder(res.control["encoders"])
    if res.curves is not None and "encoders" in res.curves:
        res.curves["encoders"] = _reorder(res.curves["encoders"])
    sens = (res.analysis or {}).get("sensitivity") or {}
    if "encoders" in sens:
        sens["encoders"] = _reorder(sens["encoders"])
    suite = root / "suite"
    for name in ordered(p.parent.name for p in suite.glob("*/results.json")):
        res.suite[name] = _suite_results(suite / name / "results.json")
    for name in res.suite:
        if name == "clip" or "clip" not in res.suite:
            continue
        try:
            res.vs_clip[name] = compare(suite / "clip", suite / name)
        except DataError as e:  # e.g. no per_item.csv, or scored on different items
            res.problems[name] = str(e)
    for path in sorted((root / "vlm").glob("*/sanity.json")):
        res.sanity[path.parent.name] = _json(path) or {}
    for name in ordered(p.parent.name for p in (root / "pretrain").glob("*/metrics.jsonl")):
        rows = _metrics(root / "pretrain" / name / "metrics.jsonl")
        if rows:
            res.losses[name] = rows
    return res
