"""The report's sections, built from a loaded study (``load.StudyResults``) and the figures.

Every section exists on every study: a stage that has not run gives a one-line "not run" with
the file it would have written, so a partial study (or the smoke preset) still reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from encoderlab.evaluate.figures import pair_grid_name
from encoderlab.evaluate.power import power_note
from encoderlab.evaluate.sensitivity_table import is_highlight
from encoderlab.report import vlm_checks
from encoderlab.report.document import (
    Block,
    Cell,
    Details,
    Document,
    Figure,
    Findings,
    Section,
    Table,
    Text,
)
from encoderlab.report.findings import (
    VIEW_TITLES,
    Finding,
    accuracy_matched_findings,
    control_power,
)
from encoderlab.report.load import NAMES, StudyResults
from encoderlab.report.plots import control_columns

__all__ = ["SECTION_TITLES", "build_document"]

SECTION_TITLES = {
    "findings": "Findings",
    "study": "Study status",
    "control": "Control: classification",
    "curves": "Learning curves and the accuracy-matched comparison",
    "losses": "Pre-training loss",
    "sensitivity": "Embedding sensitivity",
    "pairs": "Mined pairs",
    vlm_checks.SECTION: vlm_checks.TITLE,
    "vlm": "VLM suite",
    "variants": "Variants vs CLIP",
}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _score(r: Mapping[str, Any]) -> Cell:
    return Cell(_pct(r["score"]), f"[{_pct(r['lo'])}, {_pct(r['hi'])}]")


def _diff(r: Mapping[str, Any]) -> Cell:
    """A compare() difference in points; bold when its CI excludes 0."""
    ci = f"[{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]"
    return Cell(f"{100 * r['diff']:+.1f}", ci, strong=bool(r["significant"]))


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _not_run(what: str, path: str) -> Text:
    return Text(f"Not run: {what} ({path} not found).", muted=True)


# -- sections ------------------------------------------------------------------------------
def findings_section(findings: list[Finding], replicates: int = 1) -> Section:
    counts = {
        v: sum(f.verdict == v for f in findings)
        for v in ("supported", "contradicted", "not resolved", "not run")
    }
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    intro = (
        "Each claim of Liu et al. (2025), “Data or Language Supervision: What Makes CLIP Better "
        "than DINO?”, checked against this run. Verdicts are computed from the numbers and their "
        "confidence intervals: supported (the interval is on the predicted side), contradicted "
        "(entirely on the other side), not resolved (it includes the boundary, or the claim's "
        "premise fails: encoders near chance, or VLMs that do not use their image, whose evidence "
        "is under VLM checks), not run."
    )
    if replicates > 1:
        intro += (
            f" Pooled over {replicates} replicates (training seeds +0 to +{replicates - 1}): each "
            "number is the mean of the replicates' estimates; its interval adds the variance "
            "between seeds to the test-set sampling error. Tables and plots below show "
            "replicate 0."
        )
    return Section(
        "findings",
        SECTION_TITLES["findings"],
        [Text(intro), Text(summary, muted=True), Findings(findings)],
    )


def study_section(res: StudyResults) -> Section:
    blocks: list[Block] = []
    expected = [
        ("control check", res.control is not None, "control/control.json"),
        ("embedding analysis", res.analysis is not None, "analysis/analysis.json"),
        *(
            (f"VLM {n}", n in res.suite, f"suite/{n}/results.json")
            for n in NAMES
            if res.planned_vlm(n)
        ),
    ]
    missing = [f"{what} ({path})" for what, found, path in expected if not found]
    if missing:
        blocks.append(Text("Not run yet: " + "; ".join(missing) + ".", muted=True))
    if res.stages:
        rows: list[list[str | Cell]] = [
            [
                s["name"],
                s["state"],
                s.get("precision") or "",
                "" if s["seconds"] is None else f"{s['seconds']:.0f}",
            ]
            for s in res.stages
        ]
        blocks.append(Table(["stage", "state", "precision", "seconds"], rows, label_columns=3))
    if res.preview is not None:
        blocks.append(Figure(res.preview, "Training images and their captions"))
    return Section("study", SECTION_TITLES["study"], blocks)


def control_section(res: StudyResults, figure: Path | None) -> Section:
    section = Section("control", SECTION_TITLES["control"])
    control = res.control
    if control is None:
        section.blocks.append(_not_run("the control check", "control/control.json"))
        return section
    columns = control_columns(control)
    header = ["encoder"] + [f"{t} {label}" for t, _, label in columns]
    rows: list[list[str | Cell]] = [
        [name] + [_pct(r[t][k]) for t, k, _ in columns] for name, r in control["encoders"].items()
    ]
    first = next(iter(control["encoders"].values()))
    rows.append(["chance"] + [_pct(first[t]["chance"]) for t, _, _ in columns])
    cat = first["category"]
    section.blocks.append(
        Table(
            header,
            rows,
            f"Accuracy (%) on {cat['n_test']} held-out images ({cat['classes']} categories, "
            f"{first['superclass']['classes']} superclasses); probes fitted on {cat['n_train']} "
            "training images. Chance: the majority class. Zero-shot: language-supervised only.",
        )
    )
    if "clip_minus_dino_linear_points" in control:
        verdict = "matched" if control["matched"] else "NOT matched"
        ci = (control.get("paired") or {}).get("clip_minus_dino") or {}
        interval = f", 95% CI [{ci['low']:+.1f}, {ci['high']:+.1f}]" if "low" in ci else ""
        section.blocks.append(
            Text(
                f"CLIP − DINO linear-probe category accuracy: "
                f"{control['clip_minus_dino_linear_points']:+.1f} points{interval} ({verdict}: "
                f"the CI within ±{control['max_gap_points']:g})."
            )
        )
    power = control_power(control)
    if power is not None:
        th = power["thresholds"]
        section.blocks.append(
            Text(
                f"Control powered: every encoder's category accuracy is at least "
                f"{th['linear']:.2f} (linear probe) and {th['knn']:.2f} (kNN) of the way from "
                "chance to 100%."
                if power["powered"]
                else power_note(power).replace("control not powered", "Control NOT powered", 1)
                + "."
            )
        )
    if figure is not None:
        section.blocks.append(Figure(figure, "Control accuracies (dash: chance level)"))
    return section


def _gain(curve: Mapping[str, Any]) -> str | Cell:
    """The last interval's paired gain in points, bold when its CI excludes 0."""
    g = curve.get("last_gain")
    if not g or g.get("value") is None:
        return "–"
    ci = f"[{g['low']:+.1f}, {g['high']:+.1f}]"
    return Cell(f"{g['value']:+.1f}", ci, strong=bool(g.get("significant")))


