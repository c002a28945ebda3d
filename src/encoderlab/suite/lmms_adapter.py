"""An lmms-eval model adapter, so lmms-eval can score encoderlab VLMs on the real benchmarks.

lmms-eval is an optional, heavy install (it pins wandb, opencv, yt-dlp...): the ``lmms`` extra
(``pip install -e '.[lmms]'``, lmms-eval >= 0.6, which has the ``registry_v2`` model manifests)
brings it, and ``make test`` installs it. With it installed, ``EncoderlabLMM`` subclasses its
``lmms`` base class and is found through the ``lmms_eval.models`` entry point (``manifest``
below); without it, the class still works for any caller that passes lmms-eval-style requests
(objects with ``.args``), which is how ``tests/test_suite_lmms.py`` drives it.
``tests/test_lmms_eval_real.py`` runs it inside lmms-eval on a task built from a VMCBench TSV and
checks its scores equal ``encoderlab eval``'s (letter scoring).

Request layouts (lmms-eval's "simple" models):
- ``generate_until``: ``(context, gen_kwargs, doc_to_visual, doc_id, task, split)``;
- ``loglikelihood``: ``(context, doc_to_target, doc_to_visual, doc_id, task, split)``.
Documents are looked up in ``self.task_dict[task][split][doc_id]`` (lmms-eval fills it).

Usage once installed: ``lmms-eval --model encoderlab --model_args pretrained=CKPT --tasks ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from encoderlab.suite.questions import LETTERS

try:  # thin import guard: lmms-eval is optional
    from lmms_eval.api.model import lmms as _Base
except ImportError:  # pragma: no cover - depends on the environment
    _Base = object  # type: ignore[assignment,misc]

__all__ = ["EncoderlabLMM", "manifest"]

IMAGE_PLACEHOLDER = "<image>"


def manifest() -> Any:
    """The ``lmms_eval.models`` entry-point payload (lmms-eval >= 0.6 model registry)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(
        model_id="encoderlab", simple_class_path="encoderlab.suite.lmms_adapter.EncoderlabLMM"
    )


class EncoderlabLMM(_Base):  # type: ignore[misc,valid-type]
    """lmms-eval "simple" model over any VLM following the suite's protocol."""

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        batch_size: int | str = 16,
        image_size: int | None = None,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if _Base is not object:
            super().__init__()
        if model is None:
            if pretrained is None:
                raise ValueError("EncoderlabLMM needs pretrained=<VLM checkpoint dir>")
            from encoderlab import vlm as vlm_mod

            model = vlm_mod.load(pretrained)
        self.model = model
        self.batch_size = int(batch_size)
        size = image_size or getattr(model, "image_size", None)
        if not size:
            raise ValueError("EncoderlabLMM needs image_size=<px> (the model does not say)")
        self.image_size = int(size)
        self.task_dict: dict[str, Any] = getattr(self, "task_dict", {})
        self._rank, self._world_size = 0, 1

    # --- helpers -------------------------------------------------------------------------------

    def _doc(self, task: str, split: str, doc_id: int) -> Any:
        return self.task_dict[task][split][doc_id]

    def _image(self, visuals: Any) -> np.ndarray:
        """The first visual of a document as uint8 HWC at the model's size (blank if none)."""
        if isinstance(visuals, list | tuple):
            visuals = visuals[0] if visuals else None
        if not isinstance(visuals, Image.Image):
            return np.full((self.image_size, self.image_size, 3), 255, dtype=np.uint8)
        image = visuals.convert("RGB")
        if image.size != (self.image_size, self.image_size):
            image = image.resize((self.image_size, self.image_size), Image.BICUBIC)
        return np.asarray(image)

    def _batch(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def _text(context: Any) -> str:
        context = context[0] if isinstance(context, list) else context
        return str(context).replace(IMAGE_PLACEHOLDER, "").strip()

    # --- lmms interface ------------------------------------------------------------------------

    def generate_until(self, requests: list[Any]) -> list[str]:
        """Greedy answers, cut at the first ``until`` string, batched by generation settings."""
        out: list[str] = [""] * len(requests)
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        parsed = []
        for i, req in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
            kwargs = dict(gen_kwargs or {})
            until = kwargs.get("until") or []
            until = (until,) if isinstance(until, str) else tuple(until)
            max_new = int(kwargs.get("max_new_tokens", 16))
            image = self._image(doc_to_visual(self._doc(task, split, doc_id)))
            parsed.append((self._text(context), image, until))
            groups.setdefault((max_new, until), []).append(i)
        for (max_new, until), idx in groups.items():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                images = self._batch([parsed[i][1] for i in chunk])
                texts = self.model.generate(images, [parsed[i][0] for i in chunk], max_new)
                for i, text in zip(chunk, texts, strict=True):
                    for stop in until:
                        if stop and stop in text:
                            text = text[: text.index(stop)]
                    out[i] = text
        return out

    def loglikelihood(self, requests: list[Any]) -> list[Any]:
        """The loss (negative log-probability) of a one-letter continuation ("A".."D") as the
        first answer token, and whether it is the likeliest letter.

        A loss, not a log-probability: lmms-eval's ``multiple_choice`` scoring picks the
        *smallest* value (``np.argmin``; its LLaVA returns the loss, EvolvingLMMs-Lab/lmms-eval
        #370), so the likeliest letter wins as in ``encoderlab eval``'s letter scoring.
        ``is_greedy`` compares the letters only (the protocol scores option letters, not the
        whole vocabulary). Other continuations are not supported by the VLM protocol.
        """
        rows = []
        for req in requests:
            context, target, doc_to_visual, doc_id, task, split = req.args
            doc = self._doc(task, split, doc_id)
            continuation = target if isinstance(target, str) else target(doc)
            letter = str(continuation).strip()
            if letter not in LETTERS:
                raise NotImplementedError(
                    f"encoderlab VLMs score option letters only; got continuation {continuation!r}"
                )
            rows.append((self._text(context), self._image(doc_to_visual(doc)), letter))
        out: list[tuple[float, bool]] = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            images = self._batch([r[1] for r in chunk])
            scores = self.model.score_choices(images, [r[0] for r in chunk], LETTERS)
            scores = scores.detach().float().cpu()
            for (_, _, letter), row in zip(chunk, scores, strict=True):
                k = LETTERS.index(letter)
                out.append((-float(row[k]), bool(int(row.argmax()) == k)))
        return _as_responses(out)

    def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
        raise NotImplementedError("encoderlab VLMs answer single-turn requests only")


def _as_responses(pairs: list[tuple[float, bool]]) -> list[Any]:
    """``(loss, is_greedy)`` pairs as the running lmms-eval's evaluator keeps them.

    lmms-eval 0.7's evaluator passes every response through ``unwrap_generation_output``,
    which keeps text and ``GenerationResult.text`` but turns anything else into ``str(output)``,
    a ``(float, bool)`` pair included, and ``multiple_choice`` scoring then fails on the string
    (``too many values to unpack``, for every model). Wrapped in ``GenerationResult`` a pair
    reaches the task as it is. Earlier versions (and callers without lmms-eval) store
    responses unchanged, and a version that keeps pairs is detected and left alone.
    """
    try:
        from lmms_eval.api.instance import GenerationResult, unwrap_generation_output
    except ImportError:
        return list(pairs)
    probe = (0.0, True)
    if unwrap_generation_output(probe)[0] == probe:
        return list(pairs)
    return [GenerationResult(text=pair) for pair in pairs]  # type: ignore[arg-type]
