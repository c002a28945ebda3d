"""LLaVA-format instruction data: write it from any data set, read it as stage-2 data.

The format is LLaVA-1.5's ``llava_v1_5_mix665k.json``: a JSON list of records ::

    {"id": "...", "image": "train/KEY.png",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is shown?..."},
                       {"from": "gpt", "value": "animals"}, ...]}

human and gpt turns alternate, the first human turn carries the ``<image>`` placeholder (at its
start, as LLaVA-1.5 writes it, or at its end, as parts of its mix do).

**Images** are resolved against a root folder (LLaVA's ``--image_folder``; here by default the
JSON file's own directory). ``image`` is a path under that root: a loose file
(``ROOT/train/KEY.png``), or a member of the WebDataset shards in that folder
(``ROOT/train/*.tar`` holding ``KEY.png``). So a JSON written next to a data set
(``DATA/llava-train.json``, images ``train/KEY.png``) reads the shards as they are, and the same
JSON with exported images (``--export-images``) is what LLaVA's own trainer reads.

**Conversations**: from a SynthWorld data set they are exactly the stage-2 conversations
``vlm.data.conversations`` builds (same seed, same turns: ``synthworld_llava`` and its
round-trip test); from a labelled real data set, ``data.labelled_vqa``'s questions. Read back
(``read_llava_world``), each sample's turns ride in its ``meta`` under ``LLAVA_TURNS`` and
``vlm.data.conversations`` uses them instead of generating any.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from encoderlab.data.reader import Blob, SampleDataset, SampleRef, index_source
from encoderlab.errors import DataError
from encoderlab.vlm.config import VLMConfig
from encoderlab.vlm.tokenizer import IMAGE_TOKEN

__all__ = [
    "LLAVA_TURNS",
    "export_llava",
    "from_llava",
    "read_llava_json",
    "read_llava_world",
    "to_llava",
    "write_llava_json",
]

LLAVA_TURNS = "llava_conversation"  # meta key of a sample's turns read from LLaVA JSON


def to_llava(record_id: str, image: str, turns: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """One LLaVA record; the image placeholder opens the first human turn."""
    conversations = []
    for k, (question, answer) in enumerate(turns):
        value = f"{IMAGE_TOKEN}\n{question}" if k == 0 else question
        conversations += [{"from": "human", "value": value}, {"from": "gpt", "value": answer}]
    return {"id": record_id, "image": image, "conversations": conversations}


def from_llava(record: Any, where: str = "record") -> list[tuple[str, str]]:
    """The ``(question, answer)`` turns of a LLaVA record, the image placeholder removed;
    a malformed record is a one-line ``DataError`` naming ``where``."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: not a JSON object")
    conv = record.get("conversations")
    if not isinstance(conv, list) or not conv or len(conv) % 2:
        raise DataError(f"{where}: 'conversations' must be a non-empty list of turn pairs")
    turns = []
    for k in range(0, len(conv), 2):
        human, gpt = conv[k], conv[k + 1]
        ok = isinstance(human, dict) and isinstance(gpt, dict)
        if not ok or human.get("from") != "human" or gpt.get("from") != "gpt":
            raise DataError(f"{where}: turn {k // 2 + 1}: expected a human then a gpt message")
        question, answer = human.get("value"), gpt.get("value")
        if not isinstance(question, str) or not isinstance(answer, str):
            raise DataError(f"{where}: turn {k // 2 + 1}: 'value' must be text")
        if k == 0:
            question = question.replace(f"{IMAGE_TOKEN}\n", "", 1).replace(f"\n{IMAGE_TOKEN}", "")
            question = question.replace(IMAGE_TOKEN, "").strip()
        elif IMAGE_TOKEN in question:
            raise DataError(f"{where}: turn {k // 2 + 1}: {IMAGE_TOKEN} after the first turn")
        turns.append((question, answer))
    return turns


