"""Bad command lines through the installed ``encoderlab`` executable: one line each, naming the
option or argument and the ``--help`` to read, never a traceback, with whatever typer/click the
install resolved (typer 0.29 vendors click as ``typer._click``; earlier ones raise click's)."""

from __future__ import annotations

import errno
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from encoderlab import cli

EXECUTABLE = Path(sys.executable).parent / "encoderlab"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert EXECUTABLE.is_file(), f"{EXECUTABLE}: the package's console script is not installed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "80"}
    return subprocess.run(
        [str(EXECUTABLE), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


@pytest.mark.parametrize(
    ("args", "names", "help_for"),
    [
        (["pretrain", "--objective", "clip"], ["--data"], "encoderlab pretrain"),
        (["study", "run", "--quiet"], ["--quiet"], "encoderlab study run"),
        (["nosuchcmd"], ["nosuchcmd"], "encoderlab"),
        (["study", "nope"], ["nope"], "encoderlab study"),
        (["study", "run", "--only"], ["--only"], "encoderlab study run"),
        (["report"], ["study_dir"], "encoderlab report"),
        (["report", "a", "b"], ["b"], "encoderlab report"),
        (["data", "--bogus"], ["--bogus"], "encoderlab data"),
    ],
)
def test_usage_errors_are_one_line_naming_the_option_and_help(
    args: list[str], names: list[str], help_for: str, tmp_path: Path
) -> None:
    proc = _run(*args, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert all(name in lines[0] for name in names), lines[0]
    assert f"'{help_for} --help'" in lines[0], lines[0]
    assert not list(tmp_path.iterdir()), "a usage error must not create anything"


def test_bad_objective_and_help_still_work(tmp_path: Path) -> None:
    bad = _run("pretrain", "--objective", "mae", "--data", str(tmp_path), "--out", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "unknown objective 'mae'" in bad.stderr
    helped = _run("pretrain", "--help")
    assert helped.returncode == 0 and "--objective" in helped.stdout


def _click_copies() -> list[type[Exception]]:
    """Every click ``UsageError`` class importable here (typer's vendored copy, click's own)."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).UsageError)
        except ImportError:
            continue
    return found


@pytest.mark.parametrize("usage_error", _click_copies(), ids=lambda c: c.__module__)
def test_usage_errors_from_any_copy_of_click_are_one_line(
    usage_error: type[Exception], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def raise_it(*args, **kwargs) -> None:
        raise usage_error("No such option: --nope")

    cli._register()  # the commands register on the real app before it is replaced
    monkeypatch.setattr(cli, "app", raise_it)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["pretrain", "--nope"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: encoderlab: No such option: --nope. Try 'encoderlab --help'."


@pytest.mark.parametrize(
    ("code", "needle"),
    [(errno.ENOSPC, "no space left on device"), (errno.EACCES, "permission denied")],
)
def test_an_unwritable_output_is_one_line_naming_the_path(
    code: int,
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    tmp_path: Path,
) -> None:
    target = tmp_path / "runs" / "x.json"

    def write(*args, **kwargs) -> None:
        raise OSError(code, os.strerror(code), str(target))

    cli._register()
    monkeypatch.setattr(cli, "app", write)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["study", "run"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot write {target}: {needle}") and "\n" not in err


def test_typer_is_a_version_the_bounds_allow() -> None:
    """pyproject.toml's typer bounds are the versions this handler was checked against."""
    from importlib.metadata import version

    major, minor = (int(x) for x in version("typer").split(".")[:2])
    assert (0, 18) <= (major, minor) < (1, 0)
    assert hasattr(typer, "Typer")
