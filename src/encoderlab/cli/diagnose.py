"""``encoderlab diagnose ...``: look inside a finished study or run when a finding surprises.

Each command reads what a study (or a single ``vlm train`` / stage-0 run) already wrote, trains
nothing, and prints a short table:

- ``vlm-answers``: what a VLM answers, and whether its image changes that (multiple choice by
  letter and by cloze, real vs blank image; greedy short answers per question type);
- ``lm-context``: whether a stage-0 LM reads its picture slot (own vs another sample's text);
- ``sensitivity-by-value``: which value changes drive one factor's sensitivity, per encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from encoderlab.cli import app
from encoderlab.errors import DataError

diagnose_app = typer.Typer(
    help="Diagnostics that read a finished study or run (nothing is trained).",
    no_args_is_help=True,
)
app.add_typer(diagnose_app, name="diagnose")

SHORT_TYPES = "object,colour,count,read_word"


def _data_root(data: Path) -> Path:
    """A data set root, or a study's data stage directory (``runs/S/data``)."""
    from encoderlab.data.shards import dataset_root

    root = dataset_root(data)
    if not (root / "val").is_dir():
        raise DataError(f"{data}: no val split (give a data set root or a study's data directory)")
    return root


def _short_answers(vlm: Any, data: Path, qtype: str, n: int) -> tuple[dict[str, float], list, list]:
    """Greedy short answers to ``n`` held-out questions of one type, real vs blank image."""
    import numpy as np
    import torch

    from encoderlab.data.reader import SampleDataset, index_source
    from encoderlab.suite.questions import generate
    from encoderlab.vlm.sanity import BLANK_VALUE

    refs, _ = index_source(data / "val")
    dataset = SampleDataset(refs, image_size=vlm.tower.image_size)
    images, prompts, truth = [], [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if "skip" in item:
            continue
        q = generate(qtype, item["meta"], np.random.default_rng([0, i]))
        if q is None or not q.short_ok:
            continue
        images.append(item["image"])
        prompts.append(q.short_prompt())
        truth.append(q.answer.lower())
        if len(images) >= n:
            break
    if not images:
        return {"real": float("nan"), "blank": float("nan")}, [], []
    batch = torch.stack(images)
    acc, said = {}, {}
    for name, x in (("real", batch), ("blank", torch.full_like(batch, BLANK_VALUE))):
        said[name] = vlm.generate(x, prompts, max_new_tokens=6)
        hits = [a.strip().lower().rstrip(".") == t for a, t in zip(said[name], truth, strict=True)]
        acc[name] = float(np.mean(hits))
    return acc, said["real"][:4], truth[:4]


@diagnose_app.command("vlm-answers")
def vlm_answers(
    vlm_dir: Path = typer.Argument(..., help="a VLM checkpoint directory (runs/S/vlm/clip)"),
    data: Path = typer.Option(..., help="the data set (root, or a study's data directory)"),
    n: int = typer.Option(128, min=1, help="held-out questions per short-answer type"),
    types: str = typer.Option(SHORT_TYPES, help="short-answer question types ('' for none)"),
) -> None:
    """What a VLM answers with its real image vs a blank one (held-out val questions)."""
    from encoderlab.suite.questions import QUESTION_TYPES
    from encoderlab.vlm import load
    from encoderlab.vlm.sanity import image_sanity

    wanted = [t for t in types.split(",") if t]
    unknown = [t for t in wanted if t not in QUESTION_TYPES]
    if unknown:
        raise DataError(f"--types: unknown question type {unknown[0]!r}")
    root = _data_root(data)
    vlm = load(vlm_dir)
    check = image_sanity(vlm, root, n=2 * n, scoring="letter")  # and cloze beside it
    print(f"{'multiple choice':<16} {'n':>4} {'real':>7} {'blank':>7}  real - blank [95% CI]")
    for name, r in (("by letter", check), ("by cloze", check["cloze"])):
        print(
            f"{name:<16} {r['n']:4d} {100 * r['real']:6.1f}% {100 * r['blank']:6.1f}%  "
            f"{100 * r['gain']:+.1f} [{100 * r['gain_low']:+.1f}, {100 * r['gain_high']:+.1f}]"
        )
    if wanted:
        print(f"\n{'short answer':<16} {'real':>7} {'blank':>7}  answers (real image) vs truth")
    for qtype in wanted:
        acc, said, truth = _short_answers(vlm, root, qtype, n)
        print(
            f"{qtype:<16} {100 * acc['real']:6.1f}% {100 * acc['blank']:6.1f}%  {said} vs {truth}"
        )


def _lm_dir(path: Path) -> Path:
    """A stage-0 LM directory from a study directory, its ``lm`` stage, or an ``lm-<hash>``."""
    if (path / "lm" / "config.json").is_file():
        return path
    for candidate in (path, path / "lm"):
        found = sorted(candidate.glob("lm-*/lm/config.json")) if candidate.is_dir() else []
        if len(found) == 1:
            return found[0].parent.parent
    raise DataError(f"{path}: no stage-0 LM (a study directory, its lm/ or an lm-<hash>/)")


@diagnose_app.command("lm-context")
def lm_context(
    path: Path = typer.Argument(..., help="a study directory, its lm/ stage, or an lm-<hash>/"),
    data: Path = typer.Option(..., help="the data set (root, or a study's data directory)"),
    n: int = typer.Option(512, min=2, help="held-out samples"),
    full: bool = typer.Option(False, help="complete scene descriptions in the slot, not captions"),
) -> None:
    """Does a stage-0 LM read its picture slot? Answer loss with own vs another sample's text."""
    from encoderlab.vlm.config import VLMConfig
    from encoderlab.vlm.context import context_check, full_description
    from encoderlab.vlm.data import read_world
    from encoderlab.vlm.lm import lm_info, load_lm

    root = _lm_dir(path)
    val = read_world(_data_root(data) / "val", n, None, images=False)
    if full:
        val.texts = [full_description(m) or t for m, t in zip(val.metas, val.texts, strict=True)]
    lm, tokenizer = load_lm(root / "lm")
    # the question mix this LM was trained on (an lm.json older than that record: the default)
    recorded = lm_info(root).get("recipe")
    # a record older than these keys: those LMs were trained on vicuna_v1 turns, types alike
    legacy = {"template": "vicuna_v1", "question_weights": {}}
    recipe = VLMConfig(**{**legacy, **recorded}) if recorded else VLMConfig()
    check = context_check(lm, tokenizer, val, recipe)
    mix = f"{recipe.n_turns} turns, {recipe.mc_fraction:g} multiple choice, {recipe.template}"
    source = "as trained" if recorded else "the default recipe's: lm.json does not record its own"
    print(f"LM {root}: held-out loss per answer token (nats), picture slot own vs other")
    print(f"stage-2 mix {source}: {mix}")
    print(f"{'check':<26} {'own':>7} {'other':>7}  gap [95% CI]")
    for name, label in (("questions", "questions (stage-2 mix)"), ("describe", "describe (copy)")):
        r = check[name]
        print(
            f"{label:<26} {r['own']:7.3f} {r['other']:7.3f}  "
            f"{r['gap']:+.3f} [{r['gap_low']:+.3f}, {r['gap_high']:+.3f}]"
        )
    print(f"reads its picture slot: {check['reads_context']} ({check['n']} conversations)")


def _changed_values(original: Any, variant: Any, factor: str) -> tuple[str, str]:
    """The factor's value before and after (object factors: on the object that changed)."""
    a, b = original.to_meta(), variant.to_meta()
    for obj_a, obj_b in zip(a.get("objects", []), b.get("objects", []), strict=False):
        if obj_a.get(factor) != obj_b.get(factor):
            return str(obj_a.get(factor)), str(obj_b.get(factor))
    return str(a.get(factor)), str(b.get(factor))


def _stage_config(study: Path, stage: str) -> dict[str, Any]:
    import json

    path = study / stage / "stage.json"
    if not path.is_file():
        raise DataError(f"{study}: no finished {stage} stage ({path} missing)")
    return json.loads(path.read_text())["config"]


@diagnose_app.command("sensitivity-by-value")
def sensitivity_by_value(
    study: Path = typer.Argument(..., help="a study directory with its data and analysis stages"),
    factor: str = typer.Option("style", help="the factor to split"),
    a: str = typer.Option("clip", help="first encoder (a pretrain/ run of the study)"),
    b: str = typer.Option("dino", help="second encoder"),
) -> None:
    """A factor's sensitivity split by the value each variant moves from / to, A - B with CIs.

    Reads the study's analysis and world settings and its cached embeddings (nothing is
    re-embedded once the analysis stage has run)."""
    import numpy as np

    from encoderlab.data.synthworld import WorldConfig
    from encoderlab.evaluate.analyze import AnalysisConfig
    from encoderlab.evaluate.embeddings import embed
    from encoderlab.evaluate.sensitivity import (
        build_counterfactual_set,
        factor_distances,
        random_partners,
    )
    from encoderlab.evaluate.stats import (
        bootstrap,
        bootstrap_indices,
        paired_difference,
        ratio_of_means,
    )
    from encoderlab.train.pretrain import load_encoder

    cfg = AnalysisConfig.model_validate(_stage_config(study, "analysis"))
    world = WorldConfig.model_validate(_stage_config(study, "data")["world"])
    if factor not in cfg.factors:
        raise DataError(f"--factor {factor!r}: the analysis measured {', '.join(cfg.factors)}")
    for name in (a, b):
        if not (study / "pretrain" / name).is_dir():
            raise DataError(f"{study / 'pretrain' / name}: no such pretraining run")
    cset = build_counterfactual_set(world, cfg.scenes, cfg.factors, cfg.split, cfg.workers)
    partners = random_partners(len(cset.scenes), cfg.partners, cfg.seed)
    dists = {}
    for name in (a, b):
        emb = embed(
            load_encoder(study / "pretrain" / name),
            cset.images,
            precision=cfg.precision,
            cache_dir=study / "analysis" / "cache",
        )
        dists[name] = factor_distances(emb, cset, partners)
    src = cset.source[factor]
    pairs = [
        _changed_values(cset.scenes[i], v, factor)
        for i, v in zip(src, cset.variants[factor], strict=True)
    ]
    origins, targets = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    print(f"{factor}: {len(src)} variants; sensitivity = mean(1 - cos) / random-pair baseline")
    print(f"{'variant':>16} {'n':>5} {a:>10} {b:>10}  {a} - {b} [95% CI]")
    for label, keep in [
        *((f"to {t}", targets == t) for t in sorted(set(targets))),
        *((f"from {o}", origins == o) for o in sorted(set(origins))),
    ]:
        rows = src[keep]
        cols = {n: (d.factor[factor][rows], d.baseline[rows]) for n, d in dists.items()}
        idx = bootstrap_indices(len(rows), 1000, 0)
        est = {
            n: bootstrap(*c, statistic=ratio_of_means, indices=idx).value for n, c in cols.items()
        }
        diff = paired_difference(cols[a], cols[b], statistic=ratio_of_means, indices=idx)
        print(
            f"{label:>16} {len(rows):5d} {est[a]:10.3f} {est[b]:10.3f}  "
            f"{diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
        )
