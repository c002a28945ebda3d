"""The stages of a study: what each one hashes, where it writes, what it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from encoderlab.study.config import StudyConfig
from encoderlab.study.pipeline import Stage


def _training_precision(train_precision: str) -> str:
    """The precision a training stage runs in on this machine (``auto`` resolved)."""
    import torch

    from encoderlab.precision import resolve_precision

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_precision(train_precision, device)  # type: ignore[arg-type]


def _vlm_precision(cfg: StudyConfig) -> str:
    """Stages 1 and 2's training precision, e.g. ``fp32`` (or ``bf16/fp32`` if they differ)."""
    stages = (cfg.vlm.stage1.train.precision, cfg.vlm.stage2.train.precision)
    return "/".join(sorted({_training_precision(p) for p in stages}))


# VLM inference (sanity check, oracle check, suite) runs the fp32 weights without autocast.
VLM_INFERENCE_PRECISION = "fp32"


def data_root(cfg: StudyConfig, out: Path) -> Path:
    return Path(cfg.data_path) if cfg.data_path is not None else out / "data"


def data_stage(cfg: StudyConfig, out: Path) -> Stage:
    from encoderlab.data.synth import dataset_config, synthesize

    def run(stage: Stage) -> dict[str, Any]:
        if cfg.data_path is not None:  # fails early, one line, if unreadable or unlabelled
            from encoderlab.data.importer import check_study_data
            from encoderlab.progress import console

            not_run = check_study_data(Path(cfg.data_path))
            console.print("\n".join(not_run), highlight=False)
            return {"source": str(cfg.data_path), "not_run": not_run}
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


def vlm_source(cfg: StudyConfig, out: Path) -> Path:
    """What the VLM stages train on: the study's LLaVA-format JSON, else the training split."""
    return Path(cfg.vlm_data) if cfg.vlm_data is not None else split_dir(cfg, out, "train")


def _vlm_data_key(cfg: StudyConfig) -> dict[str, str]:
    """The VLM data in a stage's config (absent when it is the training split, as before)."""
    return {} if cfg.vlm_data is None else {"vlm_data": str(cfg.vlm_data)}


def preview_stage(cfg: StudyConfig, out: Path, data: Stage) -> Stage:
    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.data.preview import preview_source

        path = preview_source(split_dir(cfg, out, "train"), stage.directory / "preview.png")
        return {"path": str(path)}

    return Stage("preview", out / "preview", {"n": 32}, run, [data])


def _place(out: Path, root: str, *parts: str) -> tuple[str, Path]:
    """A stage's name and directory; ``root`` is "" or a replicate's ``replicate<k>``."""
    name = "/".join([*([root] if root else []), *parts])
    return name, out / name


def pretrain_stage(
    cfg: StudyConfig, out: Path, data: Stage, objective: str, root: str = ""
) -> Stage:
    from encoderlab.train.pretrain import PretrainConfig, pretrain

    pcfg = PretrainConfig(encoder=cfg.encoder, objective=cfg.objective, train=cfg.pretrain)

    def run(stage: Stage) -> dict[str, Any]:
        summary = pretrain(objective, pcfg, split_dir(cfg, out, "train"), stage.directory)
        kept = {k: summary[k] for k in ("steps", "seconds", "final", "skipped")}
        return {**kept, "precision": summary["precision"]["resolved"]}

    # Only this objective's own section is part of the key: tuning DINO's head must not
    # retrain CLIP (the run's config.json still records every section, for sibling diffs).
    own = {"seed", objective.replace("-", "_")}
    config = {
        "objective": objective,
        **pcfg.model_dump(mode="json", exclude={"objective"}),
        "objective_section": cfg.objective.model_dump(mode="json", include=own),
    }
    return Stage(*_place(out, root, "pretrain", objective), config, run, [data], distributed=True)


def control_stage(
    cfg: StudyConfig, out: Path, data: Stage, pretrain: list[Stage], root: str = ""
) -> Stage:
    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.evaluate.control import control_check

        runs = [p.directory for p in pretrain]
        result = control_check(
            runs,
            split_dir(cfg, out, "train"),
            split_dir(cfg, out, "test"),
            cfg.control,
            stage.directory,
            curves=True,  # every snapshot of every run too: curves.json
        )
        return {
            "matched": result.get("matched"),
            "powered": result.get("powered"),
            "precision": result["precision"]["resolved"],
        }

    config = cfg.control.check_key
    return Stage(*_place(out, root, "control"), config, run, [data, *pretrain])


MATCHED_ENCODERS = ("clip", "dino")  # the encoders the embedding findings compare


