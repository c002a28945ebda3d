"""The documents name only presets and scripts that exist and load; the layout rules hold."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from encoderlab.config import list_presets, load_preset
from encoderlab.errors import ConfigError
from encoderlab.study.config import load_study

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted(ROOT.glob("experiments/**/README.md")),
]
SRC = ROOT / "src" / "encoderlab"
SHIPPED = {"smoke", "tiny", "paper", "paper-dry", "clipart", "clipart-smoke"}

PRESET_ARG = re.compile(r"--preset[ =]([\w./-]+)")
EXPERIMENT_NAME = re.compile(r"`(experiments/[\w.-]+)`")
SCRIPT = re.compile(r"\b((?:bench|experiments)/[\w./-]+\.py)\b")
EXPERIMENT_DIR = re.compile(r"`experiments/(\w+)`")


def _texts() -> dict[Path, str]:
    return {p: p.read_text() for p in DOCS}


def named_presets() -> set[str]:
    names: set[str] = set()
    for text in _texts().values():
        names |= set(PRESET_ARG.findall(text)) | set(EXPERIMENT_NAME.findall(text))
    # placeholders (`--preset NAME`) and script paths are not preset names
    names = {n for n in names if n.lower() == n and not n.endswith(".py")}
    # `experiments/<dir>` names a script directory, not a preset, when that directory exists
    return {n for n in names if not (ROOT / n).is_dir()}


def test_documents_name_presets() -> None:
    names = named_presets()
    assert {"tiny", "experiments/mini-1200", "experiments/dino-vit-recipe"} <= names


@pytest.mark.parametrize("name", sorted(named_presets()))
def test_every_named_preset_exists_and_loads(name: str) -> None:
    assert name in SHIPPED or name in list_presets("experiments"), name
    if name in ("paper", "paper-dry"):  # data and LM paths: placeholders / written by study.dry
        assert load_preset(name)["name"] == name
        return
    cfg = load_study(name)
    assert cfg.objectives


def test_every_experiment_preset_is_named_in_the_results() -> None:
    results = (ROOT / "docs" / "results.md").read_text()
    for name in list_presets("experiments"):
        assert f"`{name}`" in results, f"{name} is not reported in docs/results.md"


def test_experiment_presets_state_their_command() -> None:
    for name in list_presets("experiments"):
        text = (SRC / "presets" / f"{name}.yaml").read_text()
        assert f"# {name}:" in text and "# Command:" in text and "docs/results.md" in text
        assert f"--preset {name}" in text


def test_unknown_experiment_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="experiments/mini-1200"):
        load_preset("experiments/no-such-thing")


def test_every_named_script_exists() -> None:
    for path, text in _texts().items():
        for script in (s for s in SCRIPT.findall(text) if s.lower() == s):
            assert (ROOT / script).is_file(), f"{path.name} names {script}"
        for name in (n for n in EXPERIMENT_DIR.findall(text) if n.lower() == n):
            target = ROOT / "experiments" / name
            preset = SRC / "presets" / "experiments" / f"{name}.yaml"
            assert target.is_dir() or preset.is_file(), f"{path.name} names experiments/{name}"


def test_readme_is_a_users_readme() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < 20_000
    assert "make study" in text and "make test" in text
    assert "docs/report_tiny.png" in text and (ROOT / "docs" / "report_tiny.png").is_file()
    assert "| `tiny`" in text  # the presets table
    for history in ("session", "throw-away", "CI time", "passed in"):
        assert history not in text, history


def test_code_does_not_point_at_the_readme() -> None:
    for path in SRC.rglob("*.py"):
        assert "README" not in path.read_text(), path
    for path in (SRC / "presets").rglob("*.yaml"):
        assert "README" not in path.read_text(), path


def test_no_module_imports_a_private_name_from_another_package() -> None:
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(
                "encoderlab"
            ):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                same_package = node.module.split(".")[:2] == module.split(".")[:2]
                assert not private or same_package, f"{module} imports {node.module}.{alias.name}"


# faults.py injects faults into the CLI (docs/reliability.md); it is a check, not a benchmark.
BENCHMARKS = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "faults.py")


@pytest.mark.any_cpu_kind
@pytest.mark.parametrize("script", BENCHMARKS)
def test_benchmarks_run_with_help_and_name_their_peer(script: str) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "peer" in out.stdout.lower()
