"""The language model: any Hugging Face causal LM, or the embedded default built in stage 0.

The embedded default is a small Llama whose tokenizer and weights are trained on the text of
the training world (captions, questions, answers; never benchmark items). Stage 0 runs once per
study: its result is saved with ``save_pretrained`` under ``CACHE/lm-<hash>``, the hash covering
the LM config, the stage-0 schedule and the corpus itself, and every VLM of the study starts
from that same LM.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from encoderlab.config import config_hash
from encoderlab.errors import ConfigError
from encoderlab.files import make_readable, write_json
from encoderlab.progress import console
from encoderlab.train.distributed import DistInfo, barrier
from encoderlab.train.trainer import Trainer
from encoderlab.vlm.config import LMConfig, VLMConfig
from encoderlab.vlm.data import (
    ConversationFn,
    ExampleDataset,
    PadCollate,
    TrainWorld,
    corpus_texts,
    lm_corpus,
    pack,
)
from encoderlab.vlm.tasks import LMTask
from encoderlab.vlm.template import Template
from encoderlab.vlm.tokenizer import prepare_tokenizer, train_tokenizer

__all__ = ["LM_DONE", "LM_RECIPE_KEYS", "build_lm", "lm_info", "load_lm", "pretrain_lm", "quiet_hf"]

LM_DONE = "lm.json"  # written last: its presence marks a finished stage 0
# The VLMConfig fields that shape stage 0's conversations, recorded in lm.json (``recipe``).
LM_RECIPE_KEYS = (
    "n_turns",
    "mc_fraction",
    "short_option_questions",
    "question_weights",
    "template",
    "max_text_tokens",
    "seed",
)


@contextmanager
def quiet_hf() -> Iterator[None]:
    """No tqdm bars from ``from_pretrained``/``save_pretrained`` (encoderlab has its own)."""
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def build_lm(cfg: LMConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaForCausalLM:
    """A randomly initialised Llama sized by ``cfg`` (init depends on ``cfg.seed`` only)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return LlamaForCausalLM(config)


def load_lm(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a local directory (never downloads), in fp32, with
    the ``<image>`` and pad tokens the VLM needs."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: language model directory not found")
    try:
        with quiet_hf():
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            lm = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, dtype=torch.float32
            )
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path}: not a Hugging Face causal LM ({first})") from None
    # grow the embeddings only past their rows: Qwen's 151,936 rows already leave room for
    # added tokens (resizing to len(tokenizer) would cut them)
    if prepare_tokenizer(tokenizer) and len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))
    lm.config.pad_token_id = tokenizer.pad_token_id
    lm.generation_config.pad_token_id = tokenizer.pad_token_id
    return lm, tokenizer


def _corpus_hash(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def pretrain_lm(
    cfg: VLMConfig,
    world: TrainWorld,
    cache_root: Path,
    progress: bool = True,
    dist_info: DistInfo | None = None,
    conversation_fn: ConversationFn | None = None,
) -> Path:
    """Stage 0: train (or find in ``cache_root``) the embedded LM; return its directory."""
    dist = dist_info or DistInfo()
    captions, convs = lm_corpus(
        world, cfg.stage0.examples, cfg.question_mix, cfg.seed, conversation_fn
    )
    texts = corpus_texts(captions, convs, cfg.template)
    key = config_hash(
        {
            "lm": cfg.lm.model_dump(mode="json"),
            "stage0": cfg.stage0.model_dump(mode="json"),
            "max_text_tokens": cfg.max_text_tokens,
            "corpus": _corpus_hash(texts),
        }
    )
    out = Path(cache_root) / f"lm-{key}"
    if (out / LM_DONE).is_file():
        return out
    start = time.perf_counter()
    tokenizer = train_tokenizer(texts, cfg.lm.vocab_size)
    template = Template(tokenizer, 0, cfg.max_text_tokens, style=cfg.template)
    # Each sample gives two texts: its caption (loss on all of it: stage 1 predicts captions)
    # and its conversation with the caption in the image slot (loss on the answers, as in
    # stage 2), so the LM meets the answers in the stage-2 format, conditioned on a description
    # of the picture. (At the tiny budget it does not learn to exploit that context yet: its
    # answer loss is the same with the sample's caption or another sample's.)
    docs = {(i, 0): template.caption(c, image=False) for i, c in enumerate(captions)}
    for i, turns in convs:
        docs[i, 1] = template.conversation(turns, picture=captions[i])
    examples = pack([docs[k] for k in sorted(docs)], cfg.lm.pack_tokens)
    lm = build_lm(cfg.lm, tokenizer)
    task = LMTask(lm)
    summary = task.summary()
    if progress and dist.is_main:
        console.print(
            f"stage 0 (LM pretraining): trains lm ({summary['trainable_params']:,} params) on "
            f"{len(docs)} texts in {len(examples)} sequences of {cfg.lm.pack_tokens} tokens, "
            f"vocab {len(tokenizer)}"
        )
    trainer = Trainer(
        task,
        ExampleDataset(examples),
        PadCollate(int(tokenizer.pad_token_id)),
        cfg.stage0.train,
        out / "train",
        dist_info=dist,
        progress=progress,
        description="vlm stage 0 (LM)",
    )
    last = trainer.fit()
    if dist.is_main:
        with quiet_hf():
            lm.save_pretrained(out / "lm")
            tokenizer.save_pretrained(out / "lm")
        make_readable(out / "lm")  # save_pretrained writes 0600 weights
        info = {
            "hash": key,
            "config": cfg.lm.model_dump(mode="json"),
            # the conversations it was trained on: what its context check must ask again
            "recipe": {k: getattr(cfg, k) for k in LM_RECIPE_KEYS},
            "stage0": {**summary, "texts": len(docs), "sequences": len(examples), "final": last},
            "vocab_size": len(tokenizer),
            "seconds": time.perf_counter() - start,
        }
        write_json(info, out / LM_DONE)
    barrier()
    return out


def lm_info(lm_dir: Path) -> dict[str, Any]:
    """The stage-0 record of an embedded LM directory (empty for an external LM)."""
    path = Path(lm_dir) / LM_DONE
    return json.loads(path.read_text()) if path.is_file() else {}
