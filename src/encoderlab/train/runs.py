"""Run directories: config on disk, and how a run differs from its siblings.

A study keeps its runs side by side (``pretrain/clip``, ``pretrain/dino``...). Each run writes
``config.json``; ``siblings.json`` lists, for every other run in the same parent directory, the
config keys whose values differ, so a reader sees at a glance that only the objective changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from encoderlab.files import write_json


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    """Keys whose values differ between two configs, as ``{key: [a_value, b_value]}``."""
    fa, fb = flatten(a), flatten(b)
    return {
        k: [fa.get(k), fb.get(k)] for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)
    }


def record_sibling_diffs(run_dir: Path) -> dict[str, dict[str, list[Any]]]:
    """Write ``siblings.json`` for ``run_dir`` and refresh it in every sibling run."""
    run_dir = Path(run_dir)
    runs = {
        p.name: json.loads((p / "config.json").read_text())
        for p in sorted(run_dir.parent.iterdir())
        if (p / "config.json").is_file()
    }
    mine: dict[str, dict[str, list[Any]]] = {}
    for name, cfg in runs.items():
        diffs = {other: config_diff(cfg, ocfg) for other, ocfg in runs.items() if other != name}
        write_json(diffs, run_dir.parent / name / "siblings.json")
        if name == run_dir.name:
            mine = diffs
    return mine
