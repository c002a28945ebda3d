"""The VLM recipe has one source (issue #18): the question mix (``n_turns``, ``mc_fraction``)
and the scoring rule are defined once and reach every consumer from the config the LM / VLM
was trained with; the tiny recipe is written out in full in ``presets/tiny.yaml`` and a change
there is what the study runs. Nothing trains here: consumers are stopped (or stubbed) at the
point where they read the values."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer.models
from pydantic import BaseModel

import encoderlab
from encoderlab.config import load_preset
from encoderlab.study.config import StudyConfig, load_study
from encoderlab.study.pipeline import Study
from encoderlab.suite.harness import EvalConfig
from encoderlab.train.distributed import DistInfo
from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.data import TrainWorld

# imported before any stub of vlm.data.read_world: the oracle module binds it on first import
from encoderlab.vlm.oracle import oracle_check  # noqa: F401

# the recipe's question mix, rendering and scoring, as the consumers' parameters name them
RECIPE_PARAMETERS = (
    "mix",
    "n_turns",
    "mc_fraction",
    "type_weights",
    "short_option_questions",
    "per_image",
    "style",
    "scoring",
)
TINY = Path(encoderlab.__file__).parent / "presets" / "tiny.yaml"


# -- one source -----------------------------------------------------------------------------
def _functions() -> list[tuple[str, Any]]:
    """Every function and method defined in an encoderlab module."""
    found = []
    for info in pkgutil.walk_packages(encoderlab.__path__, "encoderlab."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                found += [(f"{info.name}.{name}.{k}", v) for k, v in vars(obj).items()]
            elif getattr(obj, "__module__", None) == module.__name__:
                found.append((f"{info.name}.{name}", obj))
    return [(n, f) for n, f in found if inspect.isfunction(f)]


def test_the_question_mix_and_scoring_have_no_second_default() -> None:
    """No function gives the question mix (``mix``, or its ``n_turns``, ``mc_fraction``,
    ``type_weights``, ``short_option_questions``), ``per_image``, the template ``style`` or
    ``scoring`` a default of its own (a CLI option may default to None: "the preset's"); the
    config fields hold the only ones."""
    stray = []
    for name, fn in _functions():
        for param in inspect.signature(fn).parameters.values():
            default = param.default
            if isinstance(default, typer.models.ParameterInfo):
                default = default.default
            if param.name in RECIPE_PARAMETERS and default not in (inspect.Parameter.empty, None):
                stray.append(f"{name}({param.name}={default!r})")
    assert not stray, stray
    # ... and the config's defaults are the study's and the tiny preset's
    fields = VLMConfig.model_fields
    study, tiny = StudyConfig(), load_study("tiny")
    for key in (
        "n_turns",
        "mc_fraction",
        "short_option_questions",
        "question_weights",
        "conversations_per_image",
        "template",
    ):
        default = fields[key].get_default(call_default_factory=True)
        assert getattr(study.vlm, key) == getattr(tiny.vlm, key) == default
    assert study.suite.scoring == EvalConfig.model_fields["scoring"].default == "letter"
    assert tiny.suite.scoring == "cloze"  # the tiny LM cannot answer with a letter (lab notes)


class _Seen(Exception):
    """Raised by a stub once it has recorded what it was called with (stops the consumer)."""


def _world(n: int = 4) -> TrainWorld:
    metas = [{"kind": "objects", "objects": [], "index": i} for i in range(n)]
    return TrainWorld("constructed", [f"caption {i}" for i in range(n)], metas, [])


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float, dict, bool]]:
    """``(n_turns, mc_fraction, type_weights, short_option_questions)`` of every SynthWorld
    conversation drawn for a VLM stage."""
    calls: list[tuple[int, float, dict, bool]] = []

    def record(
        meta: dict,
        rng: Any,
        n_turns: int,
        mc_fraction: float,
        type_weights: dict,
        short_option_questions: bool,
    ) -> list:
        calls.append((n_turns, mc_fraction, dict(type_weights), short_option_questions))
        raise _Seen

    monkeypatch.setattr("encoderlab.vlm.data.training_conversation", record)
    return calls


def _odd_recipe() -> StudyConfig:
    """The smoke study with a question mix, scoring and check size that no default has."""
    cfg = load_study("smoke")
    vlm = cfg.vlm.model_copy(
        update={
            "n_turns": 3,
            "mc_fraction": 0.7,
            "question_weights": {"object": 3.0},
            "short_option_questions": False,  # tiny's and smoke's: true
        }
    )
    # smoke scores by cloze
    suite = cfg.suite.model_copy(update={"scoring": "letter", "check_questions": 37})
    return cfg.model_copy(update={"vlm": vlm, "suite": suite})


def test_stage0_stage2_and_the_context_check_ask_the_configs_mix(
    asked: list[tuple[int, float, dict, bool]], tmp_path: Path
) -> None:
    from encoderlab.vlm.context import context_check
    from encoderlab.vlm.lm import pretrain_lm
    from encoderlab.vlm.pipeline import train_stages

    recipe = _odd_recipe().vlm
    with pytest.raises(_Seen):  # stage 0: its corpus
        pretrain_lm(recipe, _world(), tmp_path, progress=False)
    tokenizer = SimpleNamespace(
        pad_token_id=0, bos_token_id=1, eos_token_id=2, convert_tokens_to_ids=lambda t: 3
    )
    template = SimpleNamespace(tok=tokenizer, caption=lambda text: text)
    with pytest.raises(_Seen):  # stage 2: its instruction examples
        train_stages(None, None, template, _world(), recipe, tmp_path, DistInfo(), False)  # type: ignore[arg-type]
    lm = SimpleNamespace(eval=lambda: None)
    with pytest.raises(_Seen):  # the LM's picture-slot check: held-out questions
        context_check(lm, tokenizer, _world(), recipe)  # type: ignore[arg-type]
    assert asked == [(3, 0.7, {"object": 3.0}, False)] * 3


def test_the_study_hands_each_check_the_recipe_it_trained_with(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The lm stage gives stage 0 and the context check the same VLM config; the VLM, oracle
    and suite stages score by the study's suite.scoring; the sanity and oracle checks ask its
    suite.check_questions."""
    cfg = _odd_recipe()
    got: dict[str, Any] = {}

    def keep(key: str, value: Any = None) -> Any:
        def stub(*args: Any, **kw: Any) -> Any:
            got[key] = (args, kw)
            return value() if callable(value) else value

        return stub

    lm_dir = tmp_path / "lm-x"
    monkeypatch.setattr("encoderlab.vlm.data.read_world", keep("read_world", _world))
    monkeypatch.setattr("encoderlab.vlm.lm.pretrain_lm", keep("pretrain_lm", lm_dir))
    monkeypatch.setattr("encoderlab.vlm.lm.load_lm", keep("load_lm", (None, None)))
    monkeypatch.setattr(
        "encoderlab.vlm.context.context_check", keep("context", {"reads_context": True})
    )
    monkeypatch.setattr("encoderlab.vlm.pipeline.train_vlm", keep("train_vlm", {}))
    monkeypatch.setattr("encoderlab.vlm.load", keep("load"))
    monkeypatch.setattr("encoderlab.vlm.sanity.image_sanity", keep("sanity", {}))
    oracle = {"uses_image": True, "gain": 0.1}
    monkeypatch.setattr("encoderlab.vlm.oracle.oracle_check", keep("oracle", oracle))
    monkeypatch.setattr("encoderlab.suite.harness.evaluate", keep("suite", {"benchmarks": {}}))
    out = tmp_path / "study"
    (out / "data" / "shards" / "val").mkdir(parents=True)
    stages = {s.name: s for s in Study(cfg, out, progress=False).stages}
    for name in ("lm", "vlm/clip", "vlm/oracle", "suite/clip"):
        stages[name].directory.mkdir(parents=True, exist_ok=True)
        stages[name].run(stages[name])
    trained_with = got["pretrain_lm"][0][0]
    assert trained_with is cfg.vlm and got["context"][0][3] is cfg.vlm
    assert stages["lm"].config["n_turns"] == 3 and stages["lm"].config["mc_fraction"] == 0.7
    assert stages["lm"].config["short_option_questions"] is False
    assert got["train_vlm"][0][3] is cfg.vlm and got["oracle"][0][0] is cfg.vlm
    assert got["sanity"][1]["scoring"] == got["oracle"][1]["scoring"] == "letter"
    assert got["suite"][0][1].scoring == "letter"
    assert got["sanity"][0][2] == got["oracle"][0][4] == 37
    assert {stages[n].config["scoring"] for n in ("vlm/clip", "vlm/oracle", "suite/clip")} == {
        "letter"
    }


