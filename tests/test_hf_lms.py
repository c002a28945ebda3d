"""Real Hugging Face LM families through ``vlm.lm_path``: a Llama with a SentencePiece tokenizer
(as Vicuna's) and a Qwen2 with a byte-level BPE (as Qwen's), randomly initialised from their
configs and saved with ``save_pretrained``; stages 1 and 2 and the suite's letter and cloze
scoring run on each. Nothing is downloaded: the tokenizers are trained here on a few strings."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch

from encoderlab.data.synth import DataConfig, synthesize
from encoderlab.data.synthworld import WorldConfig
from encoderlab.encoders.vit import EncoderConfig
from encoderlab.suite.harness import EvalConfig, evaluate
from encoderlab.vlm import load
from encoderlab.vlm.checkpoint import write_encoder_run
from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.model import letter_logprobs
from encoderlab.vlm.pipeline import train_vlm

spm = pytest.importorskip("sentencepiece", reason="the dev extra installs sentencepiece")
pytest.importorskip("google.protobuf", reason="transformers reads SentencePiece via protobuf")

# lower case only: no "▁A".."▁D" piece is learnt, so " A" is two tokens ("▁" + "A"), the case
# letter scoring must handle
CORPUS = [
    "a chat between a curious user and an artificial intelligence assistant.",
    "what colour is the object? answer with the option's letter from the given choices.",
    "the red cat sits left of a blue square on a green background, two objects.",
    "how many objects are there in the image? read the sign. is there a fish?",
]


def sentencepiece_llama(out: Path) -> Path:
    """A 2-layer Llama and a SentencePiece BPE (byte fallback, as Llama's), Llama-style files."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 8),
        model_writer=model,
        vocab_size=320,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (out / "tokenizer.model").write_bytes(model.getvalue())
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, **specials}
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    tok = AutoTokenizer.from_pretrained(out)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as Llama-2-70B / Llama-3
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def byte_level_qwen2(out: Path) -> Path:
    """A 2-layer Qwen2 (tied embeddings, as Qwen2-0.5B) and a byte-level BPE, as Qwen's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    letters = "options A B C D, answer A, B, C or D"  # " A" one token, as in Qwen's vocabulary
    bpe.train_from_iterator([*CORPUS, letters] * 8, trainer)
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>").save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf")
    data = DataConfig(train=64, val=16, test=16, shard_size=64, workers=1)
    synthesize(WorldConfig(image_size=64), data, root / "data", progress=False)
    write_encoder_run(EncoderConfig(size="micro", image_size=64, patch_size=16), root / "enc")
    sentencepiece_llama(root / "llama")
    byte_level_qwen2(root / "qwen2")
    return root


def _recipe(lm: Path) -> VLMConfig:
    cfg = VLMConfig.smoke()
    over = {"train": {"samples": 16, "batch_size": 8, "log_every": 1}, "examples": 16}
    return cfg.model_copy(
        update={
            "lm_path": str(lm),
            "mc_fraction": 0.5,  # letter answers in stage 2, as the paper preset
            "max_text_tokens": 384,  # byte-level pieces of a tiny vocabulary are short
            "stage1": cfg.stage1.model_validate({**cfg.stage1.model_dump(), **over}),
            "stage2": cfg.stage2.model_validate({**cfg.stage2.model_dump(), **over}),
        }
    )


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_stages_and_both_scorings_on_a_real_lm_family(root: Path, family: str) -> None:
    out = root / f"vlm-{family}"
    record = train_vlm([root / "enc"], root / "data", out, _recipe(root / family), progress=False)
    assert record["lm"] == {"source": str(root / family)}
    for stage in ("stage1", "stage2"):
        final = record["stages"][stage]["final"]
        assert record["stages"][stage]["steps"] == 2 and math.isfinite(final["loss"])
    vlm = load(out)
    assert (
        type(vlm.model.lm).__name__
        == {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[family]
    )
    split = {"llama": True, "qwen2": False}[family]
    assert (len(vlm.template.answer("A")) > 1) is split  # SentencePiece splits " A"
    for scoring in ("letter", "cloze"):
        cfg = EvalConfig(suite="colour,count", items=4, scoring=scoring, bootstrap=100, workers=1)
        results = evaluate(vlm, cfg, root / f"suite-{family}-{scoring}", root / "items", False)
        assert set(results["benchmarks"]) == {"colour", "count"}
        for bench in results["benchmarks"].values():
            assert bench["n"] == 4 and 0.0 <= bench["score"] <= 1.0


def test_letter_score_of_a_split_letter_is_its_continuation_likelihood(root: Path) -> None:
    out = root / "vlm-llama"
    if not out.is_dir():
        train_vlm([root / "enc"], root / "data", out, _recipe(root / "llama"), progress=False)
    vlm = load(out)
    template, model = vlm.template, vlm.model
    prompts = ["what colour is the object?\nA. red\nB. blue", "is there a fish?\nA. yes\nB. no"]
    features = vlm.tower(torch.rand(2, 3, 64, 64))
    got = letter_logprobs(model, template, features, prompts, ("A", "B"))
    assert got.shape == (2, 2) and torch.isfinite(got).all()
    for i, prompt in enumerate(prompts):  # one unpadded forward per (prompt, letter)
        for j, letter in enumerate("AB"):
            head, tail = template.prompt(prompt), template.answer(letter)
            ids = torch.tensor([head + tail])  # one row: no padding
            logits = model.lm(inputs_embeds=model.embed(ids, features[i : i + 1])).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            want = sum(float(logp[len(head) + k - 1, t]) for k, t in enumerate(tail))
            assert got[i, j].item() == pytest.approx(want, abs=1e-4)
