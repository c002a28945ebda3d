"""One progress display for all long work (training, generation, evaluation, the study).

In a terminal: rich progress bars (count, elapsed, ETA, extra fields). Elsewhere (CI logs,
``nohup``, a pipe): rich would only draw the final state, so ``LineProgress`` prints one plain
line per task every ``interval`` seconds instead, with the same information.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, soft_wrap=True)  # never break a message line in logs


class LineProgress:
    """The part of ``rich.progress.Progress``'s API this project uses, as periodic log lines."""

    def __init__(self, fields: str = "", interval: float = 15.0) -> None:
        self.fields = fields
        self.interval = interval
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for tid in self.tasks:
            self._print(tid)

    def add_task(
        self, description: str, total: float | None = None, completed: float = 0, **fields: Any
    ) -> int:
        tid = len(self.tasks)
        now = time.monotonic()
        self.tasks[tid] = {
            "description": description, "total": total, "completed": completed, "start": now,
            "start_completed": completed, "last": now, "fields": fields,
        }  # fmt: skip
        return tid

    def update(
        self, task_id: int, *, completed: float | None = None, advance: float = 0, **fields: Any
    ) -> None:
        task = self.tasks[task_id]
        if completed is not None:
            task["completed"] = completed
        task["completed"] += advance
        task["fields"].update(fields)
        if time.monotonic() - task["last"] >= self.interval:
            self._print(task_id)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _print(self, task_id: int) -> None:
        task = self.tasks[task_id]
        task["last"] = now = time.monotonic()
        done, total = task["completed"], task["total"]
        elapsed = now - task["start"]
        rate = (done - task["start_completed"]) / elapsed if elapsed > 0 else 0.0
        eta = f", eta {(total - done) / rate:.0f} s" if total and rate > 0 else ""
        extra = ""
        if self.fields:

            class _Task:  # what rich's format strings see as ``task``
                fields = task["fields"]

            try:
                extra = "  " + self.fields.format(task=_Task)
            except (KeyError, ValueError, TypeError):
                extra = ""
        of = f"/{total:.0f}" if total else ""
        console.print(
            f"{task['description']}: {done:.0f}{of}, {elapsed:.0f} s{eta}{extra}", highlight=False
        )


def make_progress(
    enabled: bool = True, fields: str = ""
) -> Progress | LineProgress | nullcontext[None]:
    """A progress display with count, elapsed time, ETA and an optional free-text field.

    ``fields`` is a format string over a task's extra fields, e.g. ``"loss {task.fields[loss]}"``.
    Disabled (a null context) when ``enabled`` is false, e.g. on non-zero DDP ranks.
    """
    if not enabled:
        return nullcontext()
    if not console.is_terminal:
        return LineProgress(fields)
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


__all__ = ["LineProgress", "TaskID", "console", "make_progress"]
