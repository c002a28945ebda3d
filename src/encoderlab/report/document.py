"""The report as plain data (sections of text, tables, figures, findings), built once and
rendered twice: as self-contained HTML and as markdown. Keeping content out of the renderers
means the two formats cannot disagree on a number."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from encoderlab.report.findings import Finding

__all__ = ["Block", "Cell", "Details", "Document", "Figure", "Findings", "Section", "Table", "Text"]


@dataclass(frozen=True)
class Cell:
    """A table cell: main text, an optional interval shown beside it, bold when it matters."""

    text: str
    ci: str = ""
    strong: bool = False


@dataclass(frozen=True)
class Text:
    text: str
    muted: bool = False


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str | Cell]]
    caption: str = ""
    label_columns: int = 1  # the first columns are labels; the rest are numbers (right-aligned)
    stack: bool = False  # intervals under their numbers (narrower, for tables with many columns)


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str
    wide: bool = True  # False: several share a row


@dataclass(frozen=True)
class Findings:
    items: list[Finding]


@dataclass(frozen=True)
class Details:
    """Secondary material, folded away in the HTML (e.g. pair grids of every other pair)."""

    summary: str
    blocks: list[Figure]


Block = Text | Table | Figure | Findings | Details


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section]
