"""The study pipeline: data -> pretrain per objective -> control (and learning curves) ->
analysis (and the accuracy-matched one) -> LM stage 0 -> VLM per encoder (and a fused one) ->
VQA suite per VLM -> report.

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

from encoderlab.errors import ConfigError
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
        cfg.check_paths()
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
        lm = st.lm_stage(cfg, out, data)
        # the VLM recipe's positive control needs SynthWorld's ground truth: not on real data
        oracle = [st.oracle_stage(cfg, out, lm)] if cfg.data_path is None else []
        pretrain, encoder_checks, vlms = self._replicate(cfg, data, lm, "")
        done = [preview, *pretrain, *encoder_checks, lm, *oracle, *vlms]
        for k in range(1, cfg.replicates):  # same data and LM, other training seeds
            for group in self._replicate(cfg.replicate(k), data, lm, f"replicate{k}"):
                done += group
        report = st.report_stage(out, done)
        return [data, *done, report]

    def _replicate(
        self, cfg: StudyConfig, data: Stage, lm: Stage, root: str
    ) -> tuple[list[Stage], list[Stage], list[Stage]]:
        """One replicate's stages: pretraining; control and analysis; VLMs and their suites."""
        from encoderlab.study import stages as st

        out = self.out
        pretrain = [st.pretrain_stage(cfg, out, data, name, root) for name in cfg.objectives]
        control = st.control_stage(cfg, out, data, pretrain, root)
        analysis = st.analysis_stage(cfg, out, data, pretrain, root)
        by_objective = dict(zip(cfg.objectives, pretrain, strict=True))
        vlms = [
            st.vlm_stage(cfg, out, name, lm, [by_objective[o] for o in objectives], root)
            for name, objectives in cfg.vlms.items()
        ]
        suites = [st.suite_stage(cfg, out, v.name.rsplit("/", 1)[1], v, root) for v in vlms]
        checks = [control, analysis]
        if not root:  # the accuracy-matched analysis: replicate 0's, as the report's tables
            checks.append(st.matched_stage(cfg, out, data, control, pretrain))
        return pretrain, checks, [*vlms, *suites]

    def plan(self) -> list[tuple[Stage, str]]:
        """Each stage with what a run would do to it: done, resume, stale or new."""
        return [(s, cache.status(s.directory, s.key)) for s in self.stages]

    def select(self, only: list[str]) -> list[Stage]:
        """The stages named (exactly or by a ``prefix/``) and, transitively, their inputs."""
        wanted = [
            s
            for s in self.stages
            if any(s.name == o or s.name.startswith(o.rstrip("/") + "/") for o in only)
        ]
        if not wanted:
            names = ", ".join(s.name for s in self.stages)
            raise ConfigError(f"--only {' '.join(only)}: no such stage; stages: {names}")
        keep: set[str] = set()
        todo = list(wanted)
        while todo:
            stage = todo.pop()
            if stage.name not in keep:
                keep.add(stage.name)
                todo.extend(stage.inputs)
        return [s for s in self.stages if s.name in keep]

    def run(self, only: list[str] | None = None) -> dict[str, Any]:
        """Run every stage that is not done (or just ``only`` and their inputs); return
        ``{stage: status}`` as found."""
        with cache.study_lock(self.out):  # one study per directory (a second one refuses)
            return self._run(only)

    def _run(self, only: list[str] | None) -> dict[str, Any]:
        found: dict[str, str] = {}
        start = time.perf_counter()
        stages = self.select(only) if only else self.stages
        for i, stage in enumerate(stages, 1):
            key = stage.key
            state = cache.begin(stage.directory, key)
            found[stage.name] = state
            head = f"[{i}/{len(stages)}] {stage.name}"
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
