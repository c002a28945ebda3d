"""The ``encoderlab`` command line.

Each command group lives in its own module and registers itself on ``app``; ``main`` turns any
``EncoderlabError``, any usage error (missing or unknown option, unknown command) and any output
that cannot be written (full disk, read-only directory) into one line on stderr and exit status
2, so bad input never shows a traceback.

Usage errors are recognised by the shape of click's exception classes, not by their identity:
typer 0.29 vendors click as ``typer._click`` (its exceptions are not ``click``'s), earlier typers
raise ``click``'s own, and either may change again.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

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


PROG = "encoderlab"


def _is_click(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is click's ``name`` exception, whichever copy of click raised it."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _command_path(argv: list[str]) -> str:
    """``encoderlab`` plus the (sub)commands named at the start of ``argv``: where ``--help``
    helps, for the usage errors that carry no context."""
    path = [PROG]
    try:
        command: Any = typer.main.get_command(app)
    except Exception:  # the path is a courtesy: never let it hide the usage error itself
        return PROG
    for arg in argv:
        commands = getattr(command, "commands", None)
        if not commands or arg not in commands:
            break
        command = commands[arg]
        path.append(arg)
    return " ".join(path)


def usage_line(exc: BaseException, argv: list[str]) -> str:
    """One line for a click usage error: what is wrong (naming the option or argument), and
    which ``--help`` to read."""
    message = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or _command_path(argv)
    if not _is_click(exc, "UsageError"):
        return message
    if not message.endswith((".", "?", "!")):
        message += "."
    return f"{path}: {message} Try '{path} --help'."


def _error(message: str) -> None:
    # a Text, not markup: messages quote user input, paths and "[OPTIONS]" verbatim
    line = Text.assemble(("error:", "bold red"), " ", message.replace("\n", " "))
    err_console.print(line, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, reporting user errors as one line."""
    from encoderlab.files import is_output_error, output_error

    _register()
    args = list(sys.argv[1:] if argv is None else argv)
    # Every command (embedding, evaluation, training) reuses freed host memory instead of
    # re-faulting it; the trainer also sets this for library use (train/host_memory.py).
    keep_freed_memory()
    try:
        app(args=args, prog_name=PROG, standalone_mode=False)
    except EncoderlabError as err:
        _error(str(err))
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except OSError as err:
        if is_output_error(err) and err.filename:  # full disk, read-only or foreign directory
            _error(str(output_error(err, err.filename)))
            sys.exit(2)
        raise
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        if _is_click(exc, "Exit"):
            sys.exit(getattr(exc, "exit_code", 0) or 0)
        if _is_click(exc, "Abort"):
            err_console.print("aborted")
            sys.exit(130)
        if _is_click(exc, "ClickException") and hasattr(exc, "format_message"):
            code = getattr(exc, "exit_code", 2)
            if not str(exc.format_message()).strip():
                sys.exit(code)  # no_args_is_help: the help was the message, already shown
            _error(usage_line(exc, args))
            sys.exit(code)
        raise