def _trend(curve: Mapping[str, Any]) -> str:
    g = curve.get("last_gain")
    if not g or g.get("low") is None:
        return "one point"
    return "rising" if g["low"] > 0 else "falling" if g["high"] < 0 else "flat"


def curves_section(res: StudyResults, figure: Path | None) -> Section:
    """The control at every snapshot of every run, and the embedding claims at equal accuracy."""
    section = Section("curves", SECTION_TITLES["curves"])
    curves = res.curves
    if not curves or not curves.get("encoders"):
        section.blocks.append(_not_run("the learning curves", "control/curves.json"))
        return section
    section.blocks.append(
        Text(
            "The control check (category of one-object scenes; the same images and probes) at "
            "every encoder snapshot each pretraining run kept: the shared initialisation (step "
            "0), checkpoint steps, and the final encoder, whose point is the control table's. "
            "Last interval: final minus the previous snapshot's linear probe, paired on the same "
            f"{curves['n_test']} test images (bold: the CI excludes 0: still learning)."
        )
    )
    if figure is not None:
        section.blocks.append(Figure(figure, "Category accuracy vs samples seen"))
    matched = (curves.get("matched") or {}).get("encoders") or {}
    rows: list[list[str | Cell]] = []
    for name, curve in curves["encoders"].items():
        last = curve["points"][-1]
        m = matched.get(name)
        rows.append(
            [
                name,
                str(len(curve["points"])),
                _pct(last["linear"]),
                _pct(last["knn"]),
                _gain(curve),
                _trend(curve),
                "–" if m is None else f"{m['step']}" + (" (final)" if m["final"] else ""),
                "–" if m is None else _pct(m["linear"]),
            ]
        )
    header = [
        "encoder",
        "points",
        "final linear",
        "final kNN",
        "last interval (points)",
        "trend",
        "matched step",
        "matched linear",
    ]
    caption = "Accuracy (%); matched: the checkpoint closest to the weakest objective's final"
    section.blocks.append(Table(header, rows, caption, label_columns=1))
    section.blocks += _matched_blocks(res)
    return section


