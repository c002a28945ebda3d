"""VLM training data from the training world's shards: stage-0 text, stage-1 captions, stage-2
instruction conversations (questions from the VQA suite's generator, on the TRAINING split
only, never on benchmark items).

Every stage uses the first N samples of the split in shard order, and conversations are drawn
from a generator seeded by ``(seed, stage, sample index)``, so every VLM of a study trains on
exactly the same examples whatever its encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from encoderlab.data.reader import SampleDataset, index_source
from encoderlab.errors import DataError
from encoderlab.suite.questions import QuestionMix, training_conversation
from encoderlab.vlm.llava_json import LLAVA_TURNS
from encoderlab.vlm.template import IGNORE_INDEX, Example, Style, Template, user_text

__all__ = [
    "ConversationFn",
    "ExampleDataset",
    "PackCollate",
    "PadCollate",
    "ShardImages",
    "TrainWorld",
    "caption_examples",
    "conversation_rng",
    "conversations",
    "corpus_texts",
    "default_conversation_fn",
    "instruction_examples",
    "lm_corpus",
    "pack",
    "read_world",
    "train_split",
]

ConversationFn = Callable[[dict[str, Any], np.random.Generator, int], list[tuple[str, str]]]


class ShardImages(Sequence[torch.Tensor]):
    """A world's images as references into its shards (or image files): item ``i`` is decoded
    when it is read, so host memory does not grow with the data set. ``vlm.pipeline`` has each
    rank decode only the images it encodes (``shared_features``)."""

    def __init__(self, dataset: SampleDataset, indices: list[int]) -> None:
        self.dataset = dataset
        self.indices = indices  # the dataset's sample index of image i

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return ShardImages(self.dataset, self.indices[i])
        item = self.dataset[self.indices[i]]
        if "skip" in item:  # it decoded when the world was read: the file changed since
            raise DataError(f"image {i} of the training world: {item['skip'].reason}")
        return item["image"]


@dataclass
class TrainWorld:
    """The first samples of a training split: captions, metadata and (optionally) images."""

    source: str
    texts: list[str]
    metas: list[dict[str, Any]]
    # uint8 [3, H, W] each, decoded when read (ShardImages); empty when read without images
    images: Sequence[torch.Tensor]

    def __len__(self) -> int:
        return len(self.texts)


def train_split(data: str | Path) -> Path:
    """``DATA/train`` for a data-set root (it has a manifest), else ``DATA`` itself."""
    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: no such directory (generate it with `encoderlab data synth`)")
    return data / "train" if (data / "manifest.json").is_file() else data


def read_world(
    source: str | Path, n: int, image_size: int | None, images: bool = True
) -> TrainWorld:
    """Read the first ``n`` readable samples of ``source`` (fewer if it has fewer); a ``.json``
    source is LLaVA-format instruction data (``vlm.llava_json``), its images beside it."""
    if str(source).lower().endswith(".json"):
        from encoderlab.vlm.llava_json import read_llava_world

        return read_llava_world(source, n, image_size, images=images)
    refs, _ = index_source(source)
    dataset = SampleDataset(refs, image_size=image_size)
    world = TrainWorld(str(source), [], [], [])
    kept: list[int] = []
    for i in range(len(dataset)):
        if len(world) >= n:
            break
        item = dataset[i]  # decoded to know it is readable, then dropped
        if "skip" in item:
            continue
        world.texts.append(item["text"])
        world.metas.append(item["meta"])
        kept.append(i)
    if not world.texts:
        raise DataError(f"{source}: no readable samples")
    if images:  # references, decoded again where they are encoded
        world.images = ShardImages(dataset, kept)
    return world


def conversation_rng(seed: int, stage: int, index: int, draw: int = 0) -> np.random.Generator:
    """The generator of one sample's conversation; ``draw`` > 0 gives that sample further,
    independent conversations (``VLMConfig.conversations_per_image``)."""
    return np.random.default_rng([seed, stage, index] + ([draw] if draw else []))


def conversations(
    world: TrainWorld,
    n: int,
    mix: QuestionMix,
    seed: int,
    stage: int,
    fn: ConversationFn | None = None,
    draw: int = 0,
) -> list[tuple[int, list[tuple[str, str]]]]:
    """``(sample index, turns)`` for the first ``n`` samples (samples without questions skipped).

    A sample read from LLaVA JSON brings its own turns (``meta[LLAVA_TURNS]``). Otherwise ``fn``
    makes ``mix.n_turns`` of them; it defaults to ``training_conversation`` with ``mix`` on
    SynthWorld, and on real data to questions about its labels
    (``data.labelled_vqa.labelled_conversation``: category, superclass; the type weights name
    SynthWorld's types and do not apply), so a labelled real data set gets stage-2
    conversations too. ``mix`` is the VLM recipe's (``VLMConfig.question_mix``) at every
    caller: there is no second default here."""
    fn = fn or default_conversation_fn(world, n, mix)
    out = []
    for i in range(min(n, len(world))):
        given = world.metas[i].get(LLAVA_TURNS)
        if given is not None:
            turns = [(str(q), str(a)) for q, a in given]  # as given (the template caps length)
        else:
            turns = fn(world.metas[i], conversation_rng(seed, stage, i, draw), mix.n_turns)
        if turns:
            out.append((i, turns))
    return out


def default_conversation_fn(world: TrainWorld, n: int, mix: QuestionMix) -> ConversationFn:
    """SynthWorld's question mix, or, for samples without SynthWorld metadata, questions about
    the labels of the first ``n`` samples (their values are the distractors)."""
    metas = world.metas[:n]
    if not metas or any("kind" in m or "objects" in m for m in metas):
        return partial(
            training_conversation,
            mc_fraction=mix.mc_fraction,
            type_weights=mix.type_weights,
            short_option_questions=mix.short_option_questions,
        )
    from encoderlab.data.labelled_vqa import labelled_conversation, vocabulary

    return labelled_conversation(vocabulary(metas), mix.mc_fraction)


def lm_corpus(
    world: TrainWorld, n: int, mix: QuestionMix, seed: int, fn: ConversationFn | None = None
) -> tuple[list[str], list[tuple[int, list[tuple[str, str]]]]]:
    """Stage 0's text: the captions and the conversations of the first ``n`` samples (the
    LM sees them without image; ``corpus_texts`` renders them for the tokenizer and the hash)."""
    return world.texts[:n], conversations(world, n, mix, seed, 0, fn)


def corpus_texts(
    captions: list[str], convs: list[tuple[int, list[tuple[str, str]]]], style: Style
) -> list[str]:
    """Every string the LM is trained on, rendered as the ``style`` template renders it (for
    the tokenizer and the stage-0 cache key)."""
    texts = [c + "\n" for c in captions]
    for i, turns in convs:
        for k, (q, a) in enumerate(turns):
            texts += [user_text(q, k == 0, style=style, picture=captions[i]), f" {a}"]
    return texts


def caption_examples(
    template: Template, world: TrainWorld, n: int
) -> tuple[list[Example], list[int]]:
    """Stage 1 (LLaVA ``plain``): image + caption, loss on the caption."""
    idx = list(range(min(n, len(world))))
    return [template.caption(world.texts[i]) for i in idx], idx


def instruction_examples(
    template: Template,
    world: TrainWorld,
    n: int,
    mix: QuestionMix,
    seed: int,
    per_image: int,
    fn: ConversationFn | None = None,
) -> tuple[list[Example], list[int]]:
    """Stage 2: image + question turns, loss on the answers; ``per_image`` conversations of
    each of the first ``n`` images, drawn independently (a LLaVA-JSON sample repeats its own
    turns). Returns the examples and each one's image index."""
    fn = fn or default_conversation_fn(world, n, mix)  # once, every draw
    examples, images = [], []
    for draw in range(per_image):
        for i, turns in conversations(world, n, mix, seed, 2, fn, draw):
            examples.append(template.conversation(turns))
            images.append(i)
    return examples, images


