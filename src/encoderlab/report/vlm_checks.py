"""The VLM claims' premise evidence, stated once: does the LM read its picture slot
(``lm/context.json``), can the recipe use an image at all (the oracle, ``vlm/oracle/
oracle.json``), and does each VLM answer better with its image than with a blank one
(``vlm/<name>/sanity.json``), overall and per question type.

The findings only say which VLMs fail the real − blank check and point here, so the evidence
is not repeated under every claim. Both image checks score as the suite does (their
``scoring``); the other scoring's result is quoted beside it, because it tells a recipe that
reads the image but cannot answer with a letter from one that cannot read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from encoderlab.report.document import Block, Cell, Section, Table, Text
from encoderlab.report.load import StudyResults, ordered

__all__ = [
    "SECTION",
    "TITLE",
    "by_type_table",
    "oracle_meaning",
    "other_scoring",
    "vlm_checks_section",
]

SECTION = "vlm-checks"
TITLE = "VLM checks: do the VLMs read their image?"


def other_scoring(check: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The other scoring's name and result ('', {} if the check has none)."""
    name = "cloze" if check.get("scoring", "letter") == "letter" else "letter"
    return (name, check[name]) if isinstance(check.get(name), Mapping) else ("", {})


def _points(d: Mapping[str, Any], key: str = "gain") -> Cell:
    """A paired difference in points with its CI; bold when the CI excludes 0."""
    value, low, high = d.get(key), d.get(f"{key}_low"), d.get(f"{key}_high")
    if value is None:
        return Cell("–")
    if low is None or high is None:
        return Cell(f"{100 * value:+.1f}")
    ci = f"[{100 * low:+.1f}, {100 * high:+.1f}]"
    return Cell(f"{100 * value:+.1f}", ci, strong=bool(low > 0 or high < 0))


def _by(scoring: str, cell: Cell) -> Cell:
    return Cell(f"{scoring} {cell.text}", cell.ci, cell.strong)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def by_type_table(check: Mapping[str, Any], names: tuple[str, str], caption: str) -> Table:
    """One row per question type of a check's ``by_type`` (``vlm.sanity.by_question_type``)."""
    a, b = names
    rows: list[list[str | Cell]] = [
        [qtype, str(r["n"]), _pct(r.get(a)), _pct(r.get(b)), _points(r)]
        for qtype, r in check["by_type"].items()
    ]
    rows.append(["all", str(check["n"]), _pct(check.get(a)), _pct(check.get(b)), _points(check)])
    header = ["question type", "n", f"{a} %", f"{b} %", f"{a} − {b} (points)"]
    return Table(header, rows, caption)


def _per_type(
    check: Mapping[str, Any], names: tuple[str, str], caption: str, path: str
) -> Table | Text:
    """The check's per-type table, or a line saying its file predates the breakdown."""
    if "by_type" in check:
        return by_type_table(check, names, caption)
    return Text(f"{path}: no per-question-type breakdown (written before it existed).", muted=True)


def oracle_meaning(oracle: Mapping[str, Any]) -> str:
    """What the oracle's result says about the recipe, in one sentence."""
    name, alt = other_scoring(oracle)
    if oracle.get("uses_image"):
        return (
            "the recipe can use an image, so an encoder VLM that does not beat a blank image "
            "has features the recipe cannot use"
        )
    if name == "cloze" and alt.get("uses_image"):
        return (
            "the recipe reads an image but its LM cannot answer with an option's letter, so "
            "letter-scored results say nothing about the encoders"
        )
    return "the recipe cannot use an image at all, so a blind VLM says nothing about its encoder"


def _beside(check: Mapping[str, Any]) -> str:
    name, c = other_scoring(check)
    if not c or c.get("gain") is None:
        return ""
    low, high = c.get("gain_low"), c.get("gain_high")
    ci = f" [{100 * low:+.1f}, {100 * high:+.1f}]" if low is not None and high is not None else ""
    return f"; by {name}: {100 * c['gain']:+.1f}{ci} points"