def _matched_blocks(res: StudyResults) -> list[Block]:
    """The accuracy-matched comparison: which checkpoints, and the embedding claims there."""
    info = (res.curves or {}).get("matched") or {}
    if not info:
        return []
    blocks: list[Block] = [
        Text(
            f"Accuracy-matched comparison, beside the compute-matched one (every other section): "
            f"the weakest objective, {info['weakest']}, ends at {_pct(info['target'])}% "
            "(linear probe); each objective's checkpoint closest to that is ringed in the "
            "figure and listed above."
        )
    ]
    matched = res.matched
    if matched is None:
        blocks.append(_not_run("the accuracy-matched analysis", "matched/matched.json"))
    elif "skipped" in matched:
        blocks.append(Text(f"Accuracy-matched embedding claims: {matched['skipped']}.", muted=True))
    else:
        scenes = (matched.get("sensitivity") or {}).get("scenes")
        full = ((res.analysis or {}).get("sensitivity") or {}).get("scenes")
        against = f" (the compute-matched analysis: {full})" if full else ""
        blocks.append(
            Text(
                "The embedding claims on those checkpoints (accuracy-matched; replicate 0), "
                f"judged by the same rules as the Findings: {scenes} scenes{against}, fewer to "
                "bound the cost of embedding extra checkpoints, so the intervals are wider."
            )
        )
        blocks.append(Findings(accuracy_matched_findings(matched)))
    return blocks


def losses_section(res: StudyResults, figure: Path | None) -> Section:
    section = Section("losses", SECTION_TITLES["losses"])
    if figure is None:
        section.blocks.append(_not_run("pre-training", "pretrain/<objective>/metrics.jsonl"))
        return section
    done = {s["name"] for s in res.stages if s["state"] == "done"}
    running = [n for n in res.losses if f"pretrain/{n}" not in done]
    caption = "Training loss per objective (each on its own scale)"
    section.blocks.append(Figure(figure, caption))
    if running:
        section.blocks.append(Text(f"Not finished: {', '.join(running)}.", muted=True))
    return section


