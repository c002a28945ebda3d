"""The embedding analysis of a set of encoders, end to end: what is each one sensitive to?

1. Counterfactual sensitivity on SynthWorld (needs a world): per encoder and factor, with
   bootstrap CIs, and paired differences for every pair of encoders.
2. On a labelled image set (the sensitivity originals, or ``data``): pair mining between every
   pair of encoders, linear probes per attribute, and linear CKA layer by layer.

Images are rendered or decoded once and shared; embeddings are cached under ``cache_dir``.
Writes ``analysis.json``, ``sensitivity.md`` and PNG figures to ``out_dir``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from encoderlab.config import StrictModel, config_hash
from encoderlab.data.synthworld import FACTORS, WorldConfig
from encoderlab.errors import ConfigError
from encoderlab.evaluate.attributes import (
    SYNTH_ATTRIBUTES,
    Labels,
    ProbeConfig,
    attribute_probes,
    synth_labels,
)
from encoderlab.evaluate.cka import cka_matrix
from encoderlab.evaluate.embeddings import (
    ImageSet,
    Precision,
    cached_json,
    device_of,
    embed,
    encoder_key,
    num_layers,
    resolve_precision,
)
from encoderlab.evaluate.figures import (
    pair_grid_name,
    plot_cka,
    plot_grouped_bars,
    plot_pair_grid,
)
from encoderlab.evaluate.imagesets import LabelledSet, load_labelled
from encoderlab.evaluate.pairs import PairConfig, mine_pairs, nearest_neighbours, random_pairs
from encoderlab.evaluate.sensitivity import (
    CounterfactualSet,
    build_counterfactual_set,
    compare_sensitivity,
    factor_distances,
    random_partners,
    sensitivity,
)
from encoderlab.evaluate.sensitivity_table import sensitivity_markdown
from encoderlab.evaluate.stats import bootstrap_indices
from encoderlab.files import write_json
from encoderlab.precision import precision_record
from encoderlab.progress import make_progress

__all__ = ["AnalysisConfig", "CKAConfig", "analyze", "encoder_pairs"]


class CKAConfig(StrictModel):
    images: int = Field(1000, ge=2, description="images (first of the labelled set) for CKA")
    kind: Literal["cls", "mean"] = "cls"


class AnalysisConfig(StrictModel):
    """Everything that defines an analysis besides its encoders and data."""

    scenes: int = Field(2000, ge=2, description="held-out SynthWorld object scenes")
    split: str = "analysis"
    factors: list[str] = Field(default_factory=lambda: list(FACTORS))
    attributes: list[str] | None = Field(None, description="probe/pair attributes; None: all")
    data_split: str = "test"
    max_images: int | None = Field(None, gt=0)
    image_size: int | None = Field(None, gt=0)
    batch_size: int = Field(256, gt=0)
    precision: Precision = "auto"
    n_boot: int = Field(1000, ge=10)
    level: float = Field(0.95, gt=0, lt=1)
    partners: int = Field(4, ge=1, description="random partners per scene for the baseline")
    seed: int = 0
    workers: int = Field(2, ge=1, description="render/decode processes")
    pairs: PairConfig = Field(default_factory=PairConfig)
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    cka: CKAConfig = Field(default_factory=CKAConfig)

    @field_validator("factors")
    @classmethod
    def _known_factors(cls, factors: list[str]) -> list[str]:
        unknown = [f for f in factors if f not in FACTORS]
        if unknown:
            raise ValueError(f"unknown factor {unknown[0]!r}; known: {', '.join(FACTORS)}")
        return factors


def encoder_pairs(names: list[str]) -> list[tuple[str, str]]:
    """Every unordered pair once, as (A, B) in the given order, except that a DINO-like
    encoder is always B, so "high A / low B" reads "language-supervised vs DINO" as in the
    paper."""
    out = []
    for a, b in itertools.combinations(names, 2):
        if "dino" in a.lower() and "dino" not in b.lower():
            a, b = b, a
        out.append((a, b))
    return out


def _json_safe(obj: Any) -> Any:
    """NaN/inf (an attribute with no pairs, a factor with no scenes) become null: strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _image_size(encoders: Mapping[str, Any], world: WorldConfig | None, cfg: AnalysisConfig) -> int:
    if cfg.image_size is not None:
        return cfg.image_size
    if world is not None:
        return world.image_size
    for enc in encoders.values():
        size = getattr(getattr(enc, "cfg", None), "image_size", None)
        if isinstance(size, int):
            return size
    return 224


