"""Does the language model read its picture slot? The text-only twin of the image sanity check.

Stage 0 trains the embedded LM on conversations whose picture slot holds the sample's caption
(``vlm.lm``). A VLM can only learn to read image tokens in that slot if its LM reads the slot
at all; this check asks it on held-out samples, with text instead of an image: the loss on
the answers with the sample's own caption in the slot vs another sample's (paired per
conversation, bootstrap CI), for the stage-2 question mix the LM was trained on (its VLM
config's turns and multiple-choice share) and for a verbatim copy of the slot
("Describe the image briefly." answered by the caption itself). A copy gap at 0 means the LM
ignores its context, and a VLM built on it cannot be expected to use its image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from encoderlab.evaluate.stats import paired_difference, ratio_of_means
from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.data import ExampleDataset, PadCollate, TrainWorld, conversations
from encoderlab.vlm.template import IGNORE_INDEX, Template

__all__ = ["CONTEXT_JSON", "DESCRIBE", "answer_losses", "context_check", "full_description"]

CONTEXT_JSON = "context.json"  # where the study's lm stage writes the check
DESCRIBE = "Describe the image briefly."
Conversation = tuple[int, list[tuple[str, str]]]


@torch.no_grad()
def answer_losses(
    lm: PreTrainedModel,
    template: Template,
    pictures: Sequence[str],
    convs: Sequence[Conversation],
    shift: int = 0,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Per conversation: summed loss (nats) on its answer tokens and their count, with the
    picture slot holding ``pictures[(i + shift) % len(pictures)]`` (``shift`` 0: its own)."""
    rows = [
        template.conversation(turns, picture=pictures[(i + shift) % len(pictures)])
        for i, turns in convs
    ]
    data, collate = ExampleDataset(rows), PadCollate(int(template.tok.pad_token_id))
    device = next(lm.parameters()).device
    sums, counts = [], []
    for start in range(0, len(rows), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(rows)))])
        logits = lm(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
        ).logits.float()
        labels = batch["labels"][:, 1:].to(device)
        token_loss = F.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
        )
        sums.append(token_loss.sum(dim=1).cpu())
        counts.append((labels != IGNORE_INDEX).sum(dim=1).cpu())
    return torch.cat(sums).double().numpy(), torch.cat(counts).double().numpy()


def _gap(lm: PreTrainedModel, template: Template, pictures: list[str], convs: list) -> dict:
    """Loss per answer token with the own vs another sample's picture text; ``gap`` = other -
    own with a paired-bootstrap 95% CI over conversations."""
    own, n_own = answer_losses(lm, template, pictures, convs, shift=0)
    # a longer picture text can push a last turn past max_text_tokens: counts may differ
    other, n_other = answer_losses(lm, template, pictures, convs, shift=1)
    gap = paired_difference([other, n_other], [own, n_own], statistic=ratio_of_means)
    return {
        "own": float(own.sum() / n_own.sum()),
        "other": float(other.sum() / n_other.sum()),
        "gap": gap.value,
        "gap_low": gap.low,
        "gap_high": gap.high,
    }


def context_check(
    lm: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    world: TrainWorld,
    recipe: VLMConfig,
    seed: int = 7,
) -> dict[str, Any]:
    """The check on held-out samples ``world`` (their captions fill the slot), with the
    question mix the LM was trained on: ``recipe`` is the VLM config of its stage 0 (turns per
    conversation, multiple-choice share, text length); ``seed`` draws the held-out questions.
    Returns the two gaps and ``reads_context``: the copy gap's CI lies above 0. (The question
    gap is bounded by what the captions say: alt-text rarely names a colour, so even a perfect
    reader gains little on colour questions; copying tests the reading itself.)"""
    if len(world) < 2:
        raise ValueError("the context check needs at least two held-out samples")
    lm.eval()
    template = Template(tokenizer, 0, recipe.max_text_tokens, style=recipe.template)
    questions = conversations(world, len(world), recipe.question_mix, seed, stage=2)
    describe = [(i, [(DESCRIBE, text)]) for i, text in enumerate(world.texts)]
    result = {
        "n": len(questions),
        "questions": _gap(lm, template, world.texts, questions),
        "describe": _gap(lm, template, world.texts, describe),
    }
    result["reads_context"] = bool(result["describe"]["gap_low"] > 0)
    return result


def full_description(meta: dict[str, Any]) -> str | None:
    """Every factor of an object scene in words (None for documents and charts): a picture
    slot from which each stage-2 answer can be read, unlike an alt-text caption."""
    if meta["kind"] != "objects":
        return None
    parts = []
    for o in meta["objects"]:
        x, y = o["position"]
        row = "top" if y < 0.4 else "bottom" if y > 0.6 else "middle"
        col = "left" if x < 0.4 else "right" if x > 0.6 else "centre"
        parts.append(
            f"a {o['size']} {o['colour']} {o['texture']} {o['category']} "
            f"in {o['style']} style at the {row} {col}"
        )
    text = f"{len(meta['objects'])} objects: " + ", ".join(parts)
    if meta.get("text"):
        text += f'; the text "{meta["text"]["content"]}" in {meta["text"]["colour"]}'
    return text + f"; {meta['background']['style']} background"