def write_llava_json(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write records as one JSON list (atomically, UTF-8, deterministic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(list(records), indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_llava_json(path: str | Path) -> list[dict[str, Any]]:
    """The records of a LLaVA JSON file (a list), each checked (``from_llava``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        records = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 (byte offset {err.start})") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of records (LLaVA format)")
    for n, record in enumerate(records):
        from_llava(record, f"{path}: record {n}")
        if not isinstance(record.get("image"), str):
            raise DataError(f"{path}: record {n}: no 'image' (text-only records not supported)")
    return records


class _Images:
    """Resolves ``image`` paths under a root: loose files first, then shard members."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shards: dict[Path, dict[str, SampleRef]] = {}

    def _members(self, folder: Path) -> dict[str, SampleRef]:
        if folder not in self.shards:
            refs: list[SampleRef] = []
            if folder.is_dir() and any(folder.glob("*.tar")):
                refs, _ = index_source(sorted(folder.glob("*.tar")), require_text=False)
            self.shards[folder] = {r.key: r for r in refs}
        return self.shards[folder]

    def resolve(self, image: str, where: str) -> SampleRef:
        path = self.root / image
        if path.is_file():
            return SampleRef(str(path), image, Blob(str(path), 0, -1), None, None)
        rel = Path(image)
        key = rel.name.split(".", 1)[0]  # WebDataset: the key ends at the first dot
        ref = self._members(self.root / rel.parent).get(key)
        if ref is None:
            raise DataError(f"{where}: image {image!r} not found under {self.root}")
        return ref


def read_llava_world(
    path: str | Path,
    n: int,
    image_size: int | None,
    images: bool = True,
    image_root: str | Path | None = None,
):
    """The first ``n`` records of a LLaVA JSON as a ``TrainWorld``: each sample's turns in
    ``meta[LLAVA_TURNS]``, its caption the shard's caption when the image is a shard member
    (else the first answer), its image resolved under ``image_root`` (default: the JSON's
    directory). A record whose image is missing or undecodable is a one-line error: training
    data that silently shrinks would change what every VLM of a study sees."""
    from encoderlab.vlm.data import TrainWorld

    path = Path(path)
    records = read_llava_json(path)[:n]
    resolver = _Images(Path(image_root) if image_root is not None else path.parent)
    refs = [resolver.resolve(r["image"], f"{path}: record {i}") for i, r in enumerate(records)]
    dataset = SampleDataset(refs, image_size=image_size)
    world = TrainWorld(str(path), [], [], [])
    for i, record in enumerate(records):
        turns = from_llava(record)
        if images:
            item = dataset[i]
            if "skip" in item:
                raise DataError(f"{path}: record {i}: {item['skip'].reason}")
            caption, meta = item["text"], item["meta"]
        else:
            caption = dataset._payload(refs[i].text)
            caption = caption.decode("utf-8").strip() if isinstance(caption, bytes) else caption
            meta = {}
        world.texts.append(caption or turns[0][1])
        world.metas.append({**meta, "id": record.get("id"), LLAVA_TURNS: [list(t) for t in turns]})
    if not world.texts:
        raise DataError(f"{path}: no records")
    if images:  # references: each image is decoded again where it is encoded
        from encoderlab.vlm.data import ShardImages

        world.images = ShardImages(dataset, list(range(len(world.texts))))
    return world


def _split_samples(split: Path, n: int | None):
    """The first ``n`` readable samples of a shard split, as read_world reads them."""
    refs, _ = index_source(split)
    dataset = SampleDataset(refs)
    count = 0
    for i, ref in enumerate(refs):
        if n is not None and count >= n:
            break
        item = dataset[i]
        if "skip" in item:
            continue
        count += 1
        yield ref.key, dataset._payload(ref.image), item["text"], item["meta"]


def _extension(data: bytes) -> str:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        fmt = (image.format or "png").lower()
    return {"jpeg": "jpg"}.get(fmt, fmt)


def export_llava(
    split: str | Path,
    out: str | Path,
    recipe: VLMConfig,
    n: int | None = None,
    export_images: bool = False,
) -> tuple[Path, int]:
    """Write the stage-2 conversations of the first ``n`` samples of a shard split as LLaVA
    JSON: the turns ``vlm.data.conversations`` makes for stage 2 under ``recipe`` (its turns
    per conversation, multiple-choice share and seed; SynthWorld's questions, or questions
    about a real set's labels), so the file holds what that recipe trains on. Images point
    into the split's shards (``<split>/KEY.png``, relative to the JSON's directory), or, with
    ``export_images``, to files written beside the JSON. Returns the path and the number of
    records."""
    from encoderlab.vlm.data import TrainWorld, conversations

    split, out = Path(split), Path(out)
    rows = list(_split_samples(split, n))
    if not rows:
        raise DataError(f"{split}: no readable samples")
    world = TrainWorld(str(split), [r[2] for r in rows], [r[3] for r in rows], [])
    convs = conversations(world, len(rows), recipe.question_mix, recipe.seed, 2)
    records = []
    for i, turns in convs:
        key, data, _, _ = rows[i]
        name = f"{key}.{_extension(data)}"
        if export_images:
            target = out.parent / split.name / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            image = f"{split.name}/{name}"
        else:
            image = f"{Path(os.path.relpath(split, out.parent)).as_posix()}/{name}"
        records.append(to_llava(key, image, turns))
    if not records:
        raise DataError(f"{split}: no sample supports a question (no labels?)")
    return write_llava_json(records, out), len(records)
