"""The benchmark registry: what each benchmark is, how it is scored, and where it sits in the two
category views the field uses (VMCBench's and Cambrian-1's).

A benchmark's source is either ``generator`` (SynthWorld items made by ``suite.benchmarks``
from the question type ``qtype``) or ``file`` (a VLMEvalKit TSV / parquet table on local disk).
Suites are named lists of benchmarks; ``resolve`` turns names, suite names and table paths into
``Benchmark`` objects, with one-line errors for unknown names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from encoderlab.config import StrictModel
from encoderlab.errors import ConfigError

__all__ = [
    "BENCHMARKS",
    "CAMBRIAN_CATEGORIES",
    "REAL_CATEGORIES",
    "SUITES",
    "VMC_CATEGORIES",
    "Benchmark",
    "file_benchmark",
    "get_benchmark",
    "resolve",
]

VmcCategory = Literal["General", "Reasoning", "OCR", "Doc&Chart"]
CambrianCategory = Literal["General", "Knowledge", "OCR & Chart", "Vision-Centric"]
VMC_CATEGORIES: tuple[str, ...] = ("General", "Reasoning", "OCR", "Doc&Chart")
CAMBRIAN_CATEGORIES: tuple[str, ...] = ("General", "Knowledge", "OCR & Chart", "Vision-Centric")
Metric = Literal["accuracy", "pair_accuracy", "vqa", "anls", "relaxed", "exact"]


class Benchmark(StrictModel):
    """One benchmark: identity, categories, source, question format and metric."""

    name: str
    vmc: VmcCategory
    cambrian: CambrianCategory
    source: Literal["generator", "file"] = "generator"
    qtype: str | None = None  # generator: the question type (``questions.QUESTION_TYPES``)
    path: str | None = None  # file: the TSV / parquet table
    format: Literal["mc", "open"] = "mc"
    metric: Metric = "accuracy"
    balance: int = 0  # generator: number of answer classes to balance (0 = no balancing)
    mirrors: str = ""  # the real benchmark it stands in for


def _b(name: str, vmc: str, cambrian: str, mirrors: str, **kw: object) -> Benchmark:
    return Benchmark(name=name, vmc=vmc, cambrian=cambrian, mirrors=mirrors, qtype=name, **kw)  # type: ignore[arg-type]


# The twenty synthetic benchmarks, mirroring VMCBench's twenty in kind.
_SYNTHETIC: tuple[Benchmark, ...] = (
    # General
    _b("object", "General", "General", "SEEDBench"),
    _b("existence", "General", "General", "POPE / MMStar", balance=4),
    _b("count", "General", "Vision-Centric", "VQAv2 counting / CV-Bench-2D", balance=4),
    _b("colour", "General", "General", "A-OKVQA / MME colour"),
    _b("texture", "General", "General", "MMVet attributes"),
    _b("style", "General", "General", "MMStar fine-grained"),
    _b("caption", "General", "General", "VizWiz / OKVQA caption match"),
    # Reasoning
    _b("spatial", "Reasoning", "Vision-Centric", "GQA relations / CV-Bench-2D", balance=4),
    _b("size", "Reasoning", "Vision-Centric", "RealWorldQA / CV-Bench-3D"),
    _b("superclass", "Reasoning", "Knowledge", "ScienceQA / MMMU", balance=6),
    _b("arithmetic", "Reasoning", "Knowledge", "MathVista / MathVision", balance=4),
    _b("odd_one_out", "Reasoning", "General", "MMBench attribute comparison"),
    _b("pairs", "Reasoning", "Vision-Centric", "MMVP", metric="pair_accuracy"),
    # OCR
    _b("read_word", "OCR", "OCR & Chart", "TextVQA"),
    _b("read_number", "OCR", "OCR & Chart", "OCRVQA"),
    # Doc & Chart
    _b("chart_value", "Doc&Chart", "OCR & Chart", "ChartQA"),
    _b("chart_argmax", "Doc&Chart", "OCR & Chart", "ChartQA"),
    _b("table", "Doc&Chart", "OCR & Chart", "TableVQABench"),
    _b("document", "Doc&Chart", "OCR & Chart", "DocVQA / InfoVQA"),
    _b("diagram", "Doc&Chart", "Knowledge", "AI2D"),
)


def _open(base: str, metric: str) -> Benchmark:
    """An open-ended variant: the same items, answered by generation and scored by ``metric``."""
    b = next(x for x in _SYNTHETIC if x.name == base)
    return b.model_copy(update={"name": f"{base}_open", "format": "open", "metric": metric})


_OPEN: tuple[Benchmark, ...] = (
    _open("read_word", "vqa"),
    _open("read_number", "exact"),
    _open("chart_value", "relaxed"),
    _open("table", "anls"),
    _open("document", "anls"),
)

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (*_SYNTHETIC, *_OPEN)}
SUITES: dict[str, tuple[str, ...]] = {
    "default": tuple(b.name for b in _SYNTHETIC),
    "open": tuple(b.name for b in _OPEN),
}


def get_benchmark(name: str) -> Benchmark:
    """A registered benchmark by name; an unknown name lists the known ones in one line."""
    if name not in BENCHMARKS:
        raise ConfigError(
            f"unknown benchmark {name!r}; known benchmarks: {', '.join(BENCHMARKS)}; "
            f"suites: {', '.join(SUITES)}"
        )
    return BENCHMARKS[name]


def file_benchmark(
    path: str | Path,
    vmc: str = "General",
    cambrian: str = "General",
    format: str = "mc",
    metric: str = "accuracy",
) -> Benchmark:
    """A benchmark read from a local table (named after the file's stem)."""
    path = Path(path)
    return Benchmark(
        name=path.stem,
        vmc=vmc,  # type: ignore[arg-type]
        cambrian=cambrian,  # type: ignore[arg-type]
        source="file",
        path=str(path),
        format=format,  # type: ignore[arg-type]
        metric=metric,  # type: ignore[arg-type]
    )


def resolve(spec: str) -> list[Benchmark]:
    """Comma-separated suite names, benchmark names and ``.tsv``/``.parquet`` paths -> benchmarks.

    A table path becomes a file benchmark in the General category of both views, unless its
    name matches a VMCBench/Cambrian benchmark with a known category (see ``REAL_CATEGORIES``).
    """
    out: dict[str, Benchmark] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part in SUITES:
            out.update({n: BENCHMARKS[n] for n in SUITES[part]})
        elif part.lower().endswith((".tsv", ".parquet")):
            stem = Path(part).stem
            vmc, cambrian = REAL_CATEGORIES.get(stem.lower(), ("General", "General"))
            out[stem] = file_benchmark(part, vmc, cambrian)
        else:
            out[part] = get_benchmark(part)
    if not out:
        raise ConfigError(f"empty benchmark list {spec!r}; suites: {', '.join(SUITES)}")
    return list(out.values())


# Categories of the real benchmarks, for tables named after them (VMCBench's view; Cambrian-1's
# view where the benchmark appears there, else the closest group).
REAL_CATEGORIES: dict[str, tuple[str, str]] = {
    "seedbench": ("General", "General"),
    "mmstar": ("General", "General"),
    "a-okvqa": ("General", "Knowledge"),
    "vizwiz": ("General", "General"),
    "mmvet": ("General", "General"),
    "vqav2": ("General", "General"),
    "okvqa": ("General", "Knowledge"),
    "mmmu": ("Reasoning", "Knowledge"),
    "mathvista": ("Reasoning", "Knowledge"),
    "scienceqa": ("Reasoning", "Knowledge"),
    "realworldqa": ("Reasoning", "Vision-Centric"),
    "gqa": ("Reasoning", "General"),
    "mathvision": ("Reasoning", "Knowledge"),
    "textvqa": ("OCR", "OCR & Chart"),
    "ocrvqa": ("OCR", "OCR & Chart"),
    "ai2d": ("Doc&Chart", "Knowledge"),
    "chartqa": ("Doc&Chart", "OCR & Chart"),
    "docvqa": ("Doc&Chart", "OCR & Chart"),
    "infovqa": ("Doc&Chart", "OCR & Chart"),
    "tablevqabench": ("Doc&Chart", "OCR & Chart"),
}
