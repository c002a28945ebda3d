"""Paired comparison of two VLMs on the same suite: differences with paired-bootstrap CIs.

Both result directories must come from ``harness.evaluate`` on the same items. Units (items, or
pairs for pair accuracy) are matched by benchmark and unit id; each benchmark's difference
(B - A) and each category's (mean over its benchmarks, units re-weighted as in the harness)
gets a paired-bootstrap 95% CI that resamples the same units for both models. A difference is
"significant" when its CI excludes 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encoderlab.errors import DataError
from encoderlab.evaluate.stats import paired_bootstrap_diff
from encoderlab.suite.harness import category_values
from encoderlab.suite.registry import CAMBRIAN_CATEGORIES, VMC_CATEGORIES

__all__ = ["compare", "compare_markdown"]


def _load(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    results, items = run_dir / "results.json", run_dir / "per_item.csv"
    for path in (results, items):
        if not path.is_file():
            raise DataError(f"{path}: not found (is {run_dir} a suite results directory?)")
    frame = pd.read_csv(items, dtype={"benchmark": str, "unit": str})
    return json.loads(results.read_text()), frame


def compare(dir_a: str | Path, dir_b: str | Path, n: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per benchmark and per category (both views): B - A with a paired-bootstrap CI."""
    res_a, items_a = _load(Path(dir_a))
    res_b, items_b = _load(Path(dir_b))
    merged = items_a.merge(items_b, on=["benchmark", "unit"], suffixes=("_a", "_b"))
    if merged.empty:
        raise DataError(f"{dir_a} and {dir_b} share no scored items (different suites?)")
    a_vals: dict[str, np.ndarray] = {}
    b_vals: dict[str, np.ndarray] = {}
    out: dict[str, Any] = {
        "a": res_a["checkpoint"],
        "b": res_b["checkpoint"],
        "benchmarks": {},
        "categories": {},
    }
    for name, group in merged.groupby("benchmark", sort=False):
        a, b = group["score_a"].to_numpy(float), group["score_b"].to_numpy(float)
        a_vals[str(name)], b_vals[str(name)] = a, b
        out["benchmarks"][str(name)] = _diff(a, b, n, seed)
    info = res_a["benchmarks"]
    for view, cats in (("vmc", VMC_CATEGORIES), ("cambrian", CAMBRIAN_CATEGORIES)):
        out["categories"][view] = {}
        for cat in cats:
            members = [m for m in a_vals if info.get(m, {}).get(view) == cat]
            if members:
                a = category_values(a_vals, members)
                b = category_values(b_vals, members)
                out["categories"][view][cat] = {**_diff(a, b, n, seed), "benchmarks": members}
    everything = list(a_vals)
    out["overall"] = _diff(
        category_values(a_vals, everything), category_values(b_vals, everything), n, seed
    )
    return out


def _diff(a: np.ndarray, b: np.ndarray, n: int, seed: int) -> dict[str, Any]:
    diff, lo, hi = paired_bootstrap_diff(b, a, n=n, seed=seed)
    return {
        "n": len(a),
        "a": float(a.mean()),
        "b": float(b.mean()),
        "diff": float(diff),
        "lo": float(lo),
        "hi": float(hi),
        "significant": bool(lo > 0 or hi < 0),
    }


def compare_markdown(cmp: dict[str, Any]) -> str:
    """Tables of B - A (in points) per benchmark and per category; * marks significance."""

    def row(name: str, r: dict[str, Any]) -> str:
        star = " *" if r["significant"] else ""
        return (
            f"| {name} | {r['n']} | {100 * r['a']:.1f} | {100 * r['b']:.1f} | "
            f"{100 * r['diff']:+.1f} [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]{star} |"
        )

    head = ["| name | n | A | B | B - A [95% CI] |", "|---|---:|---:|---:|---|"]
    lines = [f"# Paired comparison: A = `{cmp['a']}`, B = `{cmp['b']}`", "", *head]
    lines += [row(k, v) for k, v in cmp["benchmarks"].items()]
    titles = {"vmc": "VMCBench categories", "cambrian": "Cambrian-1 categories"}
    for view, cats in cmp["categories"].items():
        lines += ["", f"## {titles[view]}", "", *head]
        lines += [row(k, v) for k, v in cats.items()]
    lines += ["", *head, row("overall", cmp["overall"]), ""]
    lines.append("`*`: the paired-bootstrap 95% CI excludes 0.")
    return "\n".join(lines)
