"""LLaVA-format instruction JSON and VMCBench TSV from any data set; stage 2 trained from LLaVA
JSON; SynthWorld's stage-2 conversations expressed as that JSON (round trip)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from encoderlab.data.clipart import scan_clipart
from encoderlab.data.importer import ImportConfig, import_items
from encoderlab.data.labelled_vqa import export_vmcbench, label_question, vocabulary
from encoderlab.data.synth import DataConfig, synthesize
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig
from encoderlab.errors import DataError
from encoderlab.suite.formats import load_table
from encoderlab.suite.questions import QuestionMix
from encoderlab.vlm import VLMConfig, train_vlm
from encoderlab.vlm.checkpoint import write_encoder_run
from encoderlab.vlm.data import conversations, read_world
from encoderlab.vlm.llava_json import (
    LLAVA_TURNS,
    export_llava,
    from_llava,
    read_llava_json,
    read_llava_world,
    to_llava,
)

FIXTURES = Path(__file__).parent / "fixtures" / "clipart"
CATEGORIES = {"animals", "food", "tools", "transportation"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    data = DataConfig(train=32, val=8, test=8, shard_size=64, workers=1)
    return synthesize(WorldConfig(image_size=32), data, root / "data", progress=False)


@pytest.fixture(scope="module")
def clipart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clipart") / "data"
    items, skipped = scan_clipart(FIXTURES)
    import_items(items, out, ImportConfig(image_size=64, workers=1), {}, skipped, False)
    return out


def test_records_round_trip_and_bad_records_are_one_line() -> None:
    turns = [("What is shown?\nAnswer briefly.", "a cat"), ("Colour?", "B")]
    record = to_llava("7", "train/x.png", turns)
    assert record["conversations"][0] == {
        "from": "human",
        "value": "<image>\nWhat is shown?\nAnswer briefly.",
    }
    assert [m["from"] for m in record["conversations"]] == ["human", "gpt", "human", "gpt"]
    assert from_llava(record) == turns
    # LLaVA's mix also puts the placeholder at the end of the first turn
    tail = {
        "conversations": [
            {"from": "human", "value": "Describe.\n<image>"},
            {"from": "gpt", "value": "x"},
        ]
    }
    assert from_llava(tail) == [("Describe.", "x")]
    with pytest.raises(DataError, match="r 3: turn 1: expected a human then a gpt"):
        from_llava(
            {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}]},
            "r 3",
        )
    with pytest.raises(DataError, match="turn pairs"):
        from_llava({"conversations": [{"from": "human", "value": "a"}]})


def test_synthworld_conversations_round_trip_through_llava_json(
    synth: Path, tmp_path: Path
) -> None:
    recipe = VLMConfig(n_turns=3, seed=5, mc_fraction=0.5)
    path, count = export_llava(synth / "train", synth / "llava-train.json", recipe, n=24)
    records = read_llava_json(path)
    assert count == len(records) > 0
    assert records[0]["image"].startswith("train/") and records[0]["image"].endswith(".png")
    direct = read_world(synth / "train", 24, image_size=32)
    expected = conversations(direct, 24, recipe.question_mix, 5, 2)
    world = read_llava_world(path, 24, image_size=32)
    # the JSON's samples are the conversations' samples, in order, with the same images
    assert [world.metas[k][LLAVA_TURNS] for k in range(len(world))] == [
        [list(t) for t in turns] for _, turns in expected
    ]
    got = conversations(world, 24, recipe.question_mix, 99, 2)  # turns: the JSON's, not the seed's
    assert [t for _, t in got] == [t for _, t in expected]
    for k, (i, _) in enumerate(expected):
        assert torch.equal(world.images[k], direct.images[i])
        assert world.texts[k] == direct.texts[i]  # shard members bring their captions
    # exported images beside the JSON (what LLaVA's trainer reads) resolve to the same pixels
    out = tmp_path / "llava" / "data.json"
    export_llava(synth / "train", out, recipe, n=4, export_images=True)
    assert (tmp_path / "llava" / "train").is_dir()
    loose = read_llava_world(out, 4, image_size=32)
    assert all(torch.equal(a, b) for a, b in zip(loose.images, world.images[:4], strict=False))
    bad = json.loads(out.read_text())
    bad[1]["image"] = "train/nowhere.png"
    (tmp_path / "llava" / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(
        DataError, match=r"bad\.json: record 1: image 'train/nowhere\.png' not found"
    ):
        read_llava_world(tmp_path / "llava" / "bad.json", 4, image_size=32)


def test_real_labelled_shards_get_stage2_conversations(clipart: Path) -> None:
    world = read_world(clipart / "train", 64, image_size=None, images=False)
    convs = conversations(world, 64, QuestionMix(3, 0.5, {}, False), 0, 2)
    assert len(convs) == len(world) == 16  # before: SynthWorld's generators found nothing
    for i, turns in convs:
        (question, answer), *_ = turns
        assert question.startswith("What is shown in the image?")
        category = world.metas[i]["category"]
        assert answer == category or (answer in "ABCD" and f"{answer}. {category}" in question)
    vocab = vocabulary(world.metas)
    assert vocab == {"category": sorted(CATEGORIES)}  # 3 superclasses: too few for 4 options
    q = label_question("category", world.metas[0], np.random.default_rng(0), vocab)
    assert q is not None and sorted(q.options) == sorted(CATEGORIES)


def test_vmcbench_tsv_of_a_labelled_split(clipart: Path, tmp_path: Path) -> None:
    path, count = export_vmcbench(clipart / "test", tmp_path / "clipart.tsv")
    items = load_table(path)
    assert count == len(items) == 4
    for item in items:
        assert item.question == "What is shown in the image?" and len(item.options) == 4
        assert item.options[item.answer_index] == item.answers[0] in CATEGORIES
        assert item.extra["key"].startswith(item.answers[0])  # keys start with the folder
    with pytest.raises(DataError, match="no label with 4\\+ values"):
        export_vmcbench(_unlabelled(tmp_path), tmp_path / "x.tsv")


def _unlabelled(tmp_path: Path) -> Path:
    data = DataConfig(train=4, val=4, test=4, shard_size=64, workers=1)
    root = synthesize(WorldConfig(image_size=32), data, tmp_path / "w", progress=False)
    return root / "test"  # SynthWorld's meta has no top-level category label


def test_stage2_trains_from_llava_json(clipart: Path, tmp_path: Path) -> None:
    path, count = export_llava(clipart / "train", clipart / "llava-train.json", VLMConfig())
    assert count == 16
    cfg = EncoderConfig(size="micro", image_size=64, patch_size=16)
    encoder = write_encoder_run(cfg, tmp_path / "enc")
    record = train_vlm([encoder], path, tmp_path / "vlm", VLMConfig.smoke(), tmp_path / "lm", False)
    stage2 = record["stages"]["stage2"]
    assert stage2["examples"] == 16 and stage2["final"]
    assert record["data"] == {"source": str(path), "samples": 16}


def test_cli_llava_json_and_vmcbench_tsv(
    clipart: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from encoderlab.cli import main

    main(["data", "llava-json", str(clipart), "--out", str(tmp_path / "l.json"), "--seed", "3"])
    main(["data", "vmcbench-tsv", str(clipart), "--split", "val"])
    err = capsys.readouterr().err
    assert "wrote 16 conversations" in err and "wrote 4 items" in err
    assert len(read_llava_json(tmp_path / "l.json")) == 16
    assert len(load_table(clipart / "vmcbench-val.tsv")) == 4


def test_sanity_check_asks_real_data_about_its_labels(clipart: Path) -> None:
    from encoderlab.vlm.sanity import heldout_items

    items = heldout_items(clipart, 8, image_size=64, split="test")
    assert len(items) == 4  # before: "no sample supports a question"
    for item, q in items:
        assert q.answer == item["meta"]["category"] and sorted(q.options) == sorted(CATEGORIES)
