"""Pool a study's replicates (the same study under other training seeds) for the findings.

A study with ``replicates: k`` writes replicate 0 at its root and replicate ``i`` under
``replicate<i>/`` with the same layout. The findings read the same dicts whatever ``k`` is:
this module returns them with every number a verdict rests on replaced by its pooled value
(``stats.pool_replicates``: the mean over replicates, with an interval that adds the
between-seed variance to the test-set sampling error). Shapes are those of ``load``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encoderlab.evaluate.stats import pool_replicates
from encoderlab.report.load import StudyResults, load_study_results

__all__ = ["Pooled", "load_replicates", "pool"]


def load_replicates(root: Path) -> list[StudyResults]:
    """Replicate ``1..k-1`` of the study at ``root`` (``replicate<i>/``), in order."""
    found = []
    i = 1
    while (root / f"replicate{i}").is_dir():
        found.append(load_study_results(root / f"replicate{i}"))
        i += 1
    return found


@dataclass
class Pooled:
    """The findings' inputs, pooled over ``replicates`` studies."""

    control: dict[str, Any] | None
    analysis: dict[str, Any] | None
    vs_clip: dict[str, dict[str, Any]]
    sanity: dict[str, dict[str, Any]]
    replicates: int


def _pool_fields(
    dicts: Sequence[dict[str, Any] | None], keys: tuple[str, str, str]
) -> dict[str, Any] | None:
    """A copy of ``dicts[0]`` with ``keys`` = (value, low, high) pooled over every dict that
    has them (unpooled if the first lacks them; None if it is None). Replicates that lack the
    number are left out."""
    first = dicts[0]
    if first is None or any(first.get(k) is None for k in keys):
        return None if first is None else dict(first)
    rows = [
        tuple(float(d[k]) for k in keys)
        for d in dicts
        if d and all(d.get(k) is not None for k in keys)
    ]
    out = dict(first)
    out.update(zip(keys, pool_replicates(rows), strict=True))
    out["replicates"] = len(rows)
    return out


def _control(controls: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    base = copy.deepcopy(controls[0])
    if base is None:
        return None
    paired = [((c or {}).get("paired") or {}).get("clip_minus_dino") for c in controls]
    if paired[0] is not None:
        base["paired"]["clip_minus_dino"] = _pool_fields(paired, ("value", "low", "high"))
    # The power rule reads each encoder's accuracies: the replicates' means.
    for name, targets in (base.get("encoders") or {}).items():
        for target, row in targets.items():
            for key in ("linear", "knn"):
                values = [
                    (((c or {}).get("encoders") or {}).get(name) or {}).get(target, {}).get(key)
                    for c in controls
                ]
                values = [v for v in values if v is not None]
                if values:
                    row[key] = sum(values) / len(values)
    return base


def _sensitivity_factors(analysis: dict[str, Any] | None, a: str, b: str) -> dict[str, Any]:
    """The per-factor A − B sensitivity differences of one analysis ({} if not compared)."""
    for comp in ((analysis or {}).get("sensitivity") or {}).get("comparisons", []):
        if (comp["a"], comp["b"]) == (a, b):
            return comp["factors"]
    return {}


def _analysis(analyses: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    base = copy.deepcopy(analyses[0])
    for comp in ((base or {}).get("sensitivity") or {}).get("comparisons") or []:
        each = [_sensitivity_factors(a, comp["a"], comp["b"]) for a in analyses]
        for factor in comp["factors"]:
            same = [factors.get(factor) for factors in each]
            comp["factors"][factor] = _pool_fields(same, ("value", "low", "high"))
    return base


def _comparison(cmps: list[dict[str, Any] | None]) -> dict[str, Any]:
    base = copy.deepcopy(cmps[0]) or {}
    for view, cats in (base.get("categories") or {}).items():
        for name in cats:
            same = [(((c or {}).get("categories") or {}).get(view) or {}).get(name) for c in cmps]
            cats[name] = _pool_fields(same, ("diff", "lo", "hi"))
    return base


def _sanity(checks: list[dict[str, Any] | None]) -> dict[str, Any]:
    base = _pool_fields(checks, ("gain", "gain_low", "gain_high")) or {}
    present = [c for c in checks if c]
    for key in ("real", "blank"):
        if present and all(key in c for c in present):
            base[key] = sum(c[key] for c in present) / len(present)
    if "gain_low" in base:
        base["uses_image"] = bool(base["gain_low"] > 0)
    return base


def pool(results: Sequence[StudyResults]) -> Pooled:
    """``results[0]`` (replicate 0) with the numbers of every finding pooled over all."""
    first = results[0]
    return Pooled(
        control=_control([r.control for r in results]),
        analysis=_analysis([r.analysis for r in results]),
        vs_clip={
            name: _comparison([r.vs_clip.get(name) for r in results]) for name in first.vs_clip
        },
        sanity={name: _sanity([r.sanity.get(name) for r in results]) for name in first.sanity},
        replicates=len(results),
    )
