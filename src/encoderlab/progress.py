"""One progress display for all long work (training, generation, evaluation, the study)."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, soft_wrap=True)  # never break a message line in logs


def make_progress(enabled: bool = True, fields: str = "") -> Progress | nullcontext[None]:
    """A rich progress bar with count, elapsed time, ETA and an optional free-text field.

    ``fields`` is a format string over a task's extra fields, e.g. ``"loss {task.fields[loss]}"``.
    Disabled (a null context) when ``enabled`` is false, e.g. on non-zero DDP ranks.
    """
    if not enabled:
        return nullcontext()
    columns: list[Any] = [
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=None if sys.stderr.isatty() else 30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    if fields:
        columns.append(TextColumn(fields))
    return Progress(*columns, console=console, transient=False, refresh_per_second=4)