def _sensitivity_section(
    encoders: Mapping[str, Any],
    cset: CounterfactualSet,
    finals: dict[str, np.ndarray],
    cfg: AnalysisConfig,
) -> dict[str, Any]:
    n = len(cset.scenes)
    partners = random_partners(n, cfg.partners, cfg.seed)
    indices = bootstrap_indices(n, cfg.n_boot, cfg.seed)
    dists = {name: factor_distances(finals[name], cset, partners) for name in encoders}
    per_encoder: dict[str, Any] = {}
    for name, dist in dists.items():
        est = sensitivity(dist, indices, cfg.level)
        per_encoder[name] = {
            "baseline_distance": float(dist.baseline.mean()),
            "factors": {
                f: {
                    **est[f].to_dict(),
                    "n": int(np.isfinite(dist.factor[f]).sum()),
                    "raw_distance": float(np.nanmean(dist.factor[f])),
                }
                for f in cset.factors
            },
        }
    comparisons = []
    for a, b in encoder_pairs(list(encoders)):
        diff = compare_sensitivity(dists[a], dists[b], indices, cfg.level)
        comparisons.append({"a": a, "b": b, "factors": {f: d.to_dict() for f, d in diff.items()}})
    return {
        "scenes": n,
        "split": cset.split,
        "factors": list(cset.factors),
        "variants": {f: len(v) for f, v in cset.variants.items()},
        "encoders": per_encoder,
        "comparisons": comparisons,
    }


class _Embedder:
    """Embeds images with every encoder, sharing settings, the cache and weight hashes."""

    def __init__(
        self, encoders: Mapping[str, Any], cfg: AnalysisConfig, cache: Path | None, bar: Any
    ):
        self.encoders = encoders
        self.cfg = cfg
        self.cache = cache
        self.bar = bar
        self.keys = {name: encoder_key(enc) for name, enc in encoders.items()}

    def __call__(self, name: str, images: ImageSet, what: str, **kw: Any) -> np.ndarray:
        return embed(
            self.encoders[name],
            images,
            batch_size=self.cfg.batch_size,
            precision=self.cfg.precision,
            cache_dir=self.cache,
            progress=self.bar,
            description=f"{what} {name}",
            key=self.keys[name],
            **kw,
        )

    def probe_cache(self, name: str, images: ImageSet, labels: Labels) -> Path | None:
        if self.cache is None or self.keys[name] is None:
            return None
        what = config_hash({"labels": labels, "probes": self.cfg.probes, "seed": self.cfg.seed})
        return self.cache / self.keys[name] / f"{images.key}-probes-{what}.json"