# -- the tiny recipe in its preset ----------------------------------------------------------
def _fields(model: type[BaseModel], section: dict[str, Any], path: str = "vlm") -> list[str]:
    """Key paths of ``model``'s fields that ``section`` does not write out."""
    missing = []
    for name, field in model.model_fields.items():
        if name not in section:
            missing.append(f"{path}.{name}")
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            missing += _fields(field.annotation, section[name], f"{path}.{name}")
    return missing


def test_tiny_yaml_writes_the_whole_vlm_recipe() -> None:
    section = load_preset("tiny")["vlm"]
    assert _fields(VLMConfig, section) == []
    # the values are today's defaults: writing them out changed no result (and no stage hash)
    assert VLMConfig.model_validate(section) == VLMConfig() == load_study("tiny").vlm


def test_a_changed_key_in_a_copy_of_tiny_yaml_is_what_the_study_runs(tmp_path: Path) -> None:
    text = TINY.read_text()
    for old, new in (
        ("  n_turns: 4 ", "  n_turns: 3 "),
        ("batch_size: 32, samples: 32768,", "batch_size: 32, samples: 16384,"),
        ("  short_option_questions: true ", "  short_option_questions: false "),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    copy = tmp_path / "tiny-copy.yaml"
    copy.write_text(text)
    cfg = load_study(str(copy))  # as `encoderlab study run --preset tiny-copy.yaml` loads it
    assert cfg.vlm.n_turns == 3 and cfg.vlm.stage2.train.total_steps == 512
    assert cfg.vlm.stage1.train.samples == 2048  # the shared schedule is untouched elsewhere
    stages = {s.name: s for s in Study(cfg, tmp_path / "study", progress=False).stages}
    assert stages["lm"].config["n_turns"] == 3
    assert stages["lm"].config["short_option_questions"] is False
    for name in ("vlm/clip", "vlm/dino", "vlm/fused", "vlm/oracle"):
        assert stages[name].config["stage2"]["train"]["samples"] == 16384
        assert stages[name].config["n_turns"] == 3
        assert stages[name].config["short_option_questions"] is False
    tiny = {s.name: s for s in Study(load_study("tiny"), tmp_path / "t", progress=False).stages}
    assert stages["vlm/clip"].key.hash != tiny["vlm/clip"].key.hash  # it would rerun