def sensitivity_section(res: StudyResults) -> Section:
    section = Section("sensitivity", SECTION_TITLES["sensitivity"])
    sens = (res.analysis or {}).get("sensitivity") or {}
    if res.analysis is None or "encoders" not in sens:
        why = sens.get("skipped") if res.analysis is not None else None
        section.blocks.append(
            Text(f"Not run: {why}.", muted=True)
            if why
            else _not_run("the embedding analysis", "analysis/analysis.json")
        )
        return section
    level = round(res.analysis["config"]["level"] * 100)
    section.blocks.append(
        Text(
            f"{sens['scenes']} held-out SynthWorld scenes, one variant per factor that changes "
            "only that factor. Sensitivity = mean cosine distance to the variant / mean distance "
            f"to a random other scene (1 = as different as two random images, 0 = invariant); "
            f"{level}% bootstrap CIs over scenes, paired between encoders."
        )
    )
    if (fig := res.analysis_figure("sensitivity.png")) is not None:
        section.blocks.append(Figure(fig, "Counterfactual sensitivity per factor"))
    names = list(sens["encoders"])
    rows: list[list[str | Cell]] = []
    for factor in sens["factors"]:
        cells: list[str | Cell] = [factor]
        for name in names:
            e = sens["encoders"][name]["factors"][factor]
            cells.append(Cell(_num(e["value"]), f"[{_num(e['low'])}, {_num(e['high'])}]"))
        rows.append(cells)
    section.blocks.append(Table(["factor", *names], rows, "Sensitivity with bootstrap CI"))
    vs_dino = [c for c in sens["comparisons"] if is_highlight(c["a"], c["b"]) or c["b"] == "dino"]
    if vs_dino:
        diff_rows: list[list[str | Cell]] = []
        for factor in sens["factors"]:
            cells: list[str | Cell] = [factor]
            for comp in vs_dino:
                d = comp["factors"][factor]
                value = "n/a" if d["value"] is None else f"{d['value']:+.3f}"
                ci = f"[{_num(d['low'])}, {_num(d['high'])}]"
                cells.append(Cell(value, ci, strong=bool(d["significant"])))
            diff_rows.append(cells)
        header = ["factor", *(f"{c['a']} − {c['b']}" for c in vs_dino)]
        caption = "Paired differences in sensitivity; bold: the CI excludes 0"
        section.blocks.append(Table(header, diff_rows, caption))
    for name, caption, wide in (
        ("probes.png", "Linear probes per attribute (dash: chance)", True),
        ("cka_final.png", "Linear CKA, final layer", False),
        ("cka_layers.png", "Linear CKA, layer by layer", False),
    ):
        if (p := res.analysis_figure(name)) is not None:
            section.blocks.append(Figure(p, caption, wide))
    return section


def pairs_section(res: StudyResults) -> Section:
    section = Section("pairs", SECTION_TITLES["pairs"])
    reports = (res.analysis or {}).get("pairs") or []
    if not reports:
        section.blocks.append(_not_run("pair mining", "analysis/analysis.json"))
        return section
    section.blocks.append(
        Text(
            "Image pairs that one encoder finds similar and the other does not (the paper's "
            "inspection). The table gives, per attribute, the share of mined pairs that agree on "
            "it against the share among random pairs (lift > 1: the encoder groups by it)."
        )
    )
    main = [r for r in reports if (r["a"], r["b"]) == ("clip", "dino")]
    if main:
        section.blocks.append(_shared_table(main[0]))
    figures = {id(r): _pair_figures(res, r) for r in reports}
    for rep in main:
        section.blocks += figures[id(rep)]
    others = [f for r in reports if r not in main for f in figures[id(r)]]
    if others:
        pairs = ", ".join(f"{r['a']}/{r['b']}" for r in reports if r not in main)
        section.blocks.append(Details(f"Other encoder pairs ({pairs})", others))
    return section


def _pair_figures(res: StudyResults, rep: Mapping[str, Any]) -> list[Figure]:
    """The analysis stage's pair grids of one encoder pair, both directions."""
    out = []
    for d in rep["directions"]:
        name = pair_grid_name(d["high"], d["low"])
        if (p := res.analysis_figure(name)) is not None:
            out.append(Figure(p, f"high {d['high']} / low {d['low']}: {d['count']} pairs", False))
    return out


def _shared_table(rep: Mapping[str, Any]) -> Table:
    """Per attribute and mining direction: agreement among mined vs random pairs."""
    dirs = rep["directions"]
    attributes = list(dict.fromkeys(a for d in dirs for a in d["shared"]))

    def cell(s: Mapping[str, Any] | None) -> Cell:
        if s is None or s.get("mined") is None:
            return Cell("–")
        lift = "" if s.get("lift") is None else f"lift {s['lift']:.2f}"
        return Cell(f"{_pct(s['mined'])} vs {_pct(s['base'])}", lift)

    header = ["attribute"] + [
        f"high {d['high']} / low {d['low']} ({d['count']} pairs)" for d in dirs
    ]
    rows: list[list[str | Cell]] = [
        [a, *(cell(d["shared"].get(a)) for d in dirs)] for a in attributes
    ]
    return Table(header, rows, "Share (%) of mined vs random pairs agreeing on each attribute")