def _cka_section(
    embedder: _Embedder, images: ImageSet, cfg: AnalysisConfig
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    subset = images.head(cfg.cka.images)
    feats: dict[str, np.ndarray] = {}
    for name, enc in embedder.encoders.items():
        depth = num_layers(enc)
        if depth:
            layers = list(range(depth))
            feats[name] = embedder(name, subset, "CKA layers", layers=layers, kind=cfg.cka.kind)
        else:  # no per-block taps: the final embedding stands for the one layer
            feats[name] = embedder(name, subset, "CKA")[None]
    names = list(embedder.encoders)
    last = np.array(
        [[cka_matrix(feats[a][-1:], feats[b][-1:])[0, 0] for b in names] for a in names]
    )
    layerwise = {(a, b): cka_matrix(feats[a], feats[b]) for a, b in encoder_pairs(names)}
    section = {
        "images": len(subset),
        "kind": cfg.cka.kind,
        "final_layer": {"encoders": names, "matrix": last.tolist()},
        "layerwise": [{"a": a, "b": b, "matrix": m.tolist()} for (a, b), m in layerwise.items()],
    }
    return section, {"final": last, **{f"{a}|{b}": m for (a, b), m in layerwise.items()}}


def _synth_labelled(cset: CounterfactualSet, cfg: AnalysisConfig) -> LabelledSet:
    """The sensitivity originals as the labelled set (their metadata gives the labels)."""
    labels = synth_labels(cset.metas())
    if cfg.attributes is not None:
        labels = {a: labels[a] for a in cfg.attributes}
    images = cset.images.head(len(cset.scenes))
    return LabelledSet(images, labels, f"SynthWorld split {cset.split!r}", cset.world)


def analyze(
    encoders: Mapping[str, Any],
    out_dir: str | Path,
    cfg: AnalysisConfig | None = None,
    world: WorldConfig | None = None,
    data: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Analyse ``encoders`` (name -> encoder) and write the report to ``out_dir``.

    Sensitivity runs when ``world`` is given (or ``data`` is SynthWorld with a manifest);
    probes, pair mining and CKA run on ``data`` when given, else on the sensitivity scenes.
    Returns what ``analysis.json`` holds (``timing`` holds seconds per stage).
    """
    cfg = cfg or AnalysisConfig()
    if not encoders:
        raise ConfigError("no encoders to analyse")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timing[stage] = round(now - clock, 3)
        clock = now

    labelled: LabelledSet | None = None
    if data is None and cfg.attributes is not None:
        unknown = [a for a in cfg.attributes if a not in SYNTH_ATTRIBUTES]
        if unknown:
            raise ConfigError(
                f"attributes: unknown SynthWorld attribute {unknown[0]!r}; "
                f"known: {', '.join(SYNTH_ATTRIBUTES)}"
            )
    if data is not None:
        size = _image_size(encoders, world, cfg)
        labelled = load_labelled(Path(data), size, cfg.attributes, cfg.data_split, cfg.max_images)
        world = world or labelled.world
        lap("load data")
    if world is None and labelled is None:
        raise ConfigError("nothing to analyse: give a SynthWorld world or a data set")
    with make_progress(progress) as bar:
        embedder = _Embedder(encoders, cfg, Path(cache_dir) if cache_dir else None, bar)
        result: dict[str, Any] = {
            "config": cfg.model_dump(mode="json"),
            "world": world.model_dump(mode="json") if world is not None else None,
            "encoders": {
                name: {
                    "key": embedder.keys[name],
                    "type": type(enc).__name__,
                    "precision": resolve_precision(cfg.precision, device_of(enc)),
                }
                for name, enc in encoders.items()
            },
            "sensitivity": {"skipped": "needs SynthWorld (a world config or its data)"},
            "precision": precision_record(cfg.precision, device_of(next(iter(encoders.values())))),
        }
        feats: dict[str, np.ndarray] | None = None
        if world is not None and cfg.factors:
            cset = build_counterfactual_set(world, cfg.scenes, cfg.factors, cfg.split, cfg.workers)
            lap("build scenes")
            finals = {name: embedder(name, cset.images, "embed") for name in encoders}
            lap("embed scenes")
            result["sensitivity"] = _sensitivity_section(encoders, cset, finals, cfg)
            lap("sensitivity stats")
            if labelled is None:  # the originals are the labelled set: no second pass
                labelled = _synth_labelled(cset, cfg)
                feats = {name: finals[name][: len(cset.scenes)] for name in encoders}
        if labelled is None:
            raise ConfigError("nothing to analyse: no factors and no data set")
        if feats is None:
            feats = {name: embedder(name, labelled.images, "embed data") for name in encoders}
            lap("embed data")
        result["data"] = {
            "source": labelled.source,
            "images": len(labelled.images),
            "attributes": list(labelled.labels),
            "skipped": labelled.skipped,
        }

        rand = random_pairs(len(labelled.images), cfg.pairs.random_pairs, cfg.seed)
        nn = {name: nearest_neighbours(f) for name, f in feats.items()}
        pair_reports = [
            mine_pairs(
                a,
                feats[a],
                b,
                feats[b],
                labelled.labels,
                cfg.pairs,
                cfg.seed,
                precomputed=(rand, nn[a], nn[b]),
            )
            for a, b in encoder_pairs(list(encoders))
        ]
        result["pairs"] = [r.to_dict(cfg.pairs.grid_pairs) for r in pair_reports]
        lap("pair mining")

        task = bar.add_task("attribute probes", total=len(encoders)) if bar else None
        result["probes"] = {}
        for name in encoders:
            result["probes"][name] = cached_json(
                embedder.probe_cache(name, labelled.images, labelled.labels),
                lambda name=name: attribute_probes(
                    feats[name], labelled.labels, cfg.probes, cfg.seed
                ),
            )
            if task is not None:
                bar.advance(task)
        lap("probes")

        result["cka"], cka_mats = _cka_section(embedder, labelled.images, cfg)
        lap("cka")
        result["figures"] = _figures(out, result, pair_reports, labelled, cka_mats, cfg)
        lap("figures")
    # Timings go to their own file: analysis.json is byte-identical across identical runs.
    result = _json_safe(result)
    write_json(result, out / "analysis.json")
    write_json(timing, out / "timing.json")
    (out / "sensitivity.md").write_text(sensitivity_markdown(result))
    return {**result, "timing": timing}


def _figures(
    out: Path,
    result: dict[str, Any],
    pair_reports: list[Any],
    labelled: LabelledSet,
    cka_mats: dict[str, np.ndarray],
    cfg: AnalysisConfig,
) -> list[str]:
    paths: list[Path] = []
    sens = result["sensitivity"]
    if "encoders" in sens:
        values = {name: sens["encoders"][name]["factors"] for name in sens["encoders"]}
        paths.append(
            plot_grouped_bars(
                values,
                out / "sensitivity.png",
                f"Counterfactual sensitivity ({sens['scenes']} scenes, {int(cfg.level * 100)}% CI)",
                "1 - cos, / random pairs",
                reference=1.0,
                reference_label="random pair",
            )
        )
    probe_values = {
        name: {a: {"value": r["accuracy"]} for a, r in res.items() if "accuracy" in r}
        for name, res in result["probes"].items()
    }
    chance = {
        name: {a: r["chance"] for a, r in res.items() if "chance" in r}
        for name, res in result["probes"].items()
    }
    paths.append(
        plot_grouped_bars(
            probe_values,
            out / "probes.png",
            "Linear probes on frozen features (dash: chance)",
            "accuracy",
            markers=chance,
        )
    )
    names = result["cka"]["final_layer"]["encoders"]
    final = ("final layer", cka_mats["final"], names, names, "", "")
    paths.append(plot_cka([final], out / "cka_final.png"))
    panels = []
    for key, mat in cka_mats.items():
        if key != "final":
            a, b = key.split("|")
            cols, rows = (
                [str(i) for i in range(mat.shape[1])],
                [str(i) for i in range(mat.shape[0])],
            )
            panels.append(
                (f"{a} vs {b} ({cfg.cka.kind})", mat, cols, rows, f"{b} block", f"{a} block")
            )
    if panels:
        paths.append(plot_cka(panels, out / "cka_layers.png"))
    for report in pair_reports:
        for d in report.directions:
            top = d.pairs[: cfg.pairs.grid_pairs]
            both = (
                labelled.images.get(top.reshape(-1))
                if len(top)
                else torch.zeros(0, 3, 1, 1, dtype=torch.uint8)
            )
            left, right = both[0::2], both[1::2]
            captions = [
                f"{d.high} {sh:.2f} / {d.low} {sl:.2f}"
                for sh, sl in zip(d.sim_high[: len(top)], d.sim_low[: len(top)], strict=True)
            ]
            mode = {"absolute": "paper", "rank": "largest-quantile-gap"}.get(d.mode, d.mode)
            title = (
                f"high {d.high} (>{d.threshold_high:.2f}) / low {d.low} "
                f"(<{d.threshold_low:.2f}), {mode} thresholds, {len(d.pairs)} pairs"
            )
            paths.append(
                plot_pair_grid(
                    left,
                    right,
                    captions,
                    out / pair_grid_name(d.high, d.low),
                    title,
                )
            )
    return [p.name for p in paths]
