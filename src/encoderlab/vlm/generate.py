"""Batched inference on ``inputs_embeds``: next-token scoring and greedy generation.

Batches are left-padded, with an attention mask and position ids counted over real tokens
only, so a prompt gets the same logits alone or in any batch (up to float rounding).
Generation is Hugging Face's ``generate`` (greedy, KV cache) on the spliced embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["greedy_generate", "left_pad", "position_ids", "score_continuations", "score_next_token"]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, attention_mask)``, both ``[B, L]``, each row right-aligned."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.as_tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2... over the real tokens of each row (pads get 0)."""
    return (mask.long().cumsum(1) - 1).clamp(min=0)


@torch.no_grad()
def score_next_token(lm: PreTrainedModel, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-probabilities ``[B, vocab]`` (fp32) of the token that follows each left-padded row."""
    out = lm(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=position_ids(mask),
        use_cache=False,
        logits_to_keep=1,
    )
    return torch.log_softmax(out.logits[:, -1].float(), dim=-1)


@torch.no_grad()
def score_continuations(
    lm: PreTrainedModel,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    ids: torch.Tensor,
    lengths: Sequence[int],
) -> torch.Tensor:
    """Summed log-probabilities ``[B]`` (fp32) of each left-padded row's last ``lengths[i]``
    tokens (``ids``) given everything before them: the score of a continuation."""
    k = max(lengths)
    out = lm(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=position_ids(mask),
        use_cache=False,
        logits_to_keep=k + 1,
    )
    logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)  # predicts the last k tokens
    token = logp.gather(2, ids[:, -k:].to(logp.device).unsqueeze(-1)).squeeze(-1)
    keep = (
        torch.arange(k, device=token.device)
        >= k - torch.tensor(lengths, device=token.device)[:, None]
    )
    return (token * keep).sum(dim=1)


@torch.no_grad()
def greedy_generate(
    lm: PreTrainedModel,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    max_new_tokens: int,
    tokenizer: PreTrainedTokenizerBase,
    use_cache: bool = True,
) -> torch.Tensor:
    """New token ids ``[B, <= max_new_tokens]`` (pad after each row's end-of-sequence)."""
    return lm.generate(
        inputs_embeds=embeds,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        use_cache=use_cache,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