def _category_rows(
    runs: Mapping[str, Mapping[str, Any]], cell: Callable[[Mapping[str, Any]], Cell]
) -> list[list[str | Cell]]:
    """One row per category of both views, then overall; one column per run (a suite result
    or a paired comparison: both have ``categories[view][name]`` and ``overall``)."""
    rows: list[list[str | Cell]] = []
    for view, title in VIEW_TITLES.items():
        per_run = [r["categories"].get(view, {}) for r in runs.values()]
        for cat in dict.fromkeys(c for cats in per_run for c in cats):
            rows.append([title, cat, *(cell(c[cat]) if cat in c else "–" for c in per_run)])
    rows.append(["", "overall", *(cell(r["overall"]) for r in runs.values())])
    return rows


def vlm_section(res: StudyResults, figures: Mapping[str, Path]) -> Section:
    section = Section("vlm", SECTION_TITLES["vlm"])
    if not res.suite:
        section.blocks.append(_not_run("the VLM stages", "suite/<vlm>/results.json"))
        return section
    names = list(res.suite)
    section.blocks.append(
        Text(
            f"One LLaVA-style VLM per encoder ({', '.join(names)}), encoder frozen, scored on the "
            "synthetic suite; scores in %, 95% bootstrap CI over questions. Categories average "
            "their benchmarks."
        )
    )
    section.blocks += [
        Figure(figures[view], f"{title} categories", wide=False)
        for view, title in VIEW_TITLES.items()
        if view in figures
    ]
    rows = _category_rows(res.suite, _score)
    section.blocks.append(Table(["view", "category", *names], rows, "Scores per category", 2))
    benches = list(dict.fromkeys(b for r in res.suite.values() for b in r["benchmarks"]))
    rows = []
    for bench in benches:
        info = next(r["benchmarks"][bench] for r in res.suite.values() if bench in r["benchmarks"])
        cells = [
            _score(r["benchmarks"][bench]) if bench in r["benchmarks"] else "–"
            for r in res.suite.values()
        ]
        rows.append([bench, info["vmc"], info["cambrian"], info["metric"], str(info["n"]), *cells])
    header = ["benchmark", "VMCBench", "Cambrian-1", "metric", "n", *names]
    section.blocks.append(Table(header, rows, "Scores per benchmark", 4, stack=True))
    return section


def variants_section(res: StudyResults) -> Section:
    section = Section("variants", SECTION_TITLES["variants"])
    if not res.vs_clip:
        what = "the clip VLM and at least one other" if res.suite else "the VLM stages"
        section.blocks.append(_not_run(what, "suite/<vlm>/results.json and per_item.csv"))
    else:
        names = list(res.vs_clip)
        section.blocks.append(
            Text(
                "Each VLM minus the CLIP VLM, in points, on the same questions: paired-bootstrap "
                "95% CI; bold: the CI excludes 0."
            )
        )
        rows = _category_rows(res.vs_clip, _diff)
        header = ["view", "category", *(f"{n} − clip" for n in names)]
        section.blocks.append(Table(header, rows, "Paired differences vs clip", 2))
    for name, problem in res.problems.items():
        section.blocks.append(Text(f"{name}: no paired comparison: {problem}", muted=True))
    return section


def build_document(
    res: StudyResults, findings: list[Finding], figures: Mapping[str, Path], replicates: int = 1
) -> Document:
    """All sections in reading order; ``figures``: the report's own plots by key."""
    name = (res.study or {}).get("name") or ((res.study or {}).get("config") or {}).get("name")
    title = "encoderlab study report" + (f": {name}" if name else "")
    encoders = list((res.control or {}).get("encoders", {})) or list(res.losses)
    subtitle = f"Study directory {res.root.name}" + (
        f"; encoders {', '.join(encoders)}" if encoders else ""
    )
    return Document(
        title,
        subtitle,
        [
            findings_section(findings, replicates),
            study_section(res),
            control_section(res, figures.get("control")),
            curves_section(res, figures.get("curves")),
            losses_section(res, figures.get("losses")),
            sensitivity_section(res),
            pairs_section(res),
            vlm_checks.vlm_checks_section(res, replicates),
            vlm_section(res, figures),
            variants_section(res),
        ],
    )
