"""The LLaVA-style VLM: tokenizer, template, stages, batched inference, checkpoints, errors.

Micro sizes throughout (micro ViT at 64 px / patch 16 = 16 image tokens, a 64-wide 2-layer
Llama), so the whole file trains its few VLMs in seconds.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from encoderlab.data.synth import DataConfig, synthesize
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig
from encoderlab.errors import ConfigError, DataError, EncoderlabError
from encoderlab.suite.questions import MC_SUFFIX, SHORT_SUFFIX, QuestionMix, short_prompt
from encoderlab.train.config import TrainConfig
from encoderlab.train.pretrain import load_encoder
from encoderlab.train.trainer import Trainer, samples_in
from encoderlab.vlm import VLM, VLMConfig, load, load_vlm_config, train_vlm
from encoderlab.vlm.checkpoint import write_encoder_run
from encoderlab.vlm.context import context_check
from encoderlab.vlm.data import (
    ExampleDataset,
    PackCollate,
    PadCollate,
    caption_examples,
    corpus_texts,
    instruction_examples,
    lm_corpus,
    pack,
    read_world,
    train_split,
)
from encoderlab.vlm.lm import build_lm, load_lm, pretrain_lm
from encoderlab.vlm.model import answer_loss, build_model
from encoderlab.vlm.oracle import OracleTokens, oracle_grid
from encoderlab.vlm.sanity import answer_correct, heldout_items, image_sanity, real_vs_blank
from encoderlab.vlm.tasks import STAGE_TRAINABLE, VLMStageTask
from encoderlab.vlm.template import IGNORE_INDEX, SYSTEM, Example, Template
from encoderlab.vlm.tokenizer import train_tokenizer
from encoderlab.vlm.vision import (
    VisionTower,
    encode_images,
    feature_stats,
    read_image,
    standardize,
)


def mix(n_turns: int) -> QuestionMix:
    """A question mix for building conversations (LLaVA's share of multiple choice, types
    alike)."""
    return QuestionMix(n_turns, 0.5, {}, False)


MC = "Which object is shown?\nA. cat\nB. car\nC. tree\nD. cup\nAnswer with the option's letter from the given choices directly."
PROMPTS = [
    MC,
    "What colour is the object?\nAnswer the question using a single word or phrase.",
    "How many objects are there in the image?",
    "Read the sign.",
    MC.replace("cat", "light bulb"),
    "Is there a fish?",
]


def _encoder(root: Path, name: str, **kw) -> Path:
    cfg = EncoderConfig(**{"size": "micro", "image_size": 64, "patch_size": 16, **kw})
    return write_encoder_run(cfg, root / name)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vlm")
    data = DataConfig(train=64, val=16, test=16, shard_size=64, workers=1)
    synthesize(WorldConfig(image_size=64), data, root / "data", progress=False)
    _encoder(root, "enc0", seed=0)
    _encoder(root, "enc1", seed=1)
    _encoder(root, "enc_p8", patch_size=8)  # 64 patches: does not fit a 16-token VLM
    return root


@pytest.fixture(scope="module")
def trained(root: Path) -> dict:
    """One smoke VLM through stages 0, 1, 2 (the checkpoint the other tests read)."""
    return train_vlm(
        [root / "enc0"], root / "data", root / "vlm0", VLMConfig.smoke(), root / "lm", False
    )


@pytest.fixture(scope="module")
def parts(root: Path) -> dict:
    """A VLM built from parts, with a randomly initialised LM (varied greedy outputs)."""
    cfg = VLMConfig.smoke()
    world = read_world(train_split(root / "data"), 32, image_size=64)
    tok = train_tokenizer(
        corpus_texts(
            *lm_corpus(world, 32, mix(2), 0),
            "vicuna_v1",
        ),
        256,
    )
    tower = VisionTower([load_encoder(root / "enc0")], cfg.tap_layer)
    lm = build_lm(cfg.lm, tok)
    # A wide random init: greedy outputs then vary with image and prompt (a small init just
    # repeats the last prompt token), so the equality checks below have teeth.
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for p in lm.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.3)
    model = build_model(tower, lm, tok, seed=0)
    return {"cfg": cfg, "world": world, "tok": tok, "tower": tower, "model": model}


def _images(world, n: int = len(PROMPTS)) -> torch.Tensor:
    return torch.stack(list(world.images[:n]))  # decoded on access (ShardImages)


# --- tokenizer and template ---------------------------------------------------------------------


def test_tokenizer_letters_digits_roundtrip(parts: dict) -> None:
    tiny = train_tokenizer(["no capitals here, 12 words"] * 5, 200)  # BPE never sees " A".." D"
    for tok in (parts["tok"], tiny):
        for letter in ("A", "B", "C", "D"):
            assert len(tok.encode(f" {letter}", add_special_tokens=False)) == 1
        pieces = tok.convert_ids_to_tokens(tok.encode(" 2024", add_special_tokens=False))
        assert [p.strip() for p in pieces if p.strip()] == ["2", "0", "2", "4"]  # one per digit
    tok = parts["tok"]
    text = 'USER: What does the sign say? ASSISTANT: "$12.99", a red cat'
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    # an answer word is the same token as in running text (what lets the LM copy it)
    assert Template(tok, 1, 64, style="vicuna_v1").answer("fish") == tok.encode(
        " fish", add_special_tokens=False
    )
    assert tok.encode("a fish", add_special_tokens=False)[-1:] == tok.encode(" fish")[-1:]


def test_template_masks_all_but_answers(parts: dict) -> None:
    tok = parts["tok"]
    tpl = Template(tok, num_image_tokens=5, max_text_tokens=512, style="vicuna_v1")
    ex = tpl.conversation([(MC, "B"), ("What colour is it?", "red")])
    ids, labels = torch.tensor(ex.input_ids), torch.tensor(ex.labels)
    assert int((ids == tpl.image_id).sum()) == 5  # placeholder expanded, before the first turn
    assert tok.decode(ids[labels != IGNORE_INDEX]) == " B</s> red</s>"
    full = tok.decode(ids[ids != tpl.image_id])
    assert (
        full.startswith("<s>A chat between") and "USER: \n" + MC + " ASSISTANT: B</s>USER: " in full
    )
    # the inference prompt is the training sequence up to the first answer, whose first token is
    # the letter alone: what score_choices reads
    prompt = tpl.prompt(MC)
    assert ex.input_ids[: len(prompt)] == prompt
    assert ex.input_ids[len(prompt)] == tok.convert_tokens_to_ids(" B")
    cap = tpl.caption("a red cat")
    answer = [i for i, lab in zip(cap.input_ids, cap.labels, strict=True) if lab != IGNORE_INDEX]
    assert tok.decode(answer) == "a red cat\n"


def test_compact_template_drops_the_system_prompt_and_instructions(parts: dict) -> None:
    tok = parts["tok"]
    turns = [(short_prompt("What colour is it?"), "red"), (MC, "B")]
    full, compact = (
        Template(tok, 5, 512, style=s).conversation(turns) for s in ("vicuna_v1", "compact")
    )
    text = tok.decode([i for i in compact.input_ids if i != tok.convert_tokens_to_ids("<image>")])
    mc = MC.removesuffix(MC_SUFFIX)
    assert text == f"<s>USER: \nWhat colour is it? ASSISTANT: red</s>USER: {mc} ASSISTANT: B</s>"
    assert SYSTEM not in text and SHORT_SUFFIX.strip() not in text
    assert len(compact.input_ids) < len(full.input_ids)

    def answers(ex: Example) -> list[int]:
        return [label for label in ex.labels if label != IGNORE_INDEX]

    assert answers(compact) == answers(full)  # the same supervision, fewer tokens around it
    with pytest.raises(ValueError, match="unknown template style"):
        Template(tok, 5, 512, style="chatml").conversation(turns)  # type: ignore[arg-type]


def test_several_conversations_per_image_ask_fresh_questions(parts: dict) -> None:
    tpl = Template(parts["tok"], 5, 512, style="compact")
    short = QuestionMix(2, 0.0, {}, True)
    one, idx1 = instruction_examples(tpl, parts["world"], 16, short, 0, per_image=1)
    three, idx3 = instruction_examples(tpl, parts["world"], 16, short, 0, per_image=3)
    assert idx3 == idx1 * 3 and len(three) == 3 * len(one)
    assert [e.input_ids for e in three[: len(one)]] == [e.input_ids for e in one]  # draw 0
    later = [e.input_ids for e in three[len(one) :]]
    same = sum(a == b.input_ids for a, b in zip(later, one * 2, strict=True))
    assert same < len(one) / 2  # the other draws mostly ask other questions of the same images


def test_long_conversations_drop_late_turns(parts: dict) -> None:
    tok = parts["tok"]
    one = (
        len(Template(tok, 5, 10_000, style="vicuna_v1").conversation([(MC, "B")]).input_ids) - 5 - 1
    )  # no image, bos
    two = (
        len(Template(tok, 5, 10_000, style="vicuna_v1").conversation([(MC, "B")] * 2).input_ids)
        - 5
        - 1
    )
    ex = Template(tok, 5, max_text_tokens=two + 1, style="vicuna_v1").conversation([(MC, "B")] * 4)
    assert ex.input_ids.count(tok.eos_token_id) == 2  # turns 3 and 4 do not fit
    with pytest.raises(ConfigError) as err:
        Template(tok, 5, one - 1, style="vicuna_v1").conversation([(MC, "B")])
    _one_line(err, f"max_text_tokens {one - 1}")


def test_pack_cuts_the_text_stream_into_blocks() -> None:
    docs = [
        Example([1, 2, 3], [1, 2, 3]),
        Example([4, 5], [IGNORE_INDEX, 5]),
        Example([6, 7], [6, 7]),
    ]
    blocks = pack(docs, 3)
    assert [b.input_ids for b in blocks] == [[1, 2, 3], [4, 5, 6]]  # the tail (7) is dropped
    assert blocks[1].labels == [IGNORE_INDEX, 5, 6]


# --- stages ---------------------------------------------------------------------------------------


def test_each_stage_trains_exactly_what_it_declares(parts: dict, tmp_path: Path) -> None:
    tok, tower, world = parts["tok"], parts["tower"], parts["world"]
    model = copy.deepcopy(parts["model"])
    tpl = Template(tok, tower.num_tokens, 256, style="vicuna_v1")
    feats = encode_images(tower, world.images, progress=False)
    encoder_before = {k: v.clone() for k, v in tower.state_dict().items()}
    stage2 = instruction_examples(tpl, world, 16, mix(1), 0, per_image=1)
    data = {1: caption_examples(tpl, world, 16), 2: stage2}
    cfg = TrainConfig(batch_size=4, samples=8, lr=1e-2, precision="fp32", num_workers=0)
    for stage in (1, 2):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        task = VLMStageTask(model, feats, stage)
        groups = task.param_groups(0.0)
        in_optimizer = {id(p) for g in groups for p in g["params"]}
        declared = list(STAGE_TRAINABLE[stage])
        expected = {id(p) for name in declared for p in getattr(model, name).parameters()}
        assert in_optimizer == expected
        Trainer(
            task,
            ExampleDataset(*data[stage]),
            PadCollate(tok.pad_token_id),
            cfg,
            tmp_path / f"s{stage}",
            progress=False,
        ).fit()
        for name, p in model.named_parameters():
            changed = not torch.equal(p, before[name])
            assert changed == (name.split(".")[0] in declared), (stage, name)
        summary = task.summary(vision=tower)
        assert summary["trainable"] == sorted(declared)
        assert summary["trainable_params"] == sum(
            p.numel() for m in declared for p in getattr(model, m).parameters()
        )
    for k, v in tower.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k


def test_pipeline_records_stages_and_keeps_the_encoder(root: Path, trained: dict) -> None:
    stages = trained["stages"]
    assert stages["stage1"]["trainable"] == ["projector"]
    assert stages["stage1"]["frozen"] == ["lm", "vision"]
    assert stages["stage2"]["trainable"] == ["lm", "projector"]
    assert stages["stage2"]["frozen"] == ["vision"]
    assert trained["projector"] == "mlp2x_gelu" and trained["num_image_tokens"] == 16
    rows = (root / "vlm0" / "stage2" / "metrics.jsonl").read_text().splitlines()
    assert rows and "loss" in json.loads(rows[-1])
    # the checkpoint's encoder is a byte-exact copy of the run's, and loads as the tower
    original = load_file(str(root / "enc0" / "encoder.safetensors"))
    copied = load_file(str(root / "vlm0" / "encoders" / "0" / "encoder.safetensors"))
    assert original.keys() == copied.keys()
    assert all(torch.equal(original[k], copied[k]) for k in original)
    # stage 1 left the stage-0 LM untouched (the stage-1 checkpoint holds the whole task)
    lm_dir = Path(trained["lm"]["source"]) / "lm"
    lm0 = load_file(str(lm_dir / "model.safetensors"))
    ckpt = next((root / "vlm0" / "stage1" / "checkpoints").glob("step_*"))
    stage1 = load_file(str(ckpt / "model.safetensors"))
    for k, v in lm0.items():
        assert torch.equal(stage1[f"model.lm.{k}"], v), k


def test_features_are_standardised_with_the_training_statistics(root: Path, trained: dict) -> None:
    """The recipe removes each token position's mean and scales channels to unit std, with the
    statistics of its training images' features, kept in the checkpoint and used at inference."""
    raw = VisionTower([load_encoder(root / "enc0")], -2)
    world = read_world(train_split(root / "data"), VLMConfig.smoke().image_examples, 64)
    features = encode_images(raw, world.images, progress=False)
    mean, std = feature_stats(features)
    z = standardize(features, mean, std)
    torch.testing.assert_close(z.mean(0), torch.zeros_like(mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 1)), torch.ones_like(std), atol=1e-4, rtol=0)
    vlm = load(root / "vlm0")
    images = _images(world, 4)
    torch.testing.assert_close(vlm.tower(images), standardize(raw(images), mean, std))
    broken = root / "no-stats"
    shutil.copytree(root / "vlm0", broken)
    (broken / "feature_stats.safetensors").unlink()
    with pytest.raises(EncoderlabError, match=r"feature_stats\.safetensors: missing") as err:
        load(broken)
    _one_line(err)


