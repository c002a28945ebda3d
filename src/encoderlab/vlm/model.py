"""The VLM: frozen vision tower -> projector -> Hugging Face causal LM (LLaVA-1.5's layout).

``VLMModel`` is the trainable part (projector + LM) and works on image features, so the stages
can train on cached features; ``VLM`` adds the vision tower, tokenizer and template and is what
``encoderlab.vlm.load`` returns for inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.generate import (
    greedy_generate,
    left_pad,
    score_continuations,
    score_next_token,
)
from encoderlab.vlm.projector import build_projector, projector_kind
from encoderlab.vlm.template import IGNORE_INDEX, Template
from encoderlab.vlm.tokenizer import IMAGE_TOKEN
from encoderlab.vlm.vision import VisionTower

__all__ = [
    "VLM",
    "VLMModel",
    "answer_loss",
    "build_model",
    "letter_logprobs",
    "model_for_features",
    "option_loglik",
    "prompt_inputs",
]


class VLMModel(nn.Module):
    """Projector + causal LM. Image features replace the embeddings of the ``<image>`` tokens
    (``inputs_embeds``), as in Hugging Face's LLaVA after its processor expanded the
    placeholder to one token per image feature."""

    def __init__(self, projector: nn.Module, lm: PreTrainedModel, image_token_id: int) -> None:
        super().__init__()
        self.projector = projector
        self.lm = lm
        self.image_token_id = image_token_id

    def embed(self, input_ids: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with the projected ``features`` ``[B, T, D]`` spliced in."""
        embeds = self.lm.get_input_embeddings()(input_ids)
        mask = input_ids == self.image_token_id
        if features is None:
            if mask.any():
                raise ValueError("the sequence has <image> tokens but no image features")
            return embeds
        if int(mask.sum()) != features.shape[0] * features.shape[1]:
            raise ValueError(
                f"{int(mask.sum())} <image> tokens for {features.shape[0]} images of "
                f"{features.shape[1]} tokens"
            )
        weight = self.projector[0].weight  # bf16 under FSDP2's mixed precision
        proj = self.projector(features.to(weight.device, weight.dtype))
        return embeds.masked_scatter(mask.unsqueeze(-1), proj.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """The LM's output (``.loss`` when ``labels`` is given, ``.logits``)."""
        return self.lm(
            inputs_embeds=self.embed(input_ids, features),
            attention_mask=attention_mask,
            labels=labels,
            **kwargs,
        )


# LM families whose logits are exactly ``get_output_embeddings()(last hidden state)``: no logit
# soft-capping (Gemma 2/3), scale (Cohere) or divisor (Granite) after the head
PLAIN_HEAD_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def answer_loss(
    model: VLMModel,
    input_ids: torch.Tensor,
    features: torch.Tensor | None,
    labels: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    num_items_in_batch: torch.Tensor | None = None,
) -> torch.Tensor:
    """``model``'s next-token loss, summed over the labelled tokens / ``num_items_in_batch`` as
    Hugging Face's ``ForCausalLMLoss``, with the LM head run on the labelled positions only.

    Stage 2 labels only the answers, a small share of the tokens, so Hugging Face's loss spends
    most of its head and log-softmax on positions that are then ignored (a small LM's head is a
    sizeable part of its step: docs/performance.md). LMs outside ``PLAIN_HEAD_FAMILIES`` take
    Hugging Face's own path. A padded batch passes its
    ``attention_mask``, a packed one (``data.PackCollate``) its ``position_ids``."""
    if model.lm.config.model_type not in PLAIN_HEAD_FAMILIES:
        out = model(
            input_ids,
            attention_mask,
            features,
            labels=labels,
            position_ids=position_ids,
            use_cache=False,
            num_items_in_batch=num_items_in_batch,
        )
        return out.loss
    hidden = model.lm.get_decoder()(
        inputs_embeds=model.embed(input_ids, features),
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
    ).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = model.lm.get_output_embeddings()(hidden[:, :-1][keep])
    loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
    count = keep.sum() if num_items_in_batch is None else num_items_in_batch
    return loss / count


def build_model(
    tower: VisionTower, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, seed: int
) -> VLMModel:
    """Projector (initialised from ``seed``) + ``lm``, sized for ``tower``."""
    return model_for_features(tower.dim, len(tower.encoders), lm, tokenizer, seed)


def model_for_features(
    dim: int,
    num_encoders: int,
    lm: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seed: int,
) -> VLMModel:
    """Projector (initialised from ``seed``) for ``dim``-wide features from ``num_encoders``
    encoders + ``lm``: what ``build_model`` builds, for features that no tower made."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        projector = build_projector(projector_kind(num_encoders), dim, lm.config.hidden_size)
    return VLMModel(projector, lm, int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)))


def prompt_inputs(
    model: VLMModel, template: Template, features: torch.Tensor, prompts: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded input embeddings (``features[i]`` spliced into prompt i) and their mask,
    on the model's device: what the model continues at inference."""
    if len(features) != len(prompts):
        raise ValueError(f"{len(features)} images for {len(prompts)} prompts")
    ids, mask = left_pad([template.prompt(p) for p in prompts], int(template.tok.pad_token_id))
    device = next(model.parameters()).device
    return model.embed(ids.to(device), features.to(device)), mask.to(device)


@torch.no_grad()
def letter_logprobs(
    model: VLMModel,
    template: Template,
    features: torch.Tensor,
    prompts: Sequence[str],
    letters: Sequence[str] = ("A", "B", "C", "D"),
) -> torch.Tensor:
    """Letter scoring of multiple-choice items (VMCBench, lmms-eval): the log-probability
    ``[B, len(letters)]`` of each option letter as the answer after each prompt (the question
    with its lettered options), tokenised as training tokenises answers (``Template.answer``).

    Where every ``" A"`` is one token (the embedded BPE, GPT-2 and Qwen byte-level BPEs) that is
    one next-token distribution. SentencePiece tokenizers (Llama, Vicuna, Mistral) may split it
    (``"▁"`` + ``"A"``): the letter's score is then the summed log-probability of all its
    tokens, the log-likelihood of the continuation, as lmms-eval scores multi-token targets."""
    letter_ids = [template.answer(letter) for letter in letters]
    if all(len(i) == 1 for i in letter_ids):
        embeds, mask = prompt_inputs(model, template, features, prompts)
        logp = score_next_token(model.lm, embeds, mask)
        return logp[:, [i[0] for i in letter_ids]].cpu()
    if len(features) != len(prompts):
        raise ValueError(f"{len(features)} images for {len(prompts)} prompts")
    heads = [template.prompt(p) for p in prompts]
    rows = [head + tail for head in heads for tail in letter_ids]
    ids, mask = left_pad(rows, int(template.tok.pad_token_id))
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    owner = torch.arange(len(prompts)).repeat_interleave(len(letter_ids))
    embeds = model.embed(ids, features[owner].to(device))
    lengths = [len(tail) for _ in heads for tail in letter_ids]
    flat = score_continuations(model.lm, embeds, mask, ids, lengths)
    return flat.view(len(prompts), len(letter_ids)).cpu()


@torch.no_grad()
def option_loglik(
    model: VLMModel,
    template: Template,
    features: torch.Tensor,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
) -> torch.Tensor:
    """Cloze scoring of multiple-choice items: for each prompt (a question WITHOUT its options)
    the summed log-probability of each option's text as the whole answer (its tokens, then the
    end of sequence) ``[B, max options]``, -inf past an item's last option.

    This is lm-evaluation-harness's multiple-choice ``acc`` and OLMES's cloze formulation
    (Gu et al. 2024), the standard for LMs that cannot do multiple-choice symbol binding
    (answering with an option's letter), as the embedded tiny LM cannot (docs/lab-notes.md).
    ``features[i]`` is item i's image; every option of an item sees the same image.
    """
    if len(prompts) != len(options) or len(prompts) != len(features):
        raise ValueError(
            f"{len(features)} images, {len(prompts)} prompts, {len(options)} option lists"
        )
    rows, owner, lengths = [], [], []
    for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
        head = template.prompt(prompt)
        for option in opts:
            tail = template.answer(option) + template.eos
            rows.append(head + tail)
            owner.append(i)
            lengths.append(len(tail))
    ids, mask = left_pad(rows, int(template.tok.pad_token_id))
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    embeds = model.embed(ids, features[torch.tensor(owner)].to(device))
    flat = score_continuations(model.lm, embeds, mask, ids, lengths).cpu()
    out = torch.full((len(prompts), max(len(o) for o in options)), float("-inf"))
    k = 0
    for i, opts in enumerate(options):
        out[i, : len(opts)] = flat[k : k + len(opts)]
        k += len(opts)
    return out


class VLM(nn.Module):
    """A trained VLM for inference: ``score_choices``, ``generate``, ``checkpoint_hash``.

    Prompts are the user text (question, options, instruction suffix); the VLM applies the
    Vicuna template. Evaluation runs in fp32, with left padding, attention masks and position
    ids, so results do not depend on the batch size.
    """

    def __init__(
        self,
        tower: VisionTower,
        model: VLMModel,
        tokenizer: PreTrainedTokenizerBase,
        cfg: VLMConfig,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.tower = tower
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.info = info or {}
        self.template = Template(
            tokenizer, tower.num_tokens, cfg.max_text_tokens, style=cfg.template
        )
        self.requires_grad_(False)
        self.eval()

    @property
    def checkpoint_hash(self) -> str:
        """Hash of the checkpoint's weights and config (names results computed with it)."""
        return str(self.info.get("checkpoint_hash", ""))

    @property
    def image_size(self) -> int:
        """The encoders' input size (the suite harness resizes its images to it)."""
        return self.tower.image_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def score_choices(
        self,
        images: torch.Tensor,
        prompts: Sequence[str],
        letters: Sequence[str] = ("A", "B", "C", "D"),
    ) -> torch.Tensor:
        """Log-probabilities ``[B, len(letters)]`` of each letter as the first answer token
        (``letter_logprobs``)."""
        return letter_logprobs(self.model, self.template, self.tower(images), prompts, letters)

    @torch.no_grad()
    def score_options(
        self, images: torch.Tensor, prompts: Sequence[str], options: Sequence[Sequence[str]]
    ) -> torch.Tensor:
        """Cloze scores ``[B, max options]`` of each option's text (``option_loglik``)."""
        return option_loglik(self.model, self.template, self.tower(images), prompts, options)

    @torch.no_grad()
    def generate(
        self,
        images: torch.Tensor,
        prompts: Sequence[str],
        max_new_tokens: int = 16,
        use_cache: bool = True,
    ) -> list[str]:
        """Greedy answers (stripped), one per image and prompt."""
        embeds, mask = prompt_inputs(self.model, self.template, self.tower(images), prompts)
        tokens = greedy_generate(
            self.model.lm, embeds, mask, max_new_tokens, self.tokenizer, use_cache=use_cache
        )
        return [t.strip() for t in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