def _context_blocks(context: Mapping[str, Any] | None) -> list[Block]:
    if context is None:
        return [Text("LM picture-slot check: not run (lm/context.json not found).", muted=True)]
    reads = "reads" if context.get("reads_context") else "does NOT read"
    rows: list[list[str | Cell]] = []
    for key, label in (
        ("describe", "copy the slot (describe)"),
        ("questions", "stage-2 questions"),
    ):
        d = context.get(key)
        if d:
            ci = f"[{d['gap_low']:+.3f}, {d['gap_high']:+.3f}]"
            gap = Cell(f"{d['gap']:+.3f}", ci, strong=bool(d["gap_low"] > 0))
            rows.append([label, f"{d['own']:.3f}", f"{d['other']:.3f}", gap])
    return [
        Text(
            f"Stage-0 LM: it {reads} its picture slot (the copy gap's CI above 0 is the test), "
            f"on {context.get('n', '?')} held-out conversations asked as it was trained."
        ),
        Table(
            ["check", "own caption", "another's", "gap"],
            rows,
            "Loss per answer token (nats) with the sample's own caption in the picture slot vs "
            "another sample's; gap = another's − own, 95% CI",
        ),
    ]


def _oracle_blocks(oracle: Mapping[str, Any] | None, planned: bool) -> list[Block]:
    if not planned:  # the study plans it on SynthWorld only (study.pipeline)
        why = "it needs SynthWorld's ground-truth scene factors, which real images lack"
        return [Text(f"Oracle VLM: not part of this study: {why}.", muted=True)]
    if oracle is None or "uses_image" not in oracle:
        return [Text("Oracle VLM: not run (vlm/oracle/oracle.json not found).", muted=True)]
    scoring = oracle.get("scoring", "letter")
    gain = _points(oracle)
    blocks: list[Block] = [
        Text(
            f"Oracle VLM (the recipe trained on ground-truth image tokens), {oracle['n']} "
            f"held-out questions by {scoring}: {_pct(oracle['own'])}% with the scene's own "
            f"tokens vs {_pct(oracle['other'])}% with another scene's, {gain.text} {gain.ci} "
            f"points{_beside(oracle)}: {oracle_meaning(oracle)}."
        )
    ]
    caption = f"Oracle VLM per question type, by {scoring}: own − other, 95% paired CI"
    blocks.append(_per_type(oracle, ("own", "other"), caption, "vlm/oracle/oracle.json"))
    return blocks


def _sanity_blocks(sanity: Mapping[str, Mapping[str, Any]]) -> list[Block]:
    if not sanity:
        return [
            Text("Real vs blank image: not run (vlm/<name>/sanity.json not found).", muted=True)
        ]
    names = ordered(sanity)
    rows: list[list[str | Cell]] = []
    for name in names:
        s = sanity[name]
        other, c = other_scoring(s)
        rows.append(
            [
                name,
                s.get("scoring", "letter"),
                "yes" if s.get("uses_image") else "no",
                str(s.get("n", "–")),
                _pct(s.get("real")),
                _pct(s.get("blank")),
                _points(s),
                _by(other, _points(c)) if c else "–",
            ]
        )
    header = [
        "VLM",
        "scoring",
        "reads its image",
        "n",
        "real %",
        "blank %",
        "real − blank",
        "other",
    ]
    caption = "Held-out questions with the real image vs a blank one; points, 95% paired CI"
    blocks: list[Block] = [Table(header, rows, caption, label_columns=3)]
    for name in names:
        s = sanity[name]
        caption = f"{name} VLM per question type, by {s.get('scoring', 'letter')}: real − blank"
        blocks.append(_per_type(s, ("real", "blank"), caption, f"vlm/{name}/sanity.json"))
    return blocks


def vlm_checks_section(res: StudyResults, replicates: int = 1) -> Section:
    """The premise evidence of every VLM claim, once (replicate 0's files)."""
    intro = (
        "A VLM claim needs VLMs that read their image: each must answer held-out questions "
        "better with its image than with a blank one (real − blank CI above 0), or the claim is "
        "not resolved. Two checks say why one does not: whether the stage-0 LM reads its picture "
        "slot at all, and whether the recipe reads perfect image features (the oracle). Per "
        "question type, bold marks a CI that excludes 0; small types have wide intervals."
    )
    if replicates > 1:
        intro += " Tables show replicate 0; the findings pool the replicates."
    return Section(
        SECTION,
        TITLE,
        [
            Text(intro),
            *_context_blocks(res.lm_context),
            *_oracle_blocks(res.oracle, res.planned_vlm("oracle")),
            *_sanity_blocks(res.sanity),
        ],
    )
