"""The study pipeline: data -> pretrain per objective -> control (and learning curves) ->
analysis (and the accuracy-matched one) -> LM stage 0 -> VLM per encoder (and a fused one) ->
VQA suite per VLM -> report.

Stages form a fixed DAG. Each stage's key (its config plus the keys of its inputs) is known
before anything runs, so a rerun skips every finished stage whose key is unchanged, a changed
knob reruns exactly the stages downstream of it, and an interrupted study resumes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoderlab.errors import ConfigError, EncoderlabError
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
    # Under torchrun a distributed stage (training) runs on every rank; the others run on
    # rank 0 while the other ranks wait for its outputs.
    distributed: bool = False

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
        ``{stage: status}`` as found.

        Under torchrun every rank calls this: rank 0 holds the lock, decides each stage's
        status (and wipes stale directories), runs the single-process stages and marks every
        stage done; distributed stages run on every rank; no rank leaves a stage before its
        outputs and ``stage.json`` exist."""
        from encoderlab.train.distributed import Coordinator, DistInfo, init_distributed

        info = init_distributed() if os.environ.get("WORLD_SIZE", "1") != "1" else DistInfo()
        ranks = Coordinator(info)
        if not info.is_main:
            error = ranks.share()  # rank 0's lock: held, or why not
            if error is not None:
                raise cache.StudyLocked(error)
            found = self._run(only, info, ranks)
            ranks.close()
            return found
        try:
            lock = cache.study_lock(self.out)  # one study per directory (a second one refuses)
            lock.__enter__()
        except cache.StudyLocked as err:
            ranks.share(str(err))
            raise
        try:
            ranks.share(None)
            found = self._run(only, info, ranks)
        finally:
            lock.__exit__(None, None, None)
        ranks.close()
        return found

    def _run(self, only: list[str] | None, info: Any, ranks: Any) -> dict[str, Any]:
        main = info.is_main
        say = console.print if main else (lambda *a, **k: None)
        found: dict[str, str] = {}
        start = time.perf_counter()
        stages = self.select(only) if only else self.stages
        for i, stage in enumerate(stages, 1):
            key = stage.key
            state = ranks.share(cache.begin(stage.directory, key) if main else None)
            found[stage.name] = state
            head = f"[{i}/{len(stages)}] {stage.name}"
            if state == "done":
                say(f"{head}: done (cached)", highlight=False)
                continue
            if main:
                console.rule(f"{head} ({state})", align="left")
            here = stage.distributed or main
            t0 = time.perf_counter()
            summary: dict[str, Any] = {}
            failed: str | None = None
            if here:
                try:
                    summary = stage.run(stage) or {}
                except BaseException as err:
                    if stage.distributed or not info.distributed:
                        raise  # torchrun stops the other ranks
                    failed = f"{type(err).__name__}: {err}"
                    ranks.gather(failed)  # let the waiting ranks go, then fail here
                    raise
            failures = [f for f in ranks.gather(failed if here else None) if f]
            if failures:
                raise EncoderlabError(f"{stage.name} failed on rank 0 ({failures[0]})")
            ran = [r for r, flag in enumerate(ranks.gather(here)) if flag]
            if main:
                summary.setdefault("seconds", round(time.perf_counter() - t0, 2))
                if info.distributed:
                    summary["ranks"] = ran  # which ranks ran it (each stage once, or on all)
                cache.finish(stage.directory, key, summary)
                console.print(f"{head}: finished in {summary['seconds']:.0f} s", highlight=False)
            ranks.share()  # no rank goes on before stage.json is written
        say(f"study finished in {time.perf_counter() - start:.0f} s -> {self.out}")
        return found
