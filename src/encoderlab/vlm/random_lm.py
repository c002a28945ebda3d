"""Randomly initialised Hugging Face LMs on disk, for dry runs of the paper path (no download).

``write_random_lm(out, family, size)`` writes a directory that ``vlm.lm_path`` (and
``AutoModelForCausalLM.from_pretrained``) reads like any downloaded LM: a Qwen2 with a byte-level
BPE tokenizer (Qwen's kind), or a Llama with a SentencePiece tokenizer (Llama's and Vicuna's
kind; needs the ``sentencepiece`` extra), the tokenizer trained here on the SynthWorld's
caption and question vocabulary. Sizes: ``micro`` (CPU tests, a few hundred thousand
parameters) and ``0.5b`` (Qwen2-0.5B's shape: 24 layers, width 896, 14 heads, 2 KV heads, its
151,936-row embedding: ~494M parameters), for the GPU check.

    python -m encoderlab.vlm.random_lm --family qwen2 --size 0.5b --out /tmp/qwen2-0.5b-random
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["SIZES", "write_random_lm"]

SIZES: dict[str, dict[str, Any]] = {
    "micro": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=None,  # the tokenizer's
    ),
    "0.5b": dict(  # Qwen2-0.5B's config.json
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151_936,
    ),
}

# the words the world's captions, questions and options use, so prompts tokenise compactly
CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions.",
    "USER: <image>\nWhat colour is the object? Answer the question using a single word or "
    "phrase. ASSISTANT: red",
    "Answer with the option's letter from the given choices directly. A. red B. blue C. green "
    "D. yellow E. purple F. orange",
    "How many objects are there in the image? Is there a fish? Read the sign. What is written? "
    "What shape is it? Which one is different? What is the value of the bar? left right above "
    "below a photo of a cat dog car tree house bird chart table document diagram",
    "0 1 2 3 4 5 6 7 8 9 10 yes no none small large striped dotted plain sketch cartoon",
]


def _texts() -> list[str]:
    return [c.lower() for c in CORPUS] + CORPUS * 4


def _byte_level_tokenizer(out: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_texts(), trainer)
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>").save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


def _sentencepiece_tokenizer(out: Path) -> Any:
    try:
        import sentencepiece as spm
    except ImportError:
        from encoderlab.errors import ConfigError

        raise ConfigError(
            "a Llama LM needs sentencepiece: pip install 'encoderlab[sentencepiece]'"
        ) from None
    from transformers import AutoTokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_texts()),
        model_writer=model,
        vocab_size=512,
        model_type="bpe",
        byte_fallback=True,  # as Llama's: any text encodes
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (out / "tokenizer.model").write_bytes(model.getvalue())
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return AutoTokenizer.from_pretrained(out)


def write_random_lm(
    out: str | Path, family: str = "qwen2", size: str = "micro", seed: int = 0
) -> Path:
    """A random-init ``family`` (``qwen2`` or ``llama``) LM of ``size`` and its tokenizer,
    saved with ``save_pretrained`` under ``out``; returns ``out``."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    if family not in ("qwen2", "llama") or size not in SIZES:
        raise ValueError(f"family qwen2|llama and size {'|'.join(SIZES)}, not {family} {size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = _byte_level_tokenizer(out) if family == "qwen2" else _sentencepiece_tokenizer(out)
    shape = dict(SIZES[size])
    shape["vocab_size"] = max(shape["vocab_size"] or 0, len(tok))
    common = dict(max_position_embeddings=2048, eos_token_id=tok.eos_token_id, **shape)
    if family == "qwen2":
        config: Any = Qwen2Config(tie_word_embeddings=True, **common)
        cls: Any = Qwen2ForCausalLM
    else:
        config = LlamaConfig(bos_token_id=tok.bos_token_id, **common)
        cls = LlamaForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lm = cls(config)
    lm.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("qwen2", "llama"), default="qwen2")
    parser.add_argument("--size", choices=tuple(SIZES), default="micro")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    path = write_random_lm(args.out, args.family, args.size, args.seed)
    n = sum(p.numel() for p in _load(path).parameters())
    print(f"wrote {path}: random-init {args.family} ({n:,} parameters)")


def _load(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True)


if __name__ == "__main__":
    main()