def matched_stage(
    cfg: StudyConfig, out: Path, data: Stage, control: Stage, pretrain: list[Stage]
) -> Stage:
    """The embedding claims at equal accuracy: the CLIP vs DINO sensitivity analysis on each
    one's checkpoint closest to the weakest objective's final linear probe (``curves.json``),
    on ``control.matched_scenes`` scenes; nothing to compute (and said so) when both matched
    checkpoints are the final ones, or without SynthWorld."""
    scenes = min(cfg.control.matched_scenes, cfg.analysis.scenes)  # never more than the analysis
    acfg = cfg.analysis.model_copy(update={"scenes": scenes})

    def run(stage: Stage) -> dict[str, Any]:
        import json

        from encoderlab.evaluate.curves import (
            CURVES_JSON,
            MATCHED_JSON,
            matched_encoder,
            matched_sensitivity,
        )
        from encoderlab.files import write_json

        curves = json.loads((control.directory / CURVES_JSON).read_text())
        matched = curves.get("matched") or {}
        found = matched.get("encoders", {})
        chosen = {n: found[n] for n in MATCHED_ENCODERS if n in found}
        record: dict[str, Any] = {
            "matched": matched,
            "compared": list(chosen),
            "config": acfg.model_dump(mode="json"),
        }
        if cfg.data_path is not None:
            record["skipped"] = "needs SynthWorld (counterfactual scenes)"
        elif len(chosen) < len(MATCHED_ENCODERS):
            record["skipped"] = f"needs curves of {' and '.join(MATCHED_ENCODERS)}"
        elif all(c["final"] for c in chosen.values()):
            record["skipped"] = (
                "every matched checkpoint is the final one: the accuracy-matched comparison is "
                "the compute-matched one (the analysis)"
            )
        else:
            runs = {p.name.rsplit("/", 1)[1]: p.directory for p in pretrain}
            encoders = {n: matched_encoder(runs[n], c["step"]) for n, c in chosen.items()}
            record["sensitivity"] = matched_sensitivity(
                encoders, cfg.world, acfg, stage.directory / "cache"
            )
        write_json(record, stage.directory / MATCHED_JSON)
        return {
            "steps": {n: c["step"] for n, c in chosen.items()},
            "skipped": record.get("skipped"),
        }

    sensitivity = {"factors", "split", "n_boot", "level", "partners", "seed", "precision"}
    config = {
        "encoders": list(MATCHED_ENCODERS),
        **acfg.model_dump(mode="json", include={"scenes", *sensitivity}),
    }
    return Stage("matched", out / "matched", config, run, [data, control, *pretrain])


def analysis_stage(
    cfg: StudyConfig, out: Path, data: Stage, pretrain: list[Stage], root: str = ""
) -> Stage:
    """Counterfactual sensitivity, mined pairs, attribute probes and CKA of every encoder."""

    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.evaluate.analyze import analyze
        from encoderlab.train.pretrain import load_encoder

        encoders = {p.name.rsplit("/", 1)[1]: load_encoder(p.directory) for p in pretrain}
        world = cfg.world if cfg.data_path is None else None
        result = analyze(
            encoders,
            stage.directory,
            cfg.analysis,
            world=world,
            data=split_dir(cfg, out, "test"),
            cache_dir=stage.directory / "cache",
        )
        return {"timing": result.get("timing", {}), "precision": result["precision"]["resolved"]}

    config = cfg.analysis.model_dump(mode="json")
    return Stage(*_place(out, root, "analysis"), config, run, [data, *pretrain])


CONTEXT_SAMPLES = 512  # held-out captions for the LM's picture-slot check


def lm_stage(cfg: StudyConfig, out: Path, data: Stage) -> Stage:
    """Stage 0: the embedded LM every VLM of the study starts from (or a check of lm_path)."""
    vcfg = cfg.vlm

    def run(stage: Stage) -> dict[str, Any]:
        if vcfg.lm_path is not None:
            from encoderlab.vlm.lm import load_lm

            load_lm(vcfg.lm_path)  # one line naming the path if it is not a causal LM
            return {"lm": vcfg.lm_path}
        from encoderlab.files import write_json
        from encoderlab.vlm.context import CONTEXT_JSON, context_check
        from encoderlab.vlm.data import read_world
        from encoderlab.vlm.lm import load_lm, pretrain_lm

        world = read_world(vlm_source(cfg, out), vcfg.stage0.examples, None, images=False)
        from encoderlab.train.distributed import init_distributed

        dist = init_distributed()  # stage 0 trains on every rank under torchrun
        root = pretrain_lm(vcfg, world, stage.directory, dist_info=dist)
        precision = _training_precision(vcfg.stage0.train.precision)
        val = split_dir(cfg, out, "val")
        if not dist.is_main or not val.is_dir():  # the check: rank 0's; needs a val split
            return {"lm": str(root), "precision": precision}
        # does the LM read its picture slot? (held-out captions; shown in the report)
        heldout = read_world(val, CONTEXT_SAMPLES, None, images=False)
        lm, tokenizer = load_lm(root / "lm")
        check = context_check(lm, tokenizer, heldout, vcfg)  # the mix stage 0 trained on
        write_json(check, stage.directory / CONTEXT_JSON)
        return {"lm": str(root), "reads_context": check["reads_context"], "precision": precision}

    config = {
        "lm": vcfg.lm.model_dump(mode="json"),
        "lm_path": vcfg.lm_path,
        "stage0": vcfg.stage0.model_dump(mode="json"),
        "max_text_tokens": vcfg.max_text_tokens,
        "n_turns": vcfg.n_turns,
        "mc_fraction": vcfg.mc_fraction,
        "short_option_questions": vcfg.short_option_questions,
        "seed": vcfg.seed,
        **_vlm_data_key(cfg),
    }
    return Stage("lm", out / "lm", config, run, [data], distributed=True)


