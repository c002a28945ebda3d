"""The lmms-eval adapter on a local task (YAML + utils + parquet, no hub).

This test needs no lmms-eval (an optional extra): it drives the adapter the way lmms-eval's
evaluator does: it reads the task YAML (``!function`` tags), puts the documents in
``model.task_dict[task][split]``, builds requests whose ``.args`` follow lmms-eval's layouts, and
scores the responses with the task's own ``process_results`` / the smallest loss (lmms-eval's
``multiple_choice`` rule). ``test_lmms_eval_real.py`` runs the adapter inside lmms-eval itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from encoderlab.data.synthworld import WorldConfig
from encoderlab.suite.benchmarks import build_items
from encoderlab.suite.formats import write_table
from encoderlab.suite.lmms_adapter import EncoderlabLMM
from encoderlab.suite.registry import BENCHMARKS

FIXTURE = Path(__file__).parent / "fixtures" / "lmms_task"
LETTERS = ("A", "B", "C", "D")


@dataclass
class Request:
    """lmms-eval's ``Instance`` as the model sees it: ``.args``."""

    arguments: tuple

    @property
    def args(self) -> tuple:
        return self.arguments


class OracleVLM:
    """Knows the answer of every (image, question) it was shown; the protocol, nothing more."""

    checkpoint_hash = "oracle"
    image_size = 64

    def __init__(self, docs: list[dict[str, Any]], images: list[np.ndarray]) -> None:
        self.answers = {
            self._key(img, doc["question"]): doc["answer"]
            for doc, img in zip(docs, images, strict=True)
        }

    @staticmethod
    def _key(image: np.ndarray, prompt: str) -> str:
        return hashlib.sha1(image.tobytes() + prompt.split("\n")[0].encode()).hexdigest()

    def _letters(self, images: torch.Tensor, prompts: list[str]) -> list[str]:
        arrays = images.permute(0, 2, 3, 1).numpy()
        return [self.answers[self._key(a, p)] for a, p in zip(arrays, prompts, strict=True)]

    def score_choices(self, images, prompts, letters=LETTERS) -> torch.Tensor:
        out = torch.full((len(prompts), len(letters)), -5.0)
        for i, letter in enumerate(self._letters(images, prompts)):
            out[i, letters.index(letter)] = -0.1
        return out

    def generate(self, images, prompts, max_new_tokens=16) -> list[str]:
        return [f"{letter}\nbecause I know" for letter in self._letters(images, prompts)]


class ConstantVLM(OracleVLM):
    """Always prefers "A"."""

    def score_choices(self, images, prompts, letters=LETTERS) -> torch.Tensor:
        return torch.log_softmax(torch.tensor([[2.0, 1.0, 0.0, -1.0]] * len(prompts)), dim=1)

    def generate(self, images, prompts, max_new_tokens=16) -> list[str]:
        return ["A"] * len(prompts)


def _load_task(path: Path) -> dict[str, Any]:
    """YAML with lmms-eval's ``!function module.name`` tags resolved against the task folder."""
    spec = importlib.util.spec_from_file_location("lmms_task_utils", path.parent / "utils.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]

    class Loader(yaml.SafeLoader):
        pass

    def function(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        return getattr(module, loader.construct_scalar(node).split(".", 1)[1])  # type: ignore[arg-type]

    Loader.add_constructor("!function", function)
    return yaml.load(path.read_text(), Loader=Loader)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lmms_task")
    for f in FIXTURE.iterdir():
        shutil.copy(f, root / f.name)
    write_table(build_items(BENCHMARKS["colour"], WorldConfig(), 24), root / "items.parquet")
    return root


def _run(task_file: Path, model_cls: type) -> float:
    cfg = _load_task(task_file)
    data_file = task_file.parent / cfg["dataset_kwargs"]["data_files"][cfg["test_split"]]
    docs = pd.read_parquet(data_file).to_dict(orient="records")
    images = [np.asarray(cfg["doc_to_visual"](d)[0]) for d in docs]
    lm = EncoderlabLMM(model=model_cls(docs, images), batch_size=5)
    task, split = cfg["task"], cfg["test_split"]
    lm.task_dict = {task: {split: docs}}
    kwargs = cfg["lmms_eval_specific_kwargs"]["default"]
    contexts = [cfg["doc_to_text"](d, kwargs) for d in docs]
    if cfg["output_type"] == "generate_until":
        reqs = [
            Request((ctx, dict(cfg["generation_kwargs"]), cfg["doc_to_visual"], i, task, split))
            for i, ctx in enumerate(contexts)
        ]
        responses = lm.generate_until(reqs)
        assert all("\n" not in r for r in responses)  # cut at the task's "until"
        scores = [cfg["process_results"](d, [r])["accuracy"] for d, r in zip(docs, responses, strict=True)]  # fmt: skip
        return float(np.mean(scores))
    # multiple_choice: one log-likelihood request per choice, continuation " <choice>"; the
    # prediction is the choice with the smallest value (lmms-eval's argmin over losses)
    reqs, owners = [], []
    for i, (doc, ctx) in enumerate(zip(docs, contexts, strict=True)):
        for choice in cfg["doc_to_choice"](doc):
            reqs.append(Request((ctx, f" {choice}", cfg["doc_to_visual"], i, task, split)))
            owners.append(i)
    results = [_unwrap(r) for r in lm.loglikelihood(reqs)]
    assert all(isinstance(ll, float) and isinstance(g, bool) for ll, g in results)
    assert all(ll >= 0 for ll, _ in results)  # losses: lmms-eval picks the smallest
    correct = []
    for i, doc in enumerate(docs):
        lls = [ll for (ll, _), o in zip(results, owners, strict=True) if o == i]
        correct.append(int(np.argmin(lls)) == cfg["doc_to_target"](doc))
    return float(np.mean(correct))


def _unwrap(response: Any) -> Any:
    """A response as lmms-eval's evaluator stores it (0.7+ unwraps every response; earlier
    versions, and no lmms-eval, keep it as it is)."""
    try:
        from lmms_eval.api.instance import unwrap_generation_output
    except ImportError:
        return response
    return unwrap_generation_output(response)[0]


@pytest.mark.parametrize("task", ["encoderlab_synth_mc.yaml", "encoderlab_synth_mc_loglik.yaml"])
def test_adapter_scores_local_task(task_dir: Path, task: str) -> None:
    assert _run(task_dir / task, OracleVLM) == 1.0
    constant = _run(task_dir / task, ConstantVLM)  # "A" is right for about a quarter of items
    docs = pd.read_parquet(task_dir / "items.parquet")
    assert constant == pytest.approx(float(np.mean(docs["answer"] == "A")))
    assert constant < 0.6


def test_adapter_rejects_what_the_protocol_cannot_score(task_dir: Path) -> None:
    cfg = _load_task(task_dir / "encoderlab_synth_mc_loglik.yaml")
    docs = pd.read_parquet(task_dir / "items.parquet").to_dict(orient="records")
    lm = EncoderlabLMM(model=ConstantVLM(docs[:0], []), batch_size=2)
    lm.task_dict = {"t": {"test": docs}}
    with pytest.raises(NotImplementedError, match="option letters"):
        lm.loglikelihood([Request(("ctx", " red", cfg["doc_to_visual"], 0, "t", "test"))])
    with pytest.raises(ValueError, match="pretrained"):
        EncoderlabLMM()
