"""The stages of a study: what each one hashes, where it writes, what it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from encoderlab.study.config import StudyConfig
from encoderlab.study.pipeline import Stage


def data_root(cfg: StudyConfig, out: Path) -> Path:
    return Path(cfg.data_path) if cfg.data_path is not None else out / "data"


def data_stage(cfg: StudyConfig, out: Path) -> Stage:
    from encoderlab.data.synth import dataset_config, synthesize

    def run(stage: Stage) -> dict[str, Any]:
        if cfg.data_path is not None:
            from encoderlab.data.reader import index_source

            for split in ("train", "test"):
                index_source(Path(cfg.data_path) / split)  # fails early, one line, if unreadable
            return {"source": str(cfg.data_path)}
        synthesize(cfg.world, cfg.data, stage.directory / "shards", progress=True)
        return {"source": "synthworld"}

    config = {"path": str(cfg.data_path)} if cfg.data_path else dataset_config(cfg.world, cfg.data)
    stage = Stage("data", out / "data", config, run)
    return stage


def split_dir(cfg: StudyConfig, out: Path, split: str) -> Path:
    """Where a split's shards are: real data as given, SynthWorld under the data stage."""
    if cfg.data_path is not None:
        return Path(cfg.data_path) / split
    return out / "data" / "shards" / split


def preview_stage(cfg: StudyConfig, out: Path, data: Stage) -> Stage:
    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.data.preview import preview_source

        path = preview_source(split_dir(cfg, out, "train"), stage.directory / "preview.png")
        return {"path": str(path)}

    return Stage("preview", out / "preview", {"n": 32}, run, [data])


def pretrain_stage(cfg: StudyConfig, out: Path, data: Stage, objective: str) -> Stage:
    from encoderlab.train.pretrain import PretrainConfig, pretrain

    pcfg = PretrainConfig(encoder=cfg.encoder, objective=cfg.objective, train=cfg.pretrain)

    def run(stage: Stage) -> dict[str, Any]:
        summary = pretrain(objective, pcfg, split_dir(cfg, out, "train"), stage.directory)
        return {k: summary[k] for k in ("steps", "seconds", "final", "skipped")}

    config = {"objective": objective, **pcfg.model_dump(mode="json")}
    return Stage(f"pretrain/{objective}", out / "pretrain" / objective, config, run, [data])


def control_stage(cfg: StudyConfig, out: Path, data: Stage, pretrain: list[Stage]) -> Stage:
    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.evaluate.control import control_check

        runs = [p.directory for p in pretrain]
        result = control_check(
            runs,
            split_dir(cfg, out, "train"),
            split_dir(cfg, out, "test"),
            cfg.control,
            stage.directory,
        )
        return {"matched": result.get("matched")}

    return Stage(
        "control", out / "control", cfg.control.model_dump(mode="json"), run, [data, *pretrain]
    )


def analysis_stage(cfg: StudyConfig, out: Path, data: Stage, pretrain: list[Stage]) -> Stage:
    """Counterfactual sensitivity, mined pairs, attribute probes and CKA of every encoder."""

    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.evaluate.analyze import analyze
        from encoderlab.train.pretrain import load_encoder

        encoders = {p.name.split("/", 1)[1]: load_encoder(p.directory) for p in pretrain}
        world = cfg.world if cfg.data_path is None else None
        result = analyze(
            encoders,
            stage.directory,
            cfg.analysis,
            world=world,
            data=split_dir(cfg, out, "test"),
            cache_dir=stage.directory / "cache",
        )
        return {"timing": result.get("timing", {})}

    return Stage(
        "analysis", out / "analysis", cfg.analysis.model_dump(mode="json"), run, [data, *pretrain]
    )


def report_stage(out: Path, inputs: list[Stage]) -> Stage:
    """The HTML + markdown report, with findings computed from every stage's numbers."""

    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.report import build_report

        return {"html": str(build_report(out, stage.directory))}

    return Stage("report", out / "report", {"version": 1}, run, inputs)
