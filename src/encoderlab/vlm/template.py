"""Conversation templates and label masking (LLaVA-1.5's ``vicuna_v1`` and ``plain``).

Two styles of the question turns (``VLMConfig.template``): ``vicuna_v1`` is LLaVA-1.5's, with
its system prompt and the answer-format instruction after every question; ``compact`` keeps the
USER/ASSISTANT turns but drops both, which are the same tokens in every example (29 + 11 per
turn here, ~45% of a 4-turn example) and cost a small LM's training time without telling it
anything. The question texts (``suite.questions``) always carry the instruction; the template
is the one place that decides whether it is rendered.

Sequences are tokenised segment by segment (prompt parts, then each answer) and concatenated,
as LLaVA does, so an answer's first token is the same whether it is trained, scored or
generated: every prompt ends with ``"ASSISTANT:"`` and each answer is the segment ``" " +
answer``, tokenised as the same words are in running text (captions, options). The ``<image>``
placeholder becomes ``num_image_tokens`` copies of the image token id, whose embeddings the
model later replaces with the projected image features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from transformers import PreTrainedTokenizerBase

from encoderlab.errors import ConfigError
from encoderlab.suite.questions import MC_SUFFIX, SHORT_SUFFIX
from encoderlab.vlm.tokenizer import IMAGE_TOKEN

__all__ = ["IGNORE_INDEX", "STYLES", "SYSTEM", "Example", "Style", "Template", "user_text"]

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
IGNORE_INDEX = -100  # label of tokens without loss (PyTorch's cross-entropy default)
Style = Literal["vicuna_v1", "compact"]
STYLES: tuple[str, ...] = get_args(Style)


@dataclass(frozen=True)
class Example:
    """One training sequence: token ids and labels (``IGNORE_INDEX`` where there is no loss)."""

    input_ids: list[int]
    labels: list[int]


def user_text(question: str, first: bool, *, style: Style, picture: str = IMAGE_TOKEN) -> str:
    """One user turn up to the assistant's answer; the first one holds the picture (the
    ``<image>`` placeholder, as in LLaVA-1.5; in stage 0, the caption) and, in ``vicuna_v1``,
    opens with the system prompt. ``compact`` drops the system prompt and the question's
    answer-format instruction."""
    if style not in STYLES:
        raise ValueError(f"unknown template style {style!r}; known: {', '.join(STYLES)}")
    if style == "compact":
        question = question.removesuffix(SHORT_SUFFIX).removesuffix(MC_SUFFIX)
    head = f"{SYSTEM} USER: " if first and style == "vicuna_v1" else "USER: "
    slot = f"{picture}\n" if first and picture else ""
    return f"{head}{slot}{question} ASSISTANT:"


class Template:
    """Turns captions and conversations into token ids for one tokenizer and image length."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        num_image_tokens: int,
        max_text_tokens: int,
        *,
        style: Style,
    ) -> None:
        self.tok = tokenizer
        self.style = style
        self.image_id = int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
        self.num_image_tokens = num_image_tokens
        self.max_text_tokens = max_text_tokens
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos = [int(tokenizer.eos_token_id)]

    def ids(self, text: str) -> list[int]:
        """Token ids of one segment, each ``<image>`` expanded to the image's token count."""
        out: list[int] = []
        for i in self.tok.encode(text, add_special_tokens=False):
            out.extend([i] * self.num_image_tokens if i == self.image_id else [i])
        return out

    def _text_len(self, ids: Sequence[int]) -> int:
        return sum(1 for i in ids if i != self.image_id)

    # -- LLaVA "vicuna_v1": system, USER/ASSISTANT turns, loss on the answers -----------------
    def prompt(self, question: str) -> list[int]:
        """The ids the model continues at inference: one user turn, up to ``"ASSISTANT:"``."""
        return self.bos + self.ids(user_text(question, first=True, style=self.style))

    def answer(self, answer: str) -> list[int]:
        """An answer's ids as trained (its first one is what multiple-choice scoring reads)."""
        return self.ids(f" {answer}")

    def conversation(self, turns: Sequence[tuple[str, str]], picture: str = IMAGE_TOKEN) -> Example:
        """A multi-turn conversation, loss on the answers; turns that would exceed
        ``max_text_tokens`` are dropped. ``picture`` fills the image slot of the first turn."""
        ids, labels = list(self.bos), [IGNORE_INDEX] * len(self.bos)
        for k, (question, answer) in enumerate(turns):
            prompt = self.ids(user_text(question, k == 0, style=self.style, picture=picture))
            reply = self.answer(answer) + self.eos
            if self._text_len(ids) + self._text_len(prompt) + len(reply) > self.max_text_tokens:
                if k == 0:
                    raise ConfigError(
                        f"max_text_tokens {self.max_text_tokens} is too small for the first "
                        f"turn {question[:40]!r}"
                    )
                break
            ids += prompt + reply
            labels += [IGNORE_INDEX] * len(prompt) + reply
        return Example(ids, labels)

    # -- LLaVA "plain" (stage 1): image then caption, loss on the caption ----------------------
    def caption(self, caption: str, image: bool = True) -> Example:
        """``<image>`` + caption + newline; without image (stage 0) the loss covers it all."""
        prefix = self.bos + (self.ids(IMAGE_TOKEN) if image else [])
        text = self.ids(caption + "\n")[: self.max_text_tokens]
        return Example(prefix + text, [IGNORE_INDEX] * len(prefix) + text)
