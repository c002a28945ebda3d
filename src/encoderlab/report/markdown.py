"""``report.md``: the document as GitHub-flavoured markdown; figures are linked by paths
relative to the report (the HTML file is the self-contained one)."""

from __future__ import annotations

import os
from pathlib import Path

from encoderlab.report.document import Cell, Details, Document, Figure, Findings, Table, Text

__all__ = ["render_markdown"]


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _cell(c: str | Cell) -> str:
    if isinstance(c, str):
        return _esc(c)
    text = f"{c.text} {c.ci}" if c.ci else c.text
    return f"**{_esc(text)}**" if c.strong else _esc(text)


def _table(t: Table) -> list[str]:
    align = ["---"] * t.label_columns + ["--:"] * (len(t.header) - t.label_columns)
    lines = [f"*{t.caption}*", ""] if t.caption else []
    lines.append("| " + " | ".join(_esc(h) for h in t.header) + " |")
    lines.append("|" + "|".join(align) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return [*lines, ""]


def _findings(f: Findings) -> list[str]:
    lines = ["| topic | claim | verdict | numbers (95% CI) |", "|---|---|---|---|"]
    for item in f.items:
        numbers = "; ".join(n.text() for n in item.numbers)
        note = f" ({item.note})" if item.note else ""
        evidence = (numbers + note).strip() or "–"
        claim = f"{item.claim} <br>*rule: {item.rule}*" if item.rule else item.claim
        lines.append(f"| {item.topic} | {_esc(claim)} | **{item.verdict}** | {_esc(evidence)} |")
    return [*lines, ""]


def _figure(f: Figure, base: Path) -> list[str]:
    return [f"![{f.caption}]({Path(os.path.relpath(f.path, base)).as_posix()})", ""]


def render_markdown(doc: Document, base: Path) -> str:
    """Markdown of ``doc``; figure links are relative to ``base`` (where report.md is)."""
    lines = [f"# {doc.title}", "", doc.subtitle, ""]
    lines += [f"- [{s.title}](#{s.id})" for s in doc.sections]
    lines.append("")
    for section in doc.sections:
        lines += [f'<a id="{section.id}"></a>', "", f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [f"*{block.text}*" if block.muted else block.text, ""]
            elif isinstance(block, Table):
                lines += _table(block)
            elif isinstance(block, Figure):
                lines += _figure(block, base)
            elif isinstance(block, Findings):
                lines += _findings(block)
            elif isinstance(block, Details):
                lines += [f"<details><summary>{block.summary}</summary>", ""]
                lines += [line for f in block.blocks for line in _figure(f, base)]
                lines += ["</details>", ""]
    return "\n".join(lines).rstrip() + "\n"
