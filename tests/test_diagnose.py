"""``encoderlab diagnose ...`` through the CLI, on a small data set, micro encoders and a smoke
VLM (seconds), laid out the way a study directory is."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from encoderlab.cli import main
from encoderlab.data.synth import DataConfig, synthesize
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig
from encoderlab.evaluate.analyze import AnalysisConfig
from encoderlab.vlm import VLMConfig, train_vlm
from encoderlab.vlm.checkpoint import write_encoder_run

ROW = re.compile(r"^\s*(to|from) (\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s+([+-]\d\.\d+) \[")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study directory: data stage, two pretraining runs, a stage-0 LM and one VLM."""
    root = tmp_path_factory.mktemp("diagnose")
    world = WorldConfig(image_size=64)
    data = DataConfig(train=64, val=16, test=16, shard_size=64, workers=1)
    synthesize(world, data, root / "data" / "shards", progress=False)
    (root / "data" / "stage.json").write_text(
        json.dumps({"config": {"world": world.model_dump(mode="json")}})
    )
    cfg = EncoderConfig(size="micro", image_size=64, patch_size=16)
    for name, seed in (("clip", 0), ("dino", 1)):
        write_encoder_run(cfg.model_copy(update={"seed": seed}), root / "pretrain" / name)
    analysis = AnalysisConfig(scenes=24, workers=1, n_boot=100)
    (root / "analysis").mkdir()
    (root / "analysis" / "stage.json").write_text(
        json.dumps({"config": analysis.model_dump(mode="json")})
    )
    train_vlm(
        [root / "pretrain" / "clip"],
        root / "data" / "shards",
        root / "vlm" / "clip",
        VLMConfig.smoke(),
        root / "lm",
        False,
    )
    return root


def _fails_in_one_line(args: list[str], capsys: pytest.CaptureFixture, *words: str) -> None:
    with pytest.raises(SystemExit) as code:
        main(args)
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err


def test_help_lists_every_diagnostic(capsys: pytest.CaptureFixture) -> None:
    try:
        main(["diagnose", "--help"])
    except SystemExit as exc:
        assert not exc.code
    out = capsys.readouterr().out
    for name in ("vlm-answers", "lm-context", "sensitivity-by-value"):
        assert name in out


def test_vlm_answers_real_vs_blank(study: Path, capsys: pytest.CaptureFixture) -> None:
    main(["diagnose", "vlm-answers", str(study / "vlm" / "clip"), "--data", str(study / "data")])
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("by ")}
    assert set(rows) == {"letter", "cloze"}
    for row in rows.values():
        assert 0 < int(row[2]) <= 16  # the val split's multiple-choice questions
        assert row[3].endswith("%") and row[4].endswith("%")
    short = [line.split()[0] for line in out.splitlines()[4:] if "% " in line]
    assert short == ["object", "colour", "count", "read_word"]


def test_vlm_answers_bad_input(study: Path, capsys: pytest.CaptureFixture) -> None:
    vlm = str(study / "vlm" / "clip")
    _fails_in_one_line(
        ["diagnose", "vlm-answers", vlm, "--data", str(study), "--types", ""], capsys, "val"
    )
    _fails_in_one_line(
        ["diagnose", "vlm-answers", vlm, "--data", str(study / "data"), "--types", "colr"],
        capsys,
        "colr",
    )


def test_lm_context_finds_the_study_lm(study: Path, capsys: pytest.CaptureFixture) -> None:
    main(["diagnose", "lm-context", str(study), "--data", str(study / "data"), "--n", "16"])
    out = capsys.readouterr().out
    (lm_dir,) = (study / "lm").glob("lm-*")
    assert f"LM {lm_dir}:" in out
    gaps = [line for line in out.splitlines() if line.startswith(("questions", "describe"))]
    assert len(gaps) == 2
    assert re.search(r"reads its picture slot: (True|False) \(\d+ conversations\)", out)
    _fails_in_one_line(
        ["diagnose", "lm-context", str(study / "pretrain"), "--data", str(study / "data")],
        capsys,
        "no stage-0 LM",
    )


def test_lm_context_asks_an_older_lm_as_it_was_trained(
    study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An lm.json recorded before the template and question weights existed: its LM was
    trained on vicuna_v1 turns with every question type alike, not today's defaults."""
    import shutil

    (lm_dir,) = (study / "lm").glob("lm-*")
    old = tmp_path / "lm" / lm_dir.name
    shutil.copytree(lm_dir, old)
    info = json.loads((old / "lm.json").read_text())
    for key in ("template", "question_weights"):
        del info["recipe"][key]
    (old / "lm.json").write_text(json.dumps(info))
    seen = []

    def check(lm: object, tokenizer: object, world: object, recipe: VLMConfig) -> dict:
        seen.append(recipe)
        raise SystemExit(0)

    monkeypatch.setattr("encoderlab.vlm.context.context_check", check)
    with pytest.raises(SystemExit):
        main(["diagnose", "lm-context", str(old), "--data", str(study / "data"), "--n", "4"])
    (recipe,) = seen
    assert recipe.template == "vicuna_v1" and recipe.question_weights == {}
    assert recipe.n_turns == info["recipe"]["n_turns"]


def test_sensitivity_by_value_splits_every_variant(
    study: Path, capsys: pytest.CaptureFixture
) -> None:
    main(["diagnose", "sensitivity-by-value", str(study), "--factor", "colour"])
    out = capsys.readouterr().out
    total = int(re.search(r"colour: (\d+) variants", out).group(1))
    rows = [m.groups() for m in map(ROW.match, out.splitlines()) if m]
    to_rows = [r for r in rows if r[0] == "to"]
    from_rows = [r for r in rows if r[0] == "from"]
    # Each variant moves from one colour to another: both splits partition the variants.
    assert sum(int(r[2]) for r in to_rows) == total == sum(int(r[2]) for r in from_rows)
    assert all(r[1] != "None" for r in rows)


def test_sensitivity_by_value_of_an_encoder_against_itself_is_zero(
    study: Path, capsys: pytest.CaptureFixture
) -> None:
    main(["diagnose", "sensitivity-by-value", str(study), "--factor", "style", "--b", "clip"])
    rows = [m.groups() for m in map(ROW.match, capsys.readouterr().out.splitlines()) if m]
    assert rows and all(float(r[5]) == 0.0 for r in rows)


def test_sensitivity_by_value_bad_input(study: Path, capsys: pytest.CaptureFixture) -> None:
    _fails_in_one_line(
        ["diagnose", "sensitivity-by-value", str(study), "--factor", "mood"], capsys, "mood"
    )
    _fails_in_one_line(
        ["diagnose", "sensitivity-by-value", str(study), "--b", "siglip"], capsys, "siglip"
    )
    _fails_in_one_line(
        ["diagnose", "sensitivity-by-value", str(study / "pretrain")], capsys, "analysis"
    )
