"""``report.html``: one self-contained file (inline CSS, images as base64 data URIs, no
scripts, no external requests), so it can be mailed, archived or opened offline as is."""

from __future__ import annotations

import base64
import mimetypes
from html import escape
from pathlib import Path

from encoderlab.report.document import (
    Block,
    Cell,
    Details,
    Document,
    Figure,
    Findings,
    Table,
    Text,
)

__all__ = ["data_uri", "render_html"]

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --alt: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1140px; margin: 0 auto; padding: 28px 36px 64px; }
h1 { font-size: 27px; margin: 0 0 2px; letter-spacing: -0.01em; }
h2 { font-size: 20px; margin: 38px 0 10px; padding-bottom: 5px;
  border-bottom: 1px solid var(--line); }
p { margin: 6px 0 10px; max-width: 900px; }
.subtitle, .muted { color: var(--muted); }
nav { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 12px 0 4px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; }
table { border-collapse: collapse; margin: 6px 0 18px; font-size: 13.5px; }
caption { caption-side: top; text-align: left; color: var(--muted); font-size: 13px;
  padding: 0 0 4px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; white-space: nowrap; }
.scroll { overflow-x: auto; }
th { background: var(--alt); font-weight: 600; }
tbody tr:hover { background: #fafbfc; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { color: var(--muted); font-size: 12px; margin-left: 5px; }
.stack .ci { display: block; margin-left: 0; line-height: 1.2; }
figure { margin: 8px 0 20px; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.row { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 8px 28px;
  align-items: start; }
.badge { display: inline-block; padding: 1px 10px; border-radius: 999px; font-size: 12.5px;
  font-weight: 600; white-space: nowrap; }
.supported { background: #dafbe1; color: #116329; }
.contradicted { background: #ffebe9; color: #b3261e; }
.not-resolved { background: #fff4c2; color: #7a5200; }
.not-run { background: #eef1f4; color: #59636e; }
table.findings { width: 100%; table-layout: fixed; }
table.findings td { padding: 8px 10px; white-space: normal; }
.topic { color: var(--muted); font-size: 13px; white-space: nowrap; }
.rule { display: block; color: var(--muted); font-size: 12px; margin-top: 2px; }
.numbers { font-size: 12.5px; font-variant-numeric: tabular-nums; }
.numbers div + div { margin-top: 1px; }
details { margin: 4px 0 20px; }
summary { cursor: pointer; color: var(--accent); margin-bottom: 8px; }
"""


def data_uri(path: Path) -> str:
    """The file as a ``data:`` URI (what makes the report self-contained)."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _cell(c: str | Cell, tag: str, numeric: bool) -> str:
    cls = ' class="num"' if numeric else ""
    if isinstance(c, str):
        return f"<{tag}{cls}>{escape(c)}</{tag}>"
    text = f"<strong>{escape(c.text)}</strong>" if c.strong else escape(c.text)
    ci = f'<span class="ci">{escape(c.ci)}</span>' if c.ci else ""
    return f"<{tag}{cls}>{text}{ci}</{tag}>"


def _table(t: Table) -> str:
    def numeric(i: int) -> bool:
        return i >= t.label_columns

    caption = f"<caption>{escape(t.caption)}</caption>" if t.caption else ""
    head = "".join(_cell(h, "th", numeric(i)) for i, h in enumerate(t.header))
    body = "".join(
        "<tr>" + "".join(_cell(c, "td", numeric(i)) for i, c in enumerate(row)) + "</tr>"
        for row in t.rows
    )
    cls = ' class="stack"' if t.stack else ""
    table = f"<table{cls}>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _figure(f: Figure) -> str:
    cap = escape(f.caption)
    return (
        f'<figure><img src="{data_uri(f.path)}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'
    )


def _badge(verdict: str) -> str:
    return f'<span class="badge {verdict.replace(" ", "-")}">{escape(verdict)}</span>'


def _findings(f: Findings) -> str:
    rows = []
    for item in f.items:
        rule = f'<span class="rule">{escape(item.rule)}</span>' if item.rule else ""
        numbers = "".join(f"<div>{escape(n.text())}</div>" for n in item.numbers)
        note = f'<div class="muted">{escape(item.note)}</div>' if item.note else ""
        rows.append(
            f'<tr><td class="topic">{escape(item.topic)}</td>'
            f"<td>{escape(item.claim)}{rule}</td><td>{_badge(item.verdict)}</td>"
            f'<td class="numbers">{numbers}{note}</td></tr>'
        )
    cols = "".join(f'<col style="width:{w}%">' for w in (10, 40, 12, 38))
    head = "<tr><th>topic</th><th>claim</th><th>verdict</th><th>numbers (95% CI)</th></tr>"
    body = "".join(rows)
    table = f"<colgroup>{cols}</colgroup><thead>{head}</thead><tbody>{body}</tbody>"
    return f'<table class="findings">{table}</table>'


def _blocks(blocks: list[Block]) -> str:
    """Blocks in order; consecutive narrow figures share a row."""
    out: list[str] = []
    row: list[str] = []
    for block in blocks:
        if isinstance(block, Figure) and not block.wide:
            row.append(_figure(block))
            continue
        if row:
            out.append(f'<div class="row">{"".join(row)}</div>')
            row = []
        if isinstance(block, Text):
            out.append(
                f'<p class="muted">{escape(block.text)}</p>'
                if block.muted
                else f"<p>{escape(block.text)}</p>"
            )
        elif isinstance(block, Table):
            out.append(_table(block))
        elif isinstance(block, Figure):
            out.append(_figure(block))
        elif isinstance(block, Findings):
            out.append(_findings(block))
        elif isinstance(block, Details):
            inner = _blocks(list(block.blocks))
            out.append(f"<details><summary>{escape(block.summary)}</summary>{inner}</details>")
    if row:
        out.append(f'<div class="row">{"".join(row)}</div>')
    return "\n".join(out)


def render_html(doc: Document) -> str:
    nav = "".join(f'<a href="#{s.id}">{escape(s.title)}</a>' for s in doc.sections)
    sections = "\n".join(
        f'<section id="{s.id}"><h2>{escape(s.title)}</h2>\n{_blocks(s.blocks)}</section>'
        for s in doc.sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(doc.title)}</title><style>{CSS}</style></head>\n<body><main>"
        f'<header><h1>{escape(doc.title)}</h1><div class="subtitle">{escape(doc.subtitle)}</div>'
        f"<nav>{nav}</nav></header>\n{sections}\n</main></body></html>\n"
    )
