"""The study pipeline: data -> pretrain per objective -> control check -> ... -> report.

Stages form a fixed DAG. Each stage's key (its config plus the keys of its inputs) is known
before anything runs, so a rerun skips every finished stage whose key is unchanged, a changed
knob reruns exactly the stages downstream of it, and an interrupted study resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoderlab.progress import console
from encoderlab.study import cache
from encoderlab.study.config import StudyConfig


@dataclass
class Stage:
    name: str
    directory: Path
    config: dict[str, Any]
    run: Callable[[Stage], dict[str, Any] | None]
    inputs: list[Stage] = field(default_factory=list)

    @property
    def key(self) -> cache.StageKey:
        return cache.StageKey(self.name, self.config, {s.name: s.key.hash for s in self.inputs})


class Study:
    """Builds the stages of a study config under ``out`` and runs them in order."""

    def __init__(self, cfg: StudyConfig, out: Path, progress: bool = True) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.progress = progress
        self.stages = self._build()

    # -- the DAG --------------------------------------------------------------------------
    def _build(self) -> list[Stage]:
        from encoderlab.study import stages as st

        cfg, out = self.cfg, self.out
        data = st.data_stage(cfg, out)
        preview = st.preview_stage(cfg, out, data)
        pretrain = [st.pretrain_stage(cfg, out, data, name) for name in cfg.objectives]
        control = st.control_stage(cfg, out, data, pretrain)
        analysis = st.analysis_stage(cfg, out, data, pretrain)
        report = st.report_stage(out, [preview, *pretrain, control, analysis])
        return [data, preview, *pretrain, control, analysis, report]

    def plan(self) -> list[tuple[Stage, str]]:
        """Each stage with what a run would do to it: done, resume, stale or new."""
        return [(s, cache.status(s.directory, s.key)) for s in self.stages]

    def run(self) -> dict[str, Any]:
        """Run every stage that is not done; return ``{stage: status}`` as found."""
        found: dict[str, str] = {}
        start = time.perf_counter()
        for i, stage in enumerate(self.stages, 1):
            key = stage.key
            state = cache.begin(stage.directory, key)
            found[stage.name] = state
            head = f"[{i}/{len(self.stages)}] {stage.name}"
            if state == "done":
                console.print(f"{head}: done (cached)", highlight=False)
                continue
            console.rule(f"{head} ({state})", align="left")
            t0 = time.perf_counter()
            summary = stage.run(stage) or {}
            summary.setdefault("seconds", round(time.perf_counter() - t0, 2))
            cache.finish(stage.directory, key, summary)
            console.print(f"{head}: finished in {summary['seconds']:.0f} s", highlight=False)
        console.print(f"study finished in {time.perf_counter() - start:.0f} s -> {self.out}")
        return found