def test_stage0_is_cached_and_shared(root: Path, trained: dict) -> None:
    cfg = VLMConfig.smoke()
    world = read_world(train_split(root / "data"), cfg.stage0.examples, image_size=64)
    done = Path(trained["lm"]["source"]) / "lm.json"
    stamp = done.stat().st_mtime_ns
    assert pretrain_lm(cfg, world, root / "lm", progress=False) == done.parent
    assert done.stat().st_mtime_ns == stamp  # found, not retrained


# --- inference ------------------------------------------------------------------------------------


def _vlm(parts: dict) -> VLM:
    return VLM(parts["tower"], parts["model"], parts["tok"], parts["cfg"])


def test_stage2_trains_the_projector_at_its_own_learning_rate(parts: dict, tmp_path: Path) -> None:
    """Adam's first step moves each weight by ~lr: the projector's by 3x the LM's."""
    tok, tower, world = parts["tok"], parts["tower"], parts["world"]
    model = copy.deepcopy(parts["model"])
    tpl = Template(tok, tower.num_tokens, 256, style="compact")
    feats = encode_images(tower, world.images, progress=False)
    data = instruction_examples(tpl, world, 8, mix(2), 0, per_image=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr = 1e-3
    cfg = TrainConfig(
        batch_size=8, samples=8, lr=lr, warmup_frac=0.0, weight_decay=0.0, precision="fp32"
    )
    task = VLMStageTask(model, feats, 2, projector_lr_scale=3.0)
    Trainer(
        task, ExampleDataset(*data), PadCollate(tok.pad_token_id), cfg, tmp_path, progress=False
    ).fit()
    moved = {
        part: max(
            float((p.detach() - before[n]).abs().max())
            for n, p in model.named_parameters()
            if n.startswith(part + ".")
        )
        for part in ("projector", "lm")
    }
    assert moved["lm"] == pytest.approx(lr, rel=0.01)
    assert moved["projector"] == pytest.approx(3 * lr, rel=0.01)


def test_answer_loss_is_the_lm_loss_with_the_head_on_answers_only(parts: dict) -> None:
    tok, tower, world = parts["tok"], parts["tower"], parts["world"]
    model = copy.deepcopy(parts["model"]).requires_grad_(True)
    tpl = Template(tok, tower.num_tokens, 256, style="compact")
    examples, images = instruction_examples(tpl, world, 6, mix(3), 0, per_image=1)
    batch = PadCollate(tok.pad_token_id)(
        [ExampleDataset(examples, images)[i] for i in range(len(examples))]
    )
    feats = encode_images(tower, world.images, progress=False)[batch["image"]]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    answers = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert 0 < answers < batch["attention_mask"].sum() // 3  # answers are a few of the tokens

    def loss_and_grads(fn) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = fn()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    rows: list[int] = []
    hook = model.lm.get_output_embeddings().register_forward_hook(
        lambda _m, args, _out: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0])
    )
    ours = loss_and_grads(lambda: answer_loss(model, features=feats, **inputs))
    assert rows == [answers]  # the head ran on the answer positions only
    n = torch.tensor(float(answers) / 2)  # a DDP rank's share: sum / the global count
    halved = loss_and_grads(
        lambda: answer_loss(model, features=feats, num_items_in_batch=n, **inputs)
    )
    hf = loss_and_grads(lambda: model(**inputs, features=feats, use_cache=False).loss)
    hook.remove()
    assert rows[-1] == batch["input_ids"].numel()  # Hugging Face's head: every position
    torch.testing.assert_close(ours[0], hf[0])
    torch.testing.assert_close(halved[0], 2 * hf[0])
    for a, b in zip(ours[1], hf[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_packed_rows_train_as_the_padded_batch(parts: dict) -> None:
    """Conversations packed into rows see only themselves: loss and gradients equal the
    padded batch's, on fewer tokens, and the trainer still counts conversations."""
    tok, tower, world = parts["tok"], parts["tower"], parts["world"]
    model = copy.deepcopy(parts["model"]).requires_grad_(True)
    tpl = Template(tok, tower.num_tokens, 256, style="compact")
    data = ExampleDataset(*instruction_examples(tpl, world, 12, mix(3), 0, per_image=1))
    items = [data[i] for i in range(len(data))]
    feats = encode_images(tower, world.images, progress=False)
    longest = max(len(it["input_ids"]) for it in items)
    padded = PadCollate(tok.pad_token_id)(items)
    packed = PackCollate(tok.pad_token_id, 2 * longest)(items)
    assert packed["input_ids"].numel() < padded["input_ids"].numel()
    assert len(packed["input_ids"]) < len(items) and samples_in(packed) == len(items)
    assert sorted(packed["index"].tolist()) == list(range(len(items)))
    assert "attention_mask" not in packed  # the position ids say where each example starts

    def loss_and_grads(batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        keys = ("input_ids", "labels", "attention_mask", "position_ids")
        inputs = {k: batch[k] for k in keys if k in batch}
        loss = answer_loss(model, features=feats[batch["image"]], **inputs)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    ours, theirs = loss_and_grads(packed), loss_and_grads(padded)
    torch.testing.assert_close(ours[0], theirs[0])
    for a, b in zip(ours[1], theirs[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # rows sharing attention would not: the same rows, positions counted across examples
    leaky = {
        **packed,
        "position_ids": torch.arange(packed["input_ids"].shape[1]).expand_as(packed["input_ids"]),
    }
    assert not torch.allclose(loss_and_grads(leaky)[0], theirs[0])


def test_batch_equals_one_by_one(parts: dict) -> None:
    vlm, images = _vlm(parts), _images(parts["world"])
    scores = vlm.score_choices(images, PROMPTS)
    assert scores.shape == (len(PROMPTS), 4) and bool((scores < 0).all())
    single = torch.cat([vlm.score_choices(images[i : i + 1], PROMPTS[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(scores, single, rtol=0, atol=1e-5)
    answers = vlm.generate(images, PROMPTS, max_new_tokens=6)
    assert answers == [vlm.generate(images[i : i + 1], [p], 6)[0] for i, p in enumerate(PROMPTS)]
    assert all(answers) and len(set(answers)) > 1  # non-trivial outputs, so the check has teeth


def test_kv_cache_equals_no_cache(parts: dict) -> None:
    vlm, images = _vlm(parts), _images(parts["world"])
    cached = vlm.generate(images, PROMPTS, max_new_tokens=8)
    assert cached == vlm.generate(images, PROMPTS, max_new_tokens=8, use_cache=False)
    assert all(cached)


def test_score_uses_the_image(parts: dict) -> None:
    vlm, images = _vlm(parts), _images(parts["world"], 2)
    a = vlm.score_choices(images, [MC, MC])
    assert not torch.allclose(a[0], a[1])  # same prompt, different images
    big = torch.nn.functional.interpolate(images.float(), scale_factor=2).round().to(torch.uint8)
    assert vlm.score_choices(big, [MC, MC]).shape == (2, 4)  # resized to the encoder's size


def test_checkpoint_roundtrip_and_hash(root: Path, trained: dict) -> None:
    vlm = load(root / "vlm0")
    assert vlm.checkpoint_hash == trained["checkpoint_hash"] == load(root / "vlm0").checkpoint_hash
    assert {p.dtype for p in vlm.parameters()} == {torch.float32}  # evaluation runs in fp32
    world = read_world(train_split(root / "data"), 4, image_size=64)
    images = _images(world, 4)
    scores = vlm.score_choices(images, PROMPTS[:4])
    assert torch.isfinite(scores).all()
    # a finished checkpoint is returned as is (no retraining), and training is deterministic
    again = train_vlm(
        [root / "enc0"], root / "data", root / "vlm0", VLMConfig.smoke(), root / "lm", False
    )
    assert again == trained
    twin = train_vlm(
        [root / "enc0"], root / "data", root / "twin", VLMConfig.smoke(), root / "lm", False
    )
    assert twin["checkpoint_hash"] == trained["checkpoint_hash"]


def test_fused_vlm_on_an_external_lm(root: Path, trained: dict) -> None:
    lm_dir = Path(trained["lm"]["source"]) / "lm"
    cfg = VLMConfig.smoke().model_copy(update={"lm_path": str(lm_dir)})
    record = train_vlm(
        [root / "enc0", root / "enc1"], root / "data", root / "fused", cfg, None, False
    )
    assert record["projector"] == "fused_mlp3x_gelu"
    assert record["lm"] == {"source": str(lm_dir)}  # no stage 0: the given LM is used as is
    assert record["checkpoint_hash"] != trained["checkpoint_hash"]
    vlm = load(root / "fused")
    assert vlm.tower.dim == 128 and len(vlm.tower.encoders) == 2
    images = _images(read_world(train_split(root / "data"), 2, image_size=64), 2)
    assert vlm.score_choices(images, [MC, MC]).shape == (2, 4)


def test_real_vs_blank_counts_argmax_hits(root: Path, parts: dict) -> None:
    vlm = _vlm(parts)
    items = heldout_items(root / "data", 8, image_size=64)
    images, questions = torch.stack([it["image"] for it, _ in items]), [q for _, q in items]
    assert len(questions) == 8
    letters = [q.letter for q in questions]
    for scoring in ("letter", "cloze"):
        result = real_vs_blank(vlm, images, questions, scoring, batch_size=3)
        if scoring == "letter":
            scores = vlm.score_choices(images, [q.mc_prompt() for q in questions])
        else:
            prompts, options = [q.short_prompt() for q in questions], [q.options for q in questions]
            scores = vlm.score_options(images, prompts, options)
        picks = scores.argmax(1)
        expected = sum("ABCD"[int(k)] == t for k, t in zip(picks, letters, strict=True)) / 8
        assert result["real"] == pytest.approx(expected)
        assert 0.0 <= result["blank"] <= 1.0 and result["gain"] == result["real"] - result["blank"]
        assert result["gain_low"] <= result["gain"] <= result["gain_high"]
        assert result["uses_image"] == (result["gain_low"] > 0)
    with pytest.raises(ValueError, match="unknown scoring"):
        answer_correct(vlm.model, vlm.template, vlm.tower(images), questions, "letters")
    sanity = image_sanity(vlm, root / "data", n=8, scoring="letter")
    expected_real = real_vs_blank(vlm, images, questions, "letter")["real"]
    assert sanity["real"] == pytest.approx(expected_real)
    assert sanity["cloze"]["real"] == pytest.approx(expected)  # the cloze scoring above
    assert sanity["scoring"] == "letter" and "letter" not in sanity
    flipped = image_sanity(vlm, root / "data", n=8, scoring="cloze")  # a cloze-scored study's
    assert flipped["scoring"] == "cloze" and flipped["real"] == sanity["cloze"]["real"]
    assert flipped["letter"]["real"] == sanity["real"]


def test_option_loglik_is_the_answer_likelihood_in_any_batch(parts: dict) -> None:
    """Cloze scores: each option's summed log-probability as the whole answer (its tokens and
    the end of sequence) after the prompt, computed here without padding, one row at a time;
    items may have fewer options (-inf after the last)."""
    vlm, images = _vlm(parts), _images(parts["world"], 3)
    prompts = ["What colour is the object?", "Read the sign.", "How many objects?"]
    options = [["red", "light blue", "green", "dark grey"], ["stop", "go"], ["0", "1", "2"]]
    scores = vlm.score_options(images, prompts, options)
    assert scores.shape == (3, 4) and torch.isinf(scores[1, 2:]).all()
    tpl, lm = vlm.template, vlm.model.lm
    for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
        head = tpl.prompt(prompt)
        feats = vlm.tower(images[i : i + 1])
        for j, option in enumerate(opts):
            tail = tpl.answer(option) + tpl.eos
            ids = torch.tensor([head + tail])
            logp = lm(inputs_embeds=vlm.model.embed(ids, feats)).logits[0].log_softmax(-1)
            expected = sum(float(logp[len(head) + k - 1, t]) for k, t in enumerate(tail))
            assert float(scores[i, j]) == pytest.approx(expected, abs=1e-4)
    alone = vlm.score_options(images[1:2], prompts[1:2], options[1:2])
    torch.testing.assert_close(alone[0, :2], scores[1, :2], rtol=0, atol=1e-5)


# --- configs and bad input ------------------------------------------------------------------------


def _one_line(err: pytest.ExceptionInfo, *names: object) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    for name in names:
        assert str(name) in msg


def test_smoke_preset_and_yaml_override(tmp_path: Path) -> None:
    smoke = VLMConfig.smoke()  # the smoke preset's `vlm:` section over the tiny recipe
    assert smoke.lm.hidden_size == 64 and smoke.stage0.train.total_steps == 8
    assert smoke.stage1.train.warmup_frac == VLMConfig().stage1.train.warmup_frac
    path = tmp_path / "p.yaml"
    path.write_text("vlm:\n  n_turns: 3\n  stage2: {train: {lr: 1.0e-4}}\n")
    cfg = load_vlm_config(str(path))
    assert cfg.n_turns == 3 and cfg.stage2.train.lr == 1e-4
    assert cfg.stage2.examples == VLMConfig().stage2.examples
    path.write_text("vlm:\n  stage1: {bogus: 1}\n")
    with pytest.raises(ConfigError) as err:
        load_vlm_config(str(path))
    _one_line(err, "vlm.stage1.bogus")


def test_bad_images(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_image(tmp_path / "missing.png", 64)
    _one_line(err, tmp_path / "missing.png")
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(DataError) as err:
        read_image(fake, 64)
    _one_line(err, fake, "not a readable image")


def test_bad_lm_path(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_lm(tmp_path / "no-lm")
    _one_line(err, tmp_path / "no-lm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as err:
        load_lm(tmp_path / "empty")
    _one_line(err, tmp_path / "empty", "not a Hugging Face causal LM")
    cfg = VLMConfig.smoke().model_copy(update={"lm_path": str(tmp_path / "no-lm")})
    with pytest.raises(ConfigError) as err:
        train_vlm([root / "enc0"], root / "data", tmp_path / "out", cfg, progress=False)
    _one_line(err, tmp_path / "no-lm")


def test_encoders_that_do_not_fit(root: Path, trained: dict, tmp_path: Path) -> None:
    enc0, enc_p8 = load_encoder(root / "enc0"), load_encoder(root / "enc_p8")
    with pytest.raises(ConfigError) as err:
        VisionTower([enc0, enc_p8], names=["enc0", str(root / "enc_p8")])
    _one_line(err, root / "enc_p8", "patch grid")
    with pytest.raises(ConfigError) as err:
        VisionTower([enc0], tap_layer=-3, names=[str(root / "enc0")])
    _one_line(err, root / "enc0", "tap_layer -3")
    with pytest.raises(ConfigError) as err:
        VisionTower([enc0], pool_tokens=64, names=["enc0"])
    _one_line(err, "pool_tokens 64")
    with pytest.raises(EncoderlabError) as err:
        train_vlm([tmp_path / "nope"], root / "data", tmp_path / "o", VLMConfig.smoke())
    _one_line(err, tmp_path / "nope")
    # a checkpoint whose encoder was swapped for one of another size: the projector says so
    ckpt = tmp_path / "swapped"
    shutil.copytree(root / "vlm0", ckpt)
    wide = write_encoder_run(
        EncoderConfig(size="tiny", image_size=64, patch_size=16), tmp_path / "w"
    )
    for name in ("encoder.safetensors", "encoder.json"):
        shutil.copyfile(wide / name, ckpt / "encoders" / "0" / name)
    with pytest.raises(EncoderlabError) as err:
        load(ckpt)  # the swapped files no longer match the record in vlm.json
    _one_line(err, ckpt, "damaged VLM checkpoint", "encoders/0/encoder")
    record = json.loads((ckpt / "vlm.json").read_text())
    del record["files"]  # as a checkpoint from before file records: the projector says so
    (ckpt / "vlm.json").write_text(json.dumps(record))
    with pytest.raises(EncoderlabError) as err:
        load(ckpt)
    _one_line(err, ckpt / "projector.safetensors")


def test_cli_ask(root: Path, trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import encoderlab.cli.vlm  # noqa: F401 - registers the `vlm` commands
    from encoderlab.cli import main

    image = tmp_path / "img.png"
    from PIL import Image

    pixels = read_world(train_split(root / "data"), 1, 64).images[0]
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(image)
    main(["vlm", "ask", str(root / "vlm0"), str(image), MC])
    answer = capsys.readouterr().out.splitlines()
    assert len(answer) == 1  # the (stripped) greedy answer, possibly empty for a smoke VLM
    with pytest.raises(SystemExit) as code:
        main(["vlm", "ask", str(root / "vlm0"), str(tmp_path / "none.png"), MC])
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none.png" in err


def test_cli_train(
    root: Path, trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import encoderlab.cli.vlm  # noqa: F401 - registers the `vlm` commands
    from encoderlab.cli import main

    out = tmp_path / "cli-vlm"
    args = ["--data", str(root / "data"), "--out", str(out), "--lm-cache", str(root / "lm")]
    main(["vlm", "train", "--encoder", str(root / "enc0"), "--preset", "smoke", *args, "--quiet"])
    record = json.loads((out / "vlm.json").read_text())
    assert record["checkpoint_hash"] == trained["checkpoint_hash"]  # same recipe, same weights
    assert f"VLM {record['checkpoint_hash']}" in capsys.readouterr().err


class _ContextLM(nn.Module):
    """A constructed causal "LM": each next-token logit is ``weight`` if the token appeared
    earlier in the sequence (reads its context) or, with ``weight`` 0, flat (cannot)."""

    def __init__(self, vocab: int, weight: float) -> None:
        super().__init__()
        self.vocab, self.weight = vocab, weight
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        seen = F.one_hot(input_ids, self.vocab).float() * attention_mask[..., None]
        return SimpleNamespace(logits=self.weight * (seen.cumsum(dim=1) > 0).float())


def test_context_check_tells_an_lm_that_reads_its_slot(root: Path, parts: dict) -> None:
    """The check separates an LM whose answers come from its context from one that ignores it
    (its gap is 0: the same logits whatever the caption)."""
    held = read_world(root / "data" / "train", 64, None, images=False)
    tok, vocab = parts["tok"], len(parts["tok"])
    recipe = VLMConfig(n_turns=4, mc_fraction=0.5, max_text_tokens=256)  # as it was written
    reads = context_check(_ContextLM(vocab, 5.0), tok, held, recipe)
    blind = context_check(_ContextLM(vocab, 0.0), tok, held, recipe)
    assert reads["reads_context"] and reads["describe"]["gap_low"] > 1.0
    assert reads["questions"]["gap"] > 0  # the captions hold some of the answers
    assert not blind["reads_context"]
    for check in ("questions", "describe"):
        r = blind[check]
        assert max(abs(r["gap"]), abs(r["gap_low"]), abs(r["gap_high"])) < 1e-5
        assert r["own"] == pytest.approx(np.log(vocab))


def test_oracle_tokens_paint_each_object_and_the_text_where_they_are() -> None:
    oracle = OracleTokens(grid=8, dim=16)
    obj = {"category": "cup", "colour": "red", "texture": "solid", "style": "flat", "size": "small"}
    meta = {
        "image_size": 64,
        "kind": "objects",
        "background": {"style": "gradient"},
        "objects": [{**obj, "bbox": [0, 0, 15, 15]}],  # cells (0..1, 0..1) of the 8x8 grid
        "text": {"content": "DREAM", "colour": "blue", "bbox": [48, 56, 63, 63]},  # (7, 6..7)
    }
    grid = oracle(meta).reshape(8, 8, 16)
    scene = oracle.vector("background", "gradient") + oracle.vector("kind", "objects")
    cup = sum(oracle.vector(f, v) for f, v in obj.items())
    word = oracle.vector("word", "DREAM") + oracle.vector("ink", "blue")
    assert torch.equal(grid[1, 1], cup) and torch.equal(grid[0, 0], cup)
    assert torch.equal(grid[7, 6], word) and torch.equal(grid[7, 7], word)
    assert torch.equal(grid[4, 4], scene) and torch.equal(grid[2, 2], scene)
    recoloured = oracle({**meta, "objects": [{**obj, "colour": "green", "bbox": [0, 0, 15, 15]}]})
    changed = (recoloured != oracle(meta)).any(dim=1).reshape(8, 8)
    assert changed[:2, :2].all() and int(changed.sum()) == 4  # only the cup's four cells
    assert torch.equal(OracleTokens(grid=8, dim=16)(meta), oracle(meta))  # in every process
    # on a coarser grid a cell that two things cover holds both: neither hides the other
    coarse = OracleTokens(grid=4, dim=16)
    near = {**meta, "text": {**meta["text"], "bbox": [8, 8, 20, 12]}}  # the cup's cell (0, 0)
    assert torch.allclose(coarse(near).reshape(4, 4, 16)[0, 0], cup + word)
    assert coarse(near).shape == (16, 16)


def test_the_oracle_reads_the_grid_the_study_encoder_gives_its_vlms() -> None:
    from encoderlab.study.config import load_study

    assert oracle_grid(load_study("tiny").encoder, None) == 4  # ResNet-10-T layer3 at 64 px
    assert oracle_grid(load_study("smoke").encoder, None) == 8  # ViT, 4-px patches at 32 px
    assert oracle_grid(load_study("tiny").encoder, 4) == 2  # a pooled recipe: its grid