def pack(docs: list[Example], block: int) -> list[Example]:
    """Concatenate documents and cut them into ``block``-token sequences (the tail is dropped),
    as LM pretraining does (Hugging Face's ``run_clm`` ``group_texts``): no padding, whereas
    stage 0's mix of short captions and long conversations would be half padding."""
    ids = [i for d in docs for i in d.input_ids]
    labels = [i for d in docs for i in d.labels]
    return [
        Example(ids[s : s + block], labels[s : s + block])
        for s in range(0, len(ids) - block + 1, block)
    ]


class ExampleDataset(Dataset):
    """Tokenised examples (and the index of each one's image in the feature cache)."""

    def __init__(self, examples: list[Example], images: list[int] | None = None) -> None:
        self.examples = examples
        self.images = images

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex = self.examples[i]
        return {
            "input_ids": ex.input_ids,
            "labels": ex.labels,
            "image": -1 if self.images is None else self.images[i],
            "index": i,
        }


@dataclass(frozen=True)
class PadCollate:
    """Right-pads a batch (training): ids with ``pad_id``, labels with ``IGNORE_INDEX``."""

    pad_id: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it["input_ids"])
            ids[row, :n] = torch.as_tensor(it["input_ids"])
            labels[row, :n] = torch.as_tensor(it["labels"])
            mask[row, :n] = 1
        return {
            "input_ids": ids,
            "labels": labels,
            "attention_mask": mask,
            "image": torch.tensor([it["image"] for it in items], dtype=torch.long),
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        }


@dataclass(frozen=True)
class PackCollate:
    """Packs a batch's examples into rows of ``row_tokens`` (first fit, longest first; a
    longer example gets a row of its own) instead of padding each to the batch's longest.

    ``position_ids`` restart at every example and there is no ``attention_mask``: Hugging
    Face then masks attention block-diagonally (``find_packed_sequence_indices``), so no token
    sees another example and the loss and gradients are the padded batch's, on fewer tokens
    (docs/performance.md). ``image`` follows the order of the ``<image>`` tokens."""

    pad_id: int
    row_tokens: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(self.row_tokens, *(len(it["input_ids"]) for it in items))
        rows: list[list[dict[str, Any]]] = []
        fill: list[int] = []
        for it in sorted(items, key=lambda it: -len(it["input_ids"])):  # first fit decreasing
            n = len(it["input_ids"])
            row = next((r for r, used in enumerate(fill) if used + n <= width), None)
            if row is None:
                rows.append([])
                fill.append(0)
                row = len(rows) - 1
            rows[row].append(it)
            fill[row] += n
        width = max(fill)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.arange(width).repeat(len(rows), 1)  # the tail continues the last
        order = []
        for r, row in enumerate(rows):
            start = 0
            for it in row:
                n = len(it["input_ids"])
                ids[r, start : start + n] = torch.as_tensor(it["input_ids"])
                labels[r, start : start + n] = torch.as_tensor(it["labels"])
                positions[r, start:] = torch.arange(width - start)
                start += n
                order.append(it)
        return {
            "input_ids": ids,
            "labels": labels,
            "position_ids": positions,
            "image": torch.tensor([it["image"] for it in order], dtype=torch.long),
            "index": torch.tensor([it["index"] for it in order], dtype=torch.long),
        }