def vlm_stage(
    cfg: StudyConfig, out: Path, name: str, lm: Stage, encoders: list[Stage], root: str = ""
) -> Stage:
    """One VLM (stage 1 + 2) on one encoder, or two for the fused VLM; same recipe for all."""

    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.errors import DataError
        from encoderlab.files import write_json
        from encoderlab.vlm import load
        from encoderlab.vlm.pipeline import train_vlm
        from encoderlab.vlm.sanity import image_sanity

        dirs = [e.directory for e in encoders]
        record = train_vlm(dirs, vlm_source(cfg, out), stage.directory, cfg.vlm, lm.directory)
        summary: dict[str, Any] = {
            "train_seconds": record.get("seconds"),
            "precision": _vlm_precision(cfg),
        }
        from encoderlab.train.distributed import init_distributed

        if not init_distributed().is_main:  # trained on every rank; checked on rank 0
            return summary
        try:  # does it use its image? Held-out questions with the real vs a blank image (the
            # report's VLM findings need it); real data without a val split has no such check
            sanity = image_sanity(
                load(stage.directory),
                split_dir(cfg, out, "val"),
                cfg.suite.check_questions,
                scoring=cfg.suite.scoring,
            )
        except DataError as err:
            summary["sanity"] = f"skipped: {err}"
        else:
            write_json(sanity, stage.directory / "sanity.json")
            summary["sanity"] = sanity
        return summary

    config = {
        "encoders": [e.name for e in encoders],
        **cfg.vlm.model_dump(mode="json"),
        "scoring": cfg.suite.scoring,  # the sanity check's (the report reads it in this one)
        "check_questions": cfg.suite.check_questions,
        **_vlm_data_key(cfg),
    }
    return Stage(*_place(out, root, "vlm", name), config, run, [lm, *encoders], distributed=True)


def oracle_stage(cfg: StudyConfig, out: Path, lm: Stage) -> Stage:
    """The recipe's positive control: a VLM trained like the others on ground-truth image
    tokens (``vlm.oracle``); the report reads it to say whether blind VLMs are the recipe's
    fault or their encoders'. SynthWorld studies only (the pipeline adds it for them)."""

    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.files import write_json
        from encoderlab.train.distributed import init_distributed
        from encoderlab.vlm.oracle import ORACLE_JSON, oracle_check

        data = split_dir(cfg, out, "train").parent  # the data set: train and val splits
        check = oracle_check(
            cfg.vlm,
            data,
            lm.directory,
            stage.directory,
            cfg.suite.check_questions,
            scoring=cfg.suite.scoring,
            grid=grid,
        )
        if init_distributed().is_main:  # trained (and checked) on every rank; rank 0 writes
            write_json(check, stage.directory / ORACLE_JSON)
        gain, precision = check["gain"], _vlm_precision(cfg)
        return {"uses_image": check["uses_image"], "gain": gain, "precision": precision}

    from encoderlab.vlm.oracle import oracle_grid

    # the grid the study's encoders give their VLMs (part of the config: it changes the oracle)
    grid = oracle_grid(cfg.encoder, cfg.vlm.pool_tokens)
    config = {
        "oracle": 1,
        "grid": grid,
        **cfg.vlm.model_dump(mode="json"),
        "scoring": cfg.suite.scoring,
        "check_questions": cfg.suite.check_questions,
    }
    return Stage("vlm/oracle", out / "vlm" / "oracle", config, run, [lm], distributed=True)


def suite_stage(cfg: StudyConfig, out: Path, name: str, vlm: Stage, root: str = "") -> Stage:
    """The VQA suite on one VLM; items are generated once, under ``suite-items``."""

    suite_cfg = cfg.suite.model_copy(update={"world": cfg.world})

    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.suite.harness import evaluate
        from encoderlab.vlm import load

        results = evaluate(load(vlm.directory), suite_cfg, stage.directory, out / "suite-items")
        return {"benchmarks": len(results["benchmarks"]), "precision": VLM_INFERENCE_PRECISION}

    config = suite_cfg.model_dump(mode="json")
    return Stage(*_place(out, root, "suite", name), config, run, [vlm])


def report_stage(out: Path, inputs: list[Stage]) -> Stage:
    """The HTML + markdown report, with findings computed from every stage's numbers."""

    def run(stage: Stage) -> dict[str, Any]:
        from encoderlab.report import build_report

        return {"html": str(build_report(out, stage.directory))}

    return Stage("report", out / "report", {"version": 1}, run, inputs)
