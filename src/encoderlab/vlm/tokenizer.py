"""The embedded LM's tokenizer: a small BPE trained on the training world's text.

Built with Hugging Face ``tokenizers`` and wrapped as a ``PreTrainedTokenizerFast`` so that the
embedded LM and any Hugging Face LM are handled by the same code. A space is glued to the word
that follows it (GPT-2 style, so decoding is plain concatenation and an answer's " red" is the
same token as the caption's " red"); every digit is its own piece (numbers stay
compositional); and the answer letters " A".." D" are guaranteed single tokens, which
multiple-choice scoring relies on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = ["IMAGE_TOKEN", "LETTERS", "prepare_tokenizer", "train_tokenizer"]

IMAGE_TOKEN = "<image>"
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
# a word with its leading space | one digit (its space) | a punctuation run (its space) | a space
PIECES = r" ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s"
LETTERS = ("A", "B", "C", "D")
ALPHABET = [chr(c) for c in range(32, 127)] + ["\n"]  # printable ASCII; anything else is <unk>


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BPE tokenizer of at most ``vocab_size`` entries trained on ``texts`` (deterministic)."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, UNK, BOS, EOS, IMAGE_TOKEN],
        initial_alphabet=ALPHABET,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=_with_answer_letters(tok),
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=[IMAGE_TOKEN],
        clean_up_tokenization_spaces=False,
    )


def _with_answer_letters(tok: Tokenizer) -> Tokenizer:
    """Add the merge " " + letter for any answer letter BPE did not learn (a tiny corpus)."""
    state = json.loads(tok.to_str())
    vocab, merges = state["model"]["vocab"], state["model"]["merges"]
    for letter in LETTERS:
        if f" {letter}" not in vocab:
            vocab[f" {letter}"] = max(vocab.values()) + 1
            merges.append([" ", letter])
    return Tokenizer.from_str(json.dumps(state))


def prepare_tokenizer(tok: PreTrainedTokenizerBase) -> int:
    """Give any LM's tokenizer what the VLM needs: an ``<image>`` special token and a pad token.

    Returns how many tokens were added (the LM's embeddings must grow by as many).
    """
    added = 0
    if IMAGE_TOKEN not in tok.get_vocab():
        added += tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tok.pad_token is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token  # padding is masked out, any id will do
        else:
            added += tok.add_special_tokens({"pad_token": PAD})
    return added
