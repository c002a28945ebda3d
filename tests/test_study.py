"""The study pipeline on the smoke preset: it runs, caches, reruns only what changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from encoderlab.config import load_preset
from encoderlab.errors import ConfigError, EncoderlabError
from encoderlab.study.config import load_study
from encoderlab.study.pipeline import Study


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("study")
    found = Study(load_study("smoke"), out, progress=False).run()
    return out, found


def test_smoke_study_runs_every_stage(smoke_study: tuple[Path, dict]) -> None:
    out, found = smoke_study
    assert set(found.values()) == {"new"}
    assert (out / "preview" / "preview.png").is_file()
    for name in ("clip", "siglip", "clip-pretrained-text", "dino"):
        assert (out / "pretrain" / name / "run.json").is_file()
    assert (out / "control" / "control.md").is_file()
    context = json.loads((out / "lm" / "context.json").read_text())  # the LM's slot check
    assert context["n"] > 0 and isinstance(context["reads_context"], bool)
    oracle = json.loads((out / "vlm" / "oracle" / "oracle.json").read_text())  # the recipe's
    assert oracle["n"] > 0 and isinstance(oracle["uses_image"], bool)  # positive control
    for vlm in ("clip", "dino", "fused"):
        assert (out / "vlm" / vlm / "vlm.json").is_file()
        assert (out / "suite" / vlm / "results.json").is_file()
    assert (out / "report" / "report.html").is_file()


def _plan_after(edit, out: Path, tmp_path: Path) -> dict[str, str]:
    preset = load_preset("smoke")
    edit(preset)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(preset))
    return {s.name: state for s, state in Study(load_study(str(path)), out, progress=False).plan()}


def test_rerun_trains_nothing_and_a_changed_knob_reruns_only_downstream(
    smoke_study: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = smoke_study
    again = Study(load_study("smoke"), out, progress=False)
    assert {s.name: state for s, state in again.plan()} == {s.name: "done" for s in again.stages}
    changed = _plan_after(lambda p: p.setdefault("control", {}).update(max_iter=7), out, tmp_path)
    # the control check and what reads it (the matched analysis, the report) rerun; nothing
    # upstream or beside it
    assert changed.pop("control") == "stale"
    assert changed.pop("matched") == "stale"
    assert changed.pop("report") == "stale"
    assert set(changed.values()) == {"done"}


def test_changing_the_vlm_lr_reruns_only_the_vlms_and_what_follows(
    smoke_study: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = smoke_study
    changed = _plan_after(
        lambda p: p.setdefault("vlm", {}).update(stage2={"train": {"lr": 5e-4}}), out, tmp_path
    )
    stale = sorted(name for name, state in changed.items() if state != "done")
    vlms = ("clip", "dino", "fused")
    vlm_stages = [*(f"vlm/{v}" for v in vlms), "vlm/oracle", *(f"suite/{v}" for v in vlms)]
    assert stale == sorted([*vlm_stages, "report"])


def test_an_objective_knob_reruns_only_that_objective_and_its_dependants(
    smoke_study: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = smoke_study
    changed = _plan_after(lambda p: p["objective"]["dino"].update(teacher_temp=0.02), out, tmp_path)
    stale = sorted(name for name, state in changed.items() if state != "done")
    dependants = ["control", "analysis", "matched", "vlm/dino", "vlm/fused", "suite/dino"]
    dependants.append("suite/fused")
    assert stale == sorted(["pretrain/dino", *dependants, "report"])


def test_a_second_replicate_adds_only_its_own_seeded_stages(
    smoke_study: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = smoke_study
    changed = _plan_after(lambda p: p.update(replicates=2), out, tmp_path)
    new = sorted(name for name, state in changed.items() if state == "new")
    per_encoder = [f"pretrain/{o}" for o in ("clip", "siglip", "clip-pretrained-text", "dino")]
    vlms = [f"{kind}/{v}" for kind in ("vlm", "suite") for v in ("clip", "dino", "fused")]
    expected = [*per_encoder, "control", "analysis", *vlms]
    assert new == sorted(f"replicate1/{name}" for name in expected)
    assert changed["report"] == "stale"  # it pools the replicates
    assert {changed[name] for name in changed if name not in new and name != "report"} == {"done"}
    cfg = load_study("smoke").model_copy(update={"replicates": 2})
    stages = {s.name: s for s in Study(cfg, out, progress=False).stages}
    first, second = stages["pretrain/dino"], stages["replicate1/pretrain/dino"]
    assert second.directory == out / "replicate1" / "pretrain" / "dino"
    for section in ("encoder", "train"):
        assert second.config[section]["seed"] == first.config[section]["seed"] + 1
    assert stages["replicate1/vlm/fused"].inputs[0] is stages["lm"]  # one LM for all


def test_interrupted_stage_is_never_taken_as_done(tmp_path: Path) -> None:
    study = Study(load_study("smoke"), tmp_path, progress=False)
    data = study.stages[0]
    from encoderlab.study import cache

    cache.begin(data.directory, data.key)  # started, never finished
    assert cache.status(data.directory, data.key) == "resume"
    (data.directory / "junk").write_text("half")
    other = cache.StageKey("data", {"other": 1}, {})
    assert cache.begin(data.directory, other) == "stale"
    assert not (data.directory / "junk").exists()


@pytest.mark.any_cpu_kind
@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda p: p["pretrain"].update(lrr=1), "pretrain.lrr: unknown key"),
        (lambda p: p["encoder"].update(patch_size="big"), "encoder.patch_size"),
        (
            lambda p: p.update(objectives=["clip", "mae"]),
            "objectives: Value error, unknown objective 'mae'",
        ),
        (lambda p: p.update(colour=1), "colour: unknown key"),
        (lambda p: p.update(vlm={"stage2": {"train": {"lr": "fast"}}}), "vlm.stage2.train.lr"),
        (lambda p: p.update(fused=["clip", "mae"]), "fused: Value error, 'mae' is not among"),
    ],
)
def test_bad_study_yaml_is_one_line_with_the_key_path(edit, needle: str, tmp_path: Path) -> None:
    preset = load_preset("smoke")
    edit(preset)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(preset))
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")) as err:
        load_study(str(path))
    assert "\n" not in str(err.value)
    proc = subprocess.run(
        [sys.executable, "-m", "encoderlab", "study", "plan", "--preset", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.any_cpu_kind
@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda p: p.update(data_path="/no/such/shards"), "data_path: /no/such/shards"),
        (lambda p: p.update(vlm={"lm_path": "/no/such/lm"}), "vlm.lm_path: /no/such/lm"),
        (lambda p: p.update(vlm_data="/no/such/llava.json"), "vlm_data: /no/such/llava.json"),
    ],
)
def test_a_missing_path_fails_in_one_line_before_anything_runs(
    edit, needle: str, tmp_path: Path
) -> None:
    preset = load_preset("smoke")
    edit(preset)
    path = tmp_path / "paths.yaml"
    path.write_text(yaml.safe_dump(preset))
    proc = subprocess.run(
        [sys.executable, "-m", "encoderlab", "study", "run", "--preset", str(path),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert needle in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_paper_preset_validates_and_checks_its_paths_first(tmp_path: Path) -> None:
    cfg = load_study("paper")
    assert (cfg.encoder.size, cfg.encoder.image_size, cfg.encoder.patch_size) == (
        "vit_base_patch16_224",
        224,
        16,
    )
    assert cfg.vlm.lm_path is not None and cfg.data_path is not None
    assert list(cfg.vlms) == [*cfg.objectives, "fused"]
    with pytest.raises(EncoderlabError, match="data_path: /data/datacomp/shards"):
        Study(cfg, tmp_path / "paper", progress=False)  # no such shards on this machine
    assert not (tmp_path / "paper").exists()
