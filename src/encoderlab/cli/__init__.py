"""The ``encoderlab`` command line.

Each command group lives in its own module and registers itself on ``app``; ``main`` turns any
``EncoderlabError`` into one line on stderr and exit status 2, so bad input never shows a
traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from encoderlab.errors import EncoderlabError
from encoderlab.train.host_memory import keep_freed_memory

app = typer.Typer(
    help="encoderlab: controlled studies of vision encoders (CLIP, SigLIP, DINO...).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _register() -> None:
    # Imported for their side effect of adding commands to ``app``.
    from encoderlab.cli import analyze, data, diagnose, pretrain, study, suite, vlm  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, reporting user errors as one line."""
    _register()
    # Every command (embedding, evaluation, training) reuses freed host memory instead of
    # re-faulting it; the trainer also sets this for library use (train/host_memory.py).
    keep_freed_memory()
    try:
        app(args=argv, standalone_mode=False)
    except EncoderlabError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
